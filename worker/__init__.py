"""dtrain.worker."""
