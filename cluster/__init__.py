"""dtrain.cluster: the Ray side of a job (connection, parameter server, runner, storage)."""

import os
import sys

# Ray reads these once, when it is imported; set them only if it is not yet.
if "ray" not in sys.modules:
    # No usage-stats banner.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Token authentication, Ray's default for new clusters, said explicitly so
    # Ray does not warn about having chosen it. (Set after Ray's import, the
    # Ray processes it starts and the Ray already loaded would disagree.)
    os.environ.setdefault("RAY_AUTH_MODE", "token")
