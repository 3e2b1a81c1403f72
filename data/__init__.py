"""dtrain.data."""
