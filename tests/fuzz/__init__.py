"""Fuzzing from the CRD itself: strategies read from the generated CRD's schema, an emulation
of the apiserver's admission (structural schema, defaults, CEL with the Kubernetes
extensions the CRD uses), and the checks every admitted spec must pass in the pure core."""
