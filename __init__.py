"""dtrain: distributed per-sample SGD for a NumPy MLP over a Ray cluster."""

__version__ = "0.1.0"
