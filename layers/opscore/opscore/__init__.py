"""Ops-Core shared library: the rules of the service, shipped to every function as a Lambda layer."""

__version__ = "0.1.0"
