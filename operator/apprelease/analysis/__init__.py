"""Analysis providers: the operator's clients for the servers an analysis asks (a Prometheus
query API, a web hook gate). I/O only; what a measurement means is decided elsewhere."""
