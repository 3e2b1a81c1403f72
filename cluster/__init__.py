"""dtrain.cluster: the Ray side of a job (connection, parameter server, runner, storage)."""
