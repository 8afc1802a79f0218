"""Face-recognition models: registry of weights, fetching and conversion, uniform wrapper."""
