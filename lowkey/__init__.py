"""LowKey: adversarial filters that protect photos from facial recognition."""

__version__ = "0.1.0"
