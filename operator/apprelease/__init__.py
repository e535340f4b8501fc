"""AppRelease: a release controller for Kubernetes apps."""

__version__ = "0.1.0"
