"""The `dtrain` program's entry point: the process's settings first, then the command line.

The command's process is a job's driver: it scores every epoch while the workers
keep the cores busy, so one BLAS thread is all it should use (which also makes
`dtrain predict` single-threaded; MNIST-sized inputs do not need more). Set
before NumPy loads OpenBLAS, because OpenBLAS starts its thread pool on first
use, and a pool limited afterwards (threadpoolctl) has already started threads
that spin for ~0.1 s each on cores the workers need (measured: 0.18 CPU-s per
job; a 3-epoch job's training phase 9% shorter without them with 2 workers, 15%
with 1). A value the user set wins. Set here, in the program, rather than when a
module is imported: the library (and tests calling it) gets no environment
changes it did not ask for.
"""

from __future__ import annotations

import os


def main() -> None:
    for variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    from dtrain.cli.main import main as run_command

    run_command()
