"""dtrain.cluster."""
