"""benchmarks/speed.py's relay round and period: its stand-in actors still take the calls a job makes.

The warm cluster rows' bounds in the committed results use it; a change to the calls
(cluster/rounds.py, ParameterServer.train_period) that the stand-ins do not follow would
fail that section of a full run, minutes in. Run in its own process: the stand-ins are
classes of speed.py, which Ray's worker processes import from benchmarks/.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

SCRIPT = """
import json, sys
sys.path.insert(0, {benchmarks!r})
from dtrain.cluster.connect import connect_local
connect_local()
import ray, speed
ms = {{by: [speed.relay_round_ms(ray, 1000, 8, 1, 3, by=by), speed.relay_round_ms(ray, 1000, 2, 2, 3, by=by)]
      for by in ("server", "driver")}}
ms["hosted"] = [speed.relay_period_ms(ray, 1000, 8, 3)]
print(json.dumps(ms))
"""


def test_the_relay_round_runs_both_ways_in_the_warm_jobs_layouts(tmp_path):
    ray_tmp = tempfile.mkdtemp(prefix="dtr", dir="/tmp")  # short: Ray's socket paths live under it
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(BENCHMARKS), os.environ.get("PYTHONPATH", "")]),
           "RAY_TMPDIR": ray_tmp, "RAY_ADDRESS": "", "RAY_USAGE_STATS_ENABLED": "0"}
    try:
        proc = subprocess.run([sys.executable, "-c", SCRIPT.format(benchmarks=str(BENCHMARKS))],
                              capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ms = json.loads(proc.stdout.strip().splitlines()[-1])
    assert all(0 < v < 1000 for values in ms.values() for v in values), ms
