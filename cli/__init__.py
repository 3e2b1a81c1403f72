"""dtrain.cli."""
