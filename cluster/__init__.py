"""dtrain.cluster: the Ray side of a job (connection, parameter server, runner, storage)."""

import os

# Set before anything here imports Ray, which reads them once, at import.
# No usage-stats banner:
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Token authentication, Ray's default for new clusters, said explicitly so Ray
# neither warns about having chosen it nor disagrees with itself about it.
os.environ.setdefault("RAY_AUTH_MODE", "token")
