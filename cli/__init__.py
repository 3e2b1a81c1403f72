"""dtrain.cli: the `dtrain` command (entry.py is the program; main.py the command line)."""
