"""One module per figure of the table; each returns measurements, never formats them."""
