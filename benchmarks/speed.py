"""Speed, scaling, start-up and memory of dtrain, all measured in one run, against a baseline measured in it too.

    python benchmarks/speed.py [--quick] [--repeats 3] [--out benchmarks/results/speed.json]

Sections (printed as one table each, then a summary of the headline figures, then the baseline table):

1. SGD kernel samples/s on one core: a naive dense NumPy loop written here (the
   baseline), dtrain's NumPy kernel, dtrain's numba kernel.
2. Training throughput of run_job for 1, 2, 4, 8 workers on one embedded Ray.
3. Share of the training phase spent outside SGD (syncs, Ray, scoring).
4. Time to 97% and 98% test accuracy with 1 and 2 workers over 32 epochs, in-process,
   and as a real `dtrain submit` command.
5. Start-up: command start to first trained sample; bare ray.init for context.
6. Peak memory (PSS) of a default job's processes against Ray's own baseline, and
   against Ray with as many idle actor processes as the job has.
7. How cost grows: kernel speed and one sync round against model size and workers.

Baseline ratios (issue 19): each headline figure as a ratio to a baseline measured in
this run, medians of --repeats runs each:

- "one plain process", benchmarks/one_process.py: dtrain's maths (the 1-worker job's),
  no Ray, one core, 32 epochs scored each epoch, timed from Popen to exit like the
  commands. Its runs alternate with the headline job (`dtrain submit --workers 8`),
  and again with the jobs on a running cluster.
- A running cluster: `ray start --head` private to this run (temp dir, HOME, ports;
  stopped by killing its processes, never `ray stop`), a first job, then per repeat the
  second-job figures: `dtrain submit --workers 8` and `--workers 2 --until-accuracy 0.97`.
- "plain numba kernel": benchmarks/kernel.py's plain CSR loop against dtrain's kernel,
  alternated ABBA in this process.
- 2 workers / 1 worker: section 4's 32-epoch jobs.

Repeats: the baseline, sections 1, 2 and 4, the headline job and the cluster jobs are
measured --repeats times and quoted as medians; the other figures are single runs (the
tables say which). The first repeat of everything runs first and the extra repeats
last, so that a slow machine drops repeats (the JSON lists them) rather than running
over the time budget.

The machine is shared and noisy: the load average at start and end goes into the
JSON. Writes only the --out JSON (and temporary run directories, deleted).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

# One BLAS thread in this process, as in the workers and in the `dtrain` command: section 1
# is "one core", and run_job scores epochs in the driver while the workers use both cores.
# Set the command's way (dtrain/cli/entry.py says why), before NumPy loads OpenBLAS.
for _variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

threadpool_limits(1)  # in case the caller's environment said otherwise

from dtrain.data.mnist import load_dataset  # noqa: E402
from dtrain.model.kernels import sgd, warm_up  # noqa: E402
from dtrain.model.mlp import he_init, layer_sizes, unflatten  # noqa: E402
from dtrain.model.sgd_setup import SGDSetup  # noqa: E402
from dtrain.cluster.algorithms import algorithm_for  # noqa: E402
from dtrain.spec import JobSpec  # noqa: E402

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-c", "from dtrain.cli.entry import main; main()"]
ONE_PROCESS = [sys.executable, str(HERE / "one_process.py")]
RAY = str(Path(sys.executable).with_name("ray"))
LR = 0.01
TARGETS = (0.97, 0.98)
#: Seconds set aside for each repeat of the cluster phase (two jobs and a plain process) while
#: the earlier phases decide whether to repeat.
CLUSTER_RESERVE_S = 40
MIB = 1024 * 1024


def log(message: str) -> None:
    print(f"[speed {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def med(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def loadavg() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


# ------------------------------------------------------------------ processes


def proc_table() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, cmdline) for every process we can read."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            ppid = int(stat[stat.rfind(")") + 2 :].split()[1])
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except (OSError, ValueError, IndexError):
            continue
        table[int(name)] = (ppid, cmd)
    return table


def descendants(root: int, table: dict[int, tuple[int, str]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, stack = set(), [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def job_processes(root: int, table: dict[int, tuple[int, str]]) -> set[int]:
    """A command's processes: it, its descendants, and the Ray daemons of the Ray session it
    started (their command lines name session_<date>_<driver pid>), in case one was reparented.
    Other people's Ray sessions on this machine (tests, other jobs) are left out, which matching
    every 'ray::' / 'raylet' / 'gcs_server' command line would not do."""
    session = re.compile(rf"session_[0-9_-]+_{root}\b")
    pids = {root} | descendants(root, table)
    pids |= {pid for pid, (_, cmd) in table.items() if session.search(cmd)}
    return {pid for pid in pids if pid in table}


def memory_kib(pid: int) -> dict[str, int] | None:
    """Rss, Pss and Pss_Shmem from smaps_rollup (kB), RssShmem from status; None if gone."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss", "Pss_Shmem"):
                out[key] = int(rest.split()[0])
    except (OSError, ValueError):
        pass
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssShmem"):
                out[key] = int(rest.split()[0])
    except (OSError, ValueError):
        return out or None
    return out


class MemorySampler(threading.Thread):
    """Every `interval` s, sums the memory of a command's processes; keeps the sample with the
    highest total PSS (RSS where smaps_rollup is unreadable)."""

    def __init__(self, root: int, interval: float = 0.2):
        super().__init__(daemon=True)
        self.root, self.interval = root, interval
        self.stop_event = threading.Event()
        self.samples = 0
        self.peak: dict[str, Any] = {"total_kib": 0}
        self.pss_available = True

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)

    def sample(self) -> None:
        table = proc_table()
        totals = {"pss_kib": 0, "rss_kib": 0, "pss_shmem_kib": 0, "rss_shmem_kib": 0}
        n = 0
        fallback = False
        for pid in job_processes(self.root, table):
            m = memory_kib(pid)
            if not m:
                continue
            n += 1
            if "Pss" in m:
                totals["pss_kib"] += m["Pss"]
            else:
                fallback = True
                totals["pss_kib"] += m.get("VmRSS", 0)
            totals["rss_kib"] += m.get("Rss", m.get("VmRSS", 0))
            totals["pss_shmem_kib"] += m.get("Pss_Shmem", 0)
            totals["rss_shmem_kib"] += m.get("RssShmem", 0)
        self.samples += 1
        self.pss_available &= not fallback
        if totals["pss_kib"] > self.peak["total_kib"]:
            self.peak = {"total_kib": totals["pss_kib"], "processes": n, **totals}

    def stop(self) -> dict[str, Any]:
        self.stop_event.set()
        self.join(timeout=5)
        return {**self.peak, "samples": self.samples, "interval_s": self.interval,
                "measure": "PSS" if self.pss_available else "PSS, RSS where PSS was unreadable"}


def kill_job(root: int, grace: float = 3.0) -> list[int]:
    """SIGTERM, then SIGKILL, a command we started and the processes of its Ray session (by pid)."""
    pids = job_processes(root, proc_table())
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + grace
        while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.1)
    return sorted(pids)


def run_command(args: list[str], timeout: float, *, memory: bool = False, cwd: str | None = None,
                env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a command, timing it from just before Popen to its exit; optionally sample its memory.
    On a timeout the command and its Ray session are killed and RuntimeError is raised."""
    wall0 = time.time()
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env,
                            start_new_session=True)
    sampler = MemorySampler(proc.pid) if memory else None
    if sampler:
        sampler.start()
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        killed = kill_job(proc.pid)
        proc.communicate()
        raise RuntimeError(f"{' '.join(args[3:]) or args} timed out after {timeout:.0f} s; killed pids {killed}")
    finally:
        peak = sampler.stop() if sampler else None
    elapsed = time.perf_counter() - t0
    # The driver's Ray shuts its daemons down at exit; make sure none outlives it.
    deadline = time.time() + 5
    while time.time() < deadline and job_processes(proc.pid, proc_table()) - {proc.pid}:
        time.sleep(0.2)
    leftovers = sorted(job_processes(proc.pid, proc_table()) - {proc.pid})
    if leftovers:
        kill_job(proc.pid)
    if proc.returncode != 0:
        raise RuntimeError(f"exit status {proc.returncode}: {stderr.strip()[-800:]}")
    return {"wall0": wall0, "wall_s": elapsed, "stdout": stdout, "stderr": stderr, "memory": peak,
            "leftovers_killed": leftovers}


def submit(options: list[str], timeout: float, *, memory: bool = False) -> dict[str, Any]:
    """`dtrain submit OPTIONS --json` as a fresh process (local mode); its JSON, report.json and timings.

    start-up, command start to first trained sample, two ways:
      direct  = (the job record's created_at - Popen time) + timing.startup_s
                (the record is written just before run_job starts, when timing's clock starts)
      formula = command wall - timing.total_s + timing.startup_s
                (also counts what follows run_job: printing, Ray's shutdown at exit)
    The job is kept in a temporary storage directory, not the user's ~/.dtrain.
    """
    with tempfile.TemporaryDirectory(prefix="dtrain-speed-") as tmp:
        storage = Path(tmp) / "storage"
        run = run_command([*CLI, "submit", "--local", *options, "--json", "--storage", str(storage)], timeout, memory=memory, cwd=tmp)
        result = json.loads(run["stdout"].strip().splitlines()[-1])
        job_dir = Path(result["job_dir"])
        report = json.loads((job_dir / "report.json").read_text())
        job_created = json.loads((job_dir / "job.json").read_text())["created_at"]
    timing = result["timing"]
    before_job = job_created - run["wall0"]
    return {
        "options": options,
        "wall_s": run["wall_s"],
        "before_run_job_s": before_job,
        "after_run_job_s": run["wall_s"] - before_job - timing["total_s"],
        "startup_direct_s": before_job + timing["startup_s"],
        "startup_formula_s": run["wall_s"] - timing["total_s"] + timing["startup_s"],
        "timing": timing,
        "test_accuracy": result["test_accuracy"],
        "epochs": result["epochs"],
        "history": result["history"],
        "workers_stats": report.get("workers"),
        "samples": sum(w["samples"] for w in report.get("workers", [])),
        "until_accuracy": report.get("until_accuracy"),
        "memory": run["memory"],
        "leftovers_killed": run["leftovers_killed"],
    }


#: The default job's actor processes: 8 workers and the parameter server.
JOB_ACTORS = 9
#: What the idle actors of section 6 load, one baseline per level (each includes the ones before).
ACTOR_LEVELS = ("nothing", "NumPy", "numba + kernel")
IDLE_ACTORS_SNIPPET = """
import json, os, time
for variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one BLAS thread, as in the dtrain command
    os.environ.setdefault(variable, "1")
import ray
from dtrain.cluster.connect import connect_local
connect_local()

@ray.remote(num_cpus=0)
class Idle:
    def load(self, level):
        if level >= 1:
            import numpy
        if level >= 2:
            from dtrain.model.kernels import warm_up
            warm_up("numba")
        return level

actors = [Idle.remote() for _ in range({actors})]
ray.get([a.load.remote({level}) for a in actors])
print(json.dumps({{}}), flush=True)
time.sleep(3)
"""


def python_snippet(code: str, timeout: float, *, memory: bool = False) -> dict[str, Any]:
    run = run_command([sys.executable, "-c", code], timeout, memory=memory)
    return {**json.loads(run["stdout"].strip().splitlines()[-1]), "wall_s": run["wall_s"], "memory": run["memory"]}


# ------------------------------------------------ 0. the same-run baseline


def one_process(epochs: int, timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """benchmarks/one_process.py (dtrain's maths in one plain process, no Ray, one core) as a
    fresh process, timed like the commands: from just before Popen to its exit.

    interpreter_s: Popen to the script's first statement (Python's own start-up);
    to_target_s: Popen to the score of the first epoch at 97% test accuracy.
    """
    run = run_command([*ONE_PROCESS, "--epochs", str(epochs)], timeout, env=env)
    out = json.loads(run["stdout"].strip().splitlines()[-1])
    interpreter = out["started_at"] - run["wall0"]
    reached_at = out["time_to_target_s"]
    return {"wall_s": run["wall_s"], "interpreter_s": interpreter,
            "to_target_s": None if reached_at is None else interpreter + reached_at,
            **{k: out[k] for k in ("epochs", "ready_s", "target", "epoch_to_target", "time_to_target_s", "final_accuracy",
                                   "total_s", "history")}}


def plain_pair(epochs: int, timeout: float) -> list[dict[str, Any]]:
    """Two plain processes at once, each timed as `one_process` times one: what the machine's cores
    give processes that share nothing (no Ray, no dtrain job), for the warm jobs' bounds."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=2) as pool:
        copies = [pool.submit(one_process, epochs, timeout) for _ in range(2)]
        return [c.result() for c in copies]


def kernel_bench() -> Any:
    """benchmarks/kernel.py as a module: its plain numba CSR kernel (plain_sgd) and dtrain's, called as there."""
    spec = importlib.util.spec_from_file_location("_dtrain_kernel_bench", HERE / "kernel.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class KernelAB:
    """The baseline table's kernel row, measured as benchmarks/kernel.py measures it: dtrain's
    numba kernel against a plain numba CSR loop of the same maths, the same He-initialised
    weights, MNIST's training set as sparse rows in one shuffled order, one core; runs
    alternate ABBA, each from a fresh copy of the weights; the figure is the ratio of the
    median samples/s. Both kernels must first match sgd_numpy on 2,000 samples."""

    def __init__(self, ds: Any, samples: int):
        from dtrain.model.sparse import SparseRows

        self.bench = kernel_bench()
        self.images, self.y = SparseRows.from_dense(ds.x_train), ds.y_train
        self.theta0 = he_init(self.bench.SIZES, np.random.default_rng(0))
        self.order = np.resize(np.random.default_rng(0).permutation(len(self.y)), samples)
        t0 = time.perf_counter()
        for run in self.bench.KERNELS.values():  # compile (plain_sgd has no disk cache) or load
            run(self.theta0.copy(), self.images, self.y, self.order[:10])
        self.compile_s = time.perf_counter() - t0
        try:
            self.max_diff = self.bench.check_same_maths(self.theta0, self.images, self.y)
        except SystemExit as e:  # kernel.py stops there; here it is one failed measurement
            raise RuntimeError(str(e)) from None
        self.sps: dict[str, list[float]] = {name: [] for name in self.bench.KERNELS}

    def run(self, rounds: int) -> dict[str, Any]:
        names = list(self.bench.KERNELS)
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                theta = self.theta0.copy()
                _, t = timed(lambda: self.bench.KERNELS[name](theta, self.images, self.y, self.order))
                self.sps[name].append(len(self.order) / t)
        return {"samples": len(self.order), "rounds": rounds, "samples_per_s": self.sps, "compile_or_load_s": self.compile_s,
                "max_abs_diff_vs_sgd_numpy_2000_samples": self.max_diff}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_groups() -> dict[int, int]:
    """pid -> process group, for every process we can read."""
    groups = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
                groups[int(name)] = int(stat[stat.rfind(")") + 2 :].split()[2])
            except (OSError, ValueError, IndexError):
                continue
    return groups


def cpu_seconds(pids: set[int]) -> float:
    """CPU time (user + system) the live processes `pids` have used so far."""
    total = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            fields = stat[stat.rfind(")") + 2 :].split()
            total += int(fields[11]) + int(fields[12])
        except (OSError, ValueError, IndexError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


class Cluster:
    """A one-node Ray cluster started as the README starts one (`ray start --head`), private to
    this run: its own temp dir, HOME (so its job storage and no auth token: no authentication)
    and ports, and local mode's Ray setting for the weights' size (deploy/README.md), so that it
    differs from local mode by running already. Stopped by killing its processes, never `ray stop`,
    which would stop every Ray on the machine."""

    def __init__(self, cpus: float):
        from dtrain.cluster.connect import INLINE_OBJECT_BYTES

        self.scratch = Path(tempfile.mkdtemp(prefix="dtr", dir="/tmp"))  # short: Ray's socket paths live under it
        home = self.scratch / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "DTRAIN_"))}
        env.update(HOME=str(home), RAY_TMPDIR=str(self.scratch), RAY_USAGE_STATS_ENABLED="0",
                   DTRAIN_API_PORT=str(free_port()))
        port = free_port()
        self.flags = ["--head", "--port", str(port), "--num-cpus", f"{cpus:g}", "--disable-usage-stats",
                      "--system-config", json.dumps({"max_direct_call_object_size": INLINE_OBJECT_BYTES})]
        t0 = time.perf_counter()
        self.head = subprocess.Popen([RAY, "start", *self.flags], env=env, start_new_session=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = self.head.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError("ray start --head took over 120 s") from None
        if self.head.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start --head failed: {out.strip()[-800:]}")
        self.start_s = time.perf_counter() - t0
        self.env = {**env, "RAY_ADDRESS": f"127.0.0.1:{port}"}

    def processes(self) -> set[int]:
        """`ray start`'s process group (the daemons) and their descendants: Ray's worker
        processes, some of which (the registry, the API server) have process groups of their own."""
        groups = process_groups()
        members = {pid for pid, group in groups.items() if group == self.head.pid}
        table = proc_table()
        for pid in list(members):
            members |= descendants(pid, table)
        return members

    def submit(self, options: list[str], timeout: float) -> dict[str, Any]:
        """`dtrain submit OPTIONS --json` on this cluster, a new client process timed from just before
        Popen to its exit; the job runs in the cluster (its runner, workers and server are cluster actors)."""
        run = run_command([*CLI, "submit", *options, "--json"], timeout, env=self.env)
        result = json.loads(run["stdout"].strip().splitlines()[-1])
        if result.get("runtime") != "cluster":
            raise RuntimeError(f"expected the job to run on the cluster, it ran in {result.get('runtime')!r} mode")
        timing = result["timing"]
        return {"options": options, "wall_s": run["wall_s"], "timing": timing, "outside_run_job_s": run["wall_s"] - timing["total_s"],
                "test_accuracy": result["test_accuracy"], "epochs": result["epochs"], "history": result["history"]}

    def status(self) -> dict[str, Any]:
        """`dtrain status --json` on this cluster from a new client process: the least a command costs
        (Python, dtrain's imports, one request, exit); `via_http` whether it took the cluster's HTTP API."""
        run = run_command([*CLI, "status", "--json"], 60, env=self.env)
        answer = json.loads(run["stdout"].strip().splitlines()[-1])
        return {"wall_s": run["wall_s"], "via_http": "http://" in answer["storage"]}

    def stop(self) -> dict[str, Any]:
        pids = self.processes()
        try:
            os.killpg(self.head.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.time() + 30
        while time.time() < deadline and any(Path(f"/proc/{pid}").exists() for pid in pids):
            time.sleep(0.1)
        left = sorted(pid for pid in pids if Path(f"/proc/{pid}").exists())
        shutil.rmtree(self.scratch, ignore_errors=True)
        return {"killed": len(pids), "left": left}


def cluster_section(R: dict[str, Any], quick: bool, repeats: int, cpus: float, attempt: Callable, may_repeat: Callable) -> None:
    """The baseline table's two warm-cluster rows: on a running cluster, after a first job, the
    same `dtrain submit --workers 8` again and `dtrain submit --workers 2 --until-accuracy 0.97`,
    each repeat alternated with one plain process (run while the idle cluster is up, whose CPU
    time meanwhile is recorded)."""
    epochs = ["--epochs", "2"] if quick else []  # quick: 2 epochs, as its headline job
    job_8w = ["--workers", "8", *epochs]
    job_97 = ["--workers", "2", "--until-accuracy", "0.97"]
    first_job = job_97 if quick else job_8w  # quick: the cheaper job starts the cluster's registry and API
    C: dict[str, Any] = {"first": None, "runs_8w": [], "runs_2w_97": [], "one_process": [], "plain_pairs": []}
    R["cluster"] = C
    log("cluster: ray start --head (private temp dir, HOME and ports)")
    cluster = Cluster(cpus)
    C["ray_start_s"], C["ray_start_flags"] = cluster.start_s, cluster.flags
    try:
        log(f"cluster: first job, dtrain submit {' '.join(first_job)}")
        C["first"] = attempt("cluster_first", lambda: cluster.submit(first_job, 300))
        C["client"] = attempt("cluster_client", lambda: [cluster.status() for _ in range(3)])
        rep_s = None
        for rep in range(repeats):
            if rep and not may_repeat(f"cluster repeat {rep + 1}", (rep_s or 60) * 1.15):
                break
            t_rep = time.perf_counter()
            log(f"cluster: dtrain submit {' '.join(job_8w)} (warm), repeat {rep + 1}")
            run = attempt(f"cluster_8w_r{rep}", lambda: cluster.submit(job_8w, 300))
            if run:
                C["runs_8w"].append(run)
            log(f"cluster: dtrain submit {' '.join(job_97)} (warm), repeat {rep + 1}")
            run = attempt(f"cluster_2w_97_r{rep}", lambda: cluster.submit(job_97, 300))
            if run:
                C["runs_2w_97"].append(run)
            log(f"cluster: one plain process, repeat {rep + 1}")
            pids = cluster.processes()
            cpu0 = cpu_seconds(pids)
            run = attempt(f"cluster_one_process_r{rep}", lambda: one_process(2 if quick else 32, 180))
            if run:
                run["cluster_cpu_s"] = cpu_seconds(pids) - cpu0
                C["one_process"].append(run)
            log(f"cluster: two plain processes at once, repeat {rep + 1}")
            pair = attempt(f"cluster_plain_pair_r{rep}", lambda: plain_pair(2 if quick else 32, 180))
            if pair:
                C["plain_pairs"].append(pair)
            rep_s = time.perf_counter() - t_rep
        C["pool"] = attempt("cluster_pool", lambda: warm_pool_memory(cluster))
    finally:
        C["stop"] = cluster.stop()


def warm_pool_memory(cluster: Cluster) -> dict[str, Any]:
    """The cluster's warm pool after its jobs (`dtrain status --json`), and each idle warm
    worker's memory as this machine's /proc counts it (PSS shares numba's and numpy's pages)."""
    run = run_command([*CLI, "status", "--json"], 60, env=cluster.env)
    pool = json.loads(run["stdout"].strip().splitlines()[-1])["pool"]
    workers = [w for w in pool["workers"] if not w["job"] and w["pid"]]
    memory = [m for m in (memory_kib(w["pid"]) for w in workers) if m]
    return {"settings": {k: pool[k] for k in ("idle_s", "memory_mib")}, "workers": len(pool["workers"]),
            "idle": len(workers), "pss_mib": [m["Pss"] / 1024 for m in memory if "Pss" in m],
            "rss_mib": [m["VmRSS"] / 1024 for m in memory if "VmRSS" in m]}


# -------------------------------------------------------------- 1. kernels


def naive_sgd(theta: np.ndarray, sizes: tuple[int, ...], X: np.ndarray, y: np.ndarray, order: np.ndarray,
              lr: float) -> tuple[float, int]:
    """The textbook per-sample loop, dense, float32, 784-H-10 ReLU: the baseline."""
    (W1, b1), (W2, b2) = unflatten(theta, sizes)
    lr = np.float32(lr)
    scale = np.float32(255)
    loss, correct = 0.0, 0
    for s in order:
        x = X[s].astype(np.float32) / scale
        z1 = x @ W1 + b1
        a1 = np.maximum(z1, 0)
        z2 = a1 @ W2 + b2
        e = np.exp(z2 - z2.max())
        p = e / e.sum()
        label = y[s]
        loss -= float(np.log(max(p[label], np.finfo(np.float32).tiny)))
        correct += int(p.argmax() == label)
        d2 = p.copy()
        d2[label] -= 1
        d1 = (W2 @ d2) * (z1 > 0)
        W2 -= lr * np.outer(a1, d2)
        b2 -= lr * d2
        W1 -= lr * np.outer(x, d1)
        b1 -= lr * d1
    return loss, correct


def worker_images(X: np.ndarray) -> tuple[Any, str]:
    """The training images in the form the runner hands its workers (and the kernels), so the
    kernels are timed on what they get in a job: sparse rows where this version has them."""
    try:
        from dtrain.model.sparse import SparseRows
    except ImportError:
        return X, "dense"
    return SparseRows.from_dense(X), "sparse rows"


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    value = fn()
    return value, time.perf_counter() - t0


class Kernels:
    """Section 1 (and the kernel half of section 7): one core, fixed sample order, He init seed 0."""

    def __init__(self, ds: Any, quick: bool):
        self.X, self.y = ds.x_train, ds.y_train
        order = np.random.default_rng(0).permutation(len(self.y)).astype(np.int64)
        self.n_numba = 20_000 if quick else 60_000
        self.n_numpy = 1_500 if quick else 3_000
        self.n_hidden = {256: 5_000 if quick else 20_000, 1024: 1_500 if quick else 5_000}
        self.order = order
        self.sizes = layer_sizes(self.X.shape[1], (64,), 10)
        self.theta0 = he_init(self.sizes, np.random.default_rng(0))
        (self.images, self.images_form), self.convert_s = timed(lambda: worker_images(self.X))
        self.setup: dict[str, Any] = {"images_form": self.images_form, "convert_s": self.convert_s}
        self.on_images = SGDSetup(self.sizes, "relu", self.images, self.y, LR)  # as the workers hold them
        self.on_dense = SGDSetup(self.sizes, "relu", self.X, self.y, LR)

    def warm(self) -> None:
        # warm_up() compiles/loads the kernel for the workers' (read-only) argument types; our
        # arrays are writable, a second specialisation, so one tiny call on them too.
        _, self.setup["warm_up_s"] = timed(lambda: warm_up("numba", self.X.shape[1]))
        _, self.setup["first_call_writable_s"] = timed(lambda: sgd("numba", self.theta0.copy(), self.on_images, self.order[:1]))
        if self.images_form != "dense":
            sgd("numba", self.theta0.copy(), self.on_dense, self.order[:1])

    def run(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        n = self.n_numpy
        (loss, correct), t = timed(lambda: naive_sgd(self.theta0.copy(), self.sizes, self.X, self.y, self.order[:n], LR))
        out["naive"] = {"samples": n, "seconds": t, "samples_per_s": n / t, "loss_sum": loss, "correct": correct}
        (loss, correct), t = timed(lambda: sgd("numpy", self.theta0.copy(), self.on_images, self.order[:n]))
        out["numpy"] = {"samples": n, "seconds": t, "samples_per_s": n / t, "loss_sum": loss, "correct": correct}
        n = self.n_numba
        (loss, correct), t = timed(lambda: sgd("numba", self.theta0.copy(), self.on_images, self.order[:n]))
        out["numba"] = {"samples": n, "seconds": t, "samples_per_s": n / t, "loss_sum": loss, "correct": correct}
        if self.images_form != "dense":
            # The public sgd() also takes dense images, converting the visited rows on every call.
            (loss, correct), t = timed(lambda: sgd("numba", self.theta0.copy(), self.on_dense, self.order[:n]))
            out["numba_dense_input"] = {"samples": n, "seconds": t, "samples_per_s": n / t}
        # numpy vs naive over the same samples from the same weights: the same maths?
        out["numpy_vs_naive_loss_rel_diff"] = abs(out["numpy"]["loss_sum"] - out["naive"]["loss_sum"]) / abs(
            out["naive"]["loss_sum"])
        out["hidden"] = {64: out["numba"]["samples_per_s"]}
        for hidden, n in self.n_hidden.items():
            sizes = layer_sizes(self.X.shape[1], (hidden,), 10)
            theta = he_init(sizes, np.random.default_rng(0))
            _, t = timed(lambda: sgd("numba", theta, SGDSetup(sizes, "relu", self.images, self.y, LR), self.order[:n]))
            out["hidden"][hidden] = n / t
        return out


# -------------------------------------------------------- 2-4. in-process jobs


def machine_cpu_of_this_run() -> float:
    """CPU seconds used so far by this process and every process under it (its embedded Ray:
    daemons, workers, servers): what an in-process job's CPU time is measured by."""
    return cpu_seconds({os.getpid()} | descendants(os.getpid(), proc_table()))


def in_process_job(spec: JobSpec, dataset: Any = None, on_epoch: Callable[[dict], None] | None = None) -> dict[str, Any]:
    from dtrain.cluster.runner import run_job

    events: dict[str, Any] = {"epoch_s": {}}
    t0 = time.perf_counter()

    def on_event(kind: str, payload: dict[str, Any]) -> None:
        now = time.perf_counter() - t0
        if kind == "started":
            events["started_s"] = now
            events["cpu_at_start_s"] = machine_cpu_of_this_run()
        elif kind == "epoch":
            events["epoch_s"][payload["epoch"]] = now
            if payload["epoch"] == spec.periods and not spec.until_accuracy:  # the training phase's end
                events["cpu_at_end_s"] = machine_cpu_of_this_run()
            if on_epoch:
                on_epoch(payload)

    with tempfile.TemporaryDirectory(prefix="dtrain-speed-") as tmp:
        result = run_job(spec, Path(tmp) / "run", f"speed-{spec.workers}", on_event=on_event, dataset=dataset)
    elapsed = time.perf_counter() - t0
    report = result.report
    samples = sum(h["samples"] for h in result.history)
    return {
        "workers": spec.workers,
        "until_accuracy": spec.until_accuracy,
        "epochs": len(result.history),
        "samples": samples,
        "timing": report["timing"],
        "samples_per_s": samples / report["timing"]["train_s"],
        "call_s": elapsed,
        "events": events,
        "history": result.history,
        "workers_stats": report.get("workers"),
        "cpus_per_worker": report.get("cpus_per_worker"),
        "test_accuracy": result.evaluation.accuracy,
    }


def sync_shares(train_s: float, samples: int, workers_stats: list[dict] | None, workers: int, cores: float,
                kernel_sps: float | None) -> dict[str, Any]:
    """Two estimates of the share of the training phase not spent in SGD (see section 3's caption).

    (i)  idle share = 1 - mean(worker busy_s) / train_s: the time an average worker was not
         inside train_block. With more workers than cores a worker's busy_s also counts time it
         waited for a core, so (i) understates the overhead once workers > cores.
    (ii) sync+overhead share = 1 - ideal / train_s, ideal = samples / (one-core kernel samples/s
         * min(workers, cores)): the time the same SGD would take with every core busy and no
         syncs. It counts everything else: merges, Ray calls, copying weights, idle cores,
         other processes on the machine.
    """
    out: dict[str, Any] = {"train_s": train_s, "samples": samples, "workers": workers}
    if workers_stats:
        busy = [w["busy_s"] for w in workers_stats]
        out["mean_busy_s"] = statistics.mean(busy)
        out["max_busy_s"] = max(busy)
        out["idle_share"] = 1 - statistics.mean(busy) / train_s
    if kernel_sps:
        ideal = samples / (kernel_sps * min(workers, cores))
        out["ideal_s"] = ideal
        out["overhead_share"] = 1 - ideal / train_s
    return out


def reached(history: list[dict], target: float) -> dict | None:
    return next((h for h in history if h["test_accuracy"] >= target), None)


# ---------------------------------------------------------------- 7. syncs


def make_workers(ray: Any, images_ref: Any, y_ref: Any, spec: JobSpec, sizes: tuple[int, ...], n: int,
                 share: float, first_rank: int = 0) -> list[tuple[Any, Any]]:
    """(worker actor, its assignment) pairs as runner.py makes them, except that each owns a 1-sample
    shard [rank, rank+1): with one round per epoch its block is that one sample. (The brief's
    alternative, a whole shard cut into shard-size rounds, would time np.array_split of the shard
    on every call: 56 ms for 60000 samples, more than a sync.)"""
    from dtrain.worker.actor import Assignment, Worker, WorkerSettings

    cls = ray.remote(Worker).options(num_cpus=share)
    settings = WorkerSettings.of(spec)
    return [(cls.remote(), Assignment(f"sync/0/{rank}", (images_ref, y_ref), rank, rank + 1, settings, sizes, "numba", rank))
            for rank in range(first_rank, first_rank + n)]


def make_server(ray: Any, theta0: np.ndarray, sizes: tuple[int, ...], test_refs: tuple) -> Any:
    """The parameter server as runner.py makes it (seeded He init of `sizes`; theta0 is the same model)."""
    from dtrain.cluster.algorithms.bmuf import BlockMomentumRule
    from dtrain.cluster.parameter_server import ParameterServer

    return ray.remote(ParameterServer).options(num_cpus=0).remote(sizes, seed=0, rule=BlockMomentumRule([0.875]))


def round_ms(ray: Any, server: Any, workers: list, rounds: int) -> float:
    """ms per round: every worker trains 1 sample from the server's start weights, the server
    merges them all in one step; the rounds run by the server, as a job's are (train_period)."""
    from dtrain.worker.tasks import Block

    hosts = [(w, (i,), 1) for i, (w, _) in enumerate(workers)]
    assignments = [a for _, a in workers]
    tasks = {i: Block(0, 0, 1) for i in range(len(workers))}
    ray.get(server.train_period.remote(hosts, assignments, [tasks] * 2))  # warm: first calls deserialise, allocate
    t0 = time.perf_counter()
    ray.get(server.train_period.remote(hosts, assignments, [tasks] * rounds))
    return (time.perf_counter() - t0) / rounds * 1000


class RelayWorker:
    """A worker process that trains nothing: it answers Worker's calls with a copy of the start
    weights for each worker it is asked for."""

    def train(self, start: tuple[np.ndarray, int], task: Any, assignment: Any) -> np.ndarray:
        return start[0].copy()

    def train_many(self, start: tuple[np.ndarray, int], tasks: tuple, assignments: tuple, threads: int = 1) -> list[np.ndarray]:
        return [start[0].copy() for _ in tasks]

    def train_period(self, period: Any, assignments: tuple, threads: int = 1, after: Any = None) -> Any:
        # back to the server, its rule's state and all, as a hosted period goes
        return period if after is None else period.after(after)


class RelayServer:
    """A parameter server that averages nothing: it takes a round's results and answers the next
    start, or runs rounds as ParameterServer.train_period does (through cluster/rounds.py)."""

    def __init__(self, n_params: int):
        self.weights = np.zeros(n_params, np.float32)
        self.ahead: Any = None

    def start(self) -> tuple[np.ndarray, int]:
        return self.weights, 0

    def apply(self, *results: list) -> tuple[np.ndarray, int]:
        return self.weights, 0

    def train_period(self, hosts: list, assignments: list, rounds: list[dict], following: list[dict] | None = None) -> int:
        """As ParameterServer.train_period: one call a period to a process that hosts every
        worker (cluster/hosted.py), with the default job's rule and its state, handed over with
        the `following` period, which starts from its answer; else `train_rounds`."""
        import ray

        from dtrain.cluster.algorithms.bmuf import BlockMomentumRule
        from dtrain.cluster.hosted import HostedPeriod

        if len(hosts) > 1:
            return self.train_rounds(hosts, assignments, rounds)
        worker, _, threads = hosts[0]
        answer, self.ahead = self.ahead, None
        if answer is None:
            rule = BlockMomentumRule([0.875])
            rule.reset(self.weights)
            answer = worker.train_period.remote(HostedPeriod(rule, 0, 0, rounds), tuple(assignments), threads)
        if following:
            self.ahead = worker.train_period.remote(HostedPeriod(None, 0, 0, following), tuple(assignments), threads, answer)
        ray.get(answer)
        return 0

    def train_rounds(self, hosts: list, assignments: list, rounds: list[dict]) -> int:
        """A round's calls at a time (through cluster/rounds.py), as ParameterServer.train_period
        sends them to several processes."""
        import ray

        from dtrain.cluster.rounds import send_round

        for tasks in rounds:
            ray.get(list(send_round(hosts, assignments, self.start(), tasks).values()))
        return 0


def relay_round_ms(ray: Any, n_params: int, workers: int, processes: int, rounds: int, by: str = "server") -> float:
    """ms per synchronous round through a parameter-server actor with no computation in it: the
    warm 8-worker job's layout (`workers` ranks in `processes` worker processes, packed as
    cluster/workers.py packs them), its weights' size and Ray's settings. What Ray's calls alone
    cost a round. `by="server"`: the server runs the rounds and the workers answer it, as a
    job's flat rounds run over several processes (ParameterServer.train_period; with one
    process, `relay_period_ms` measures how its periods run); `by="driver"`: the driver chains them
    by reference, each process answering one list (how they ran before). Median of 5 blocks of
    `rounds` rounds."""
    from dtrain.cluster.rounds import hosts_of

    server = ray.remote(RelayServer).options(num_cpus=0).remote(n_params)
    processes_ = [ray.remote(RelayWorker).options(num_cpus=0).remote() for _ in range(processes)]
    hosts = hosts_of([processes_[rank % processes] for rank in range(workers)], 1.0)  # ranks dealt round-robin
    assignments = [None] * workers
    tasks = {rank: None for rank in range(workers)}
    try:
        def block(n: int) -> float:
            t0 = time.perf_counter()
            if by == "server":
                ray.get(server.train_rounds.remote(hosts, assignments, [tasks] * n))
            else:
                start = server.start.remote()
                for _ in range(n):
                    start = server.apply.remote(*[h.train_many.remote(start, ranks, ranks) if len(ranks) > 1
                                                  else h.train.remote(start, None, None) for h, ranks, _ in hosts])
                ray.get(start)
            return (time.perf_counter() - t0) / n * 1000

        block(5)  # warm: first calls deserialise, allocate
        return med([block(rounds) for _ in range(5)])
    finally:
        for actor in [server, *processes_]:
            ray.kill(actor)


def relay_period_ms(ray: Any, n_params: int, workers: int, periods: int, rounds: int = 3) -> float:
    """ms per period of `rounds` rounds through a parameter-server actor with no computation in
    it, when one process hosts all `workers` (the warm 8-worker job's layout on 2 cores): the
    server hands the process each period with the rule's state, which comes back with it, and
    the next period to start from that answer (cluster/hosted.py); the rounds make no Ray call.
    The periods are all asked for at once, as a job's driver keeps the next one waiting at the
    server. Median of 5 blocks of `periods` periods."""
    from dtrain.cluster.rounds import hosts_of

    server = ray.remote(RelayServer).options(num_cpus=0).remote(n_params)
    process = ray.remote(RelayWorker).options(num_cpus=0).remote()
    hosts = hosts_of([process] * workers, 1.0)
    tasks = {rank: None for rank in range(workers)}
    try:
        def block(n: int) -> float:
            t0 = time.perf_counter()
            ray.get([server.train_period.remote(hosts, [None] * workers, [tasks] * rounds, [tasks] * rounds if i + 1 < n else None)
                     for i in range(n)])
            return (time.perf_counter() - t0) / n * 1000

        block(5)  # warm: first calls deserialise, allocate
        return med([block(periods) for _ in range(5)])
    finally:
        for actor in (server, process):
            ray.kill(actor)


def sync_section(ds: Any, quick: bool, rounds: int) -> dict[str, Any]:
    import ray

    from dtrain.cluster.placement import cpus_per_worker, total_cpus

    cpus = total_cpus()
    images, form = worker_images(ds.x_train)
    images_ref, y_ref = ray.put(images), ray.put(ds.y_train)
    test_refs = (ray.put(ds.x_test), ray.put(ds.y_test))
    out: dict[str, Any] = {"rounds": rounds, "images": form, "cpus": cpus, "by_hidden": {}, "by_workers": {}}

    # against model size, at 2 workers (one per core: no time-sharing in the figure)
    size_workers = 2
    for hidden in (64, 256, 1024):
        sizes = layer_sizes(ds.n_features, (hidden,), 10)
        theta0 = he_init(sizes, np.random.default_rng(0))
        spec = JobSpec(workers=size_workers, hidden=(hidden,))
        server = make_server(ray, theta0, sizes, test_refs)
        workers = make_workers(ray, images_ref, y_ref, spec, sizes, size_workers, cpus_per_worker(size_workers, cpus))
        try:
            ray.get([w.ready.remote(a) for w, a in workers], timeout=120)
            ms = round_ms(ray, server, workers, rounds)
        finally:
            for actor in [*(w for w, _ in workers), server]:
                ray.kill(actor)
        out["by_hidden"][hidden] = {"workers": size_workers, "params": int(theta0.size),
                                    "bytes": int(theta0.nbytes), "ms_per_round": ms}
        log(f"  sync hidden={hidden}: {ms:.1f} ms/round")

    # against worker count, hidden 64: one pool of actors, each with the CPU share of the largest
    # count (Ray's CPU shares only gate placement; an idle actor costs nothing), the first K used.
    counts = [1, 2, 4, 8] + ([] if quick else [16, 32])
    sizes = layer_sizes(ds.n_features, (64,), 10)
    theta0 = he_init(sizes, np.random.default_rng(0))
    share = cpus_per_worker(max(counts), cpus)
    server = make_server(ray, theta0, sizes, test_refs)
    pool: list = []
    try:
        for k in counts:
            spec = JobSpec(workers=k)
            t_start = time.perf_counter()
            new = make_workers(ray, images_ref, y_ref, spec, sizes, k - len(pool), share, len(pool))
            ray.get([w.ready.remote(a) for w, a in new], timeout=180)
            started = time.perf_counter() - t_start
            pool += new
            ms = round_ms(ray, server, pool[:k], rounds)
            out["by_workers"][k] = {"ms_per_round": ms, "cpu_share": share, "new_actors": len(new),
                                    "new_actors_ready_s": started}
            log(f"  sync workers={k}: {ms:.1f} ms/round")
    finally:
        for actor in [*(w for w, _ in pool), server]:
            ray.kill(actor)
    del images_ref, y_ref, test_refs
    # The floor of a round on this machine, for the warm cluster jobs' bounds (`bounds`).
    out["relay"] = {}
    for k in (2, 8):
        from dtrain.cluster.workers import hosts

        processes = len(hosts(k, min(1.0, cpus / k)))  # as a job packs them (cluster/workers.py)
        ms = relay_round_ms(ray, int(theta0.size), k, processes, 40 if quick else 100)
        driver_ms = relay_round_ms(ray, int(theta0.size), k, processes, 40 if quick else 100, by="driver")
        out["relay"][k] = {"workers": k, "processes": processes, "params": int(theta0.size), "ms_per_round": ms,
                           "through_driver_ms_per_round": driver_ms}
        log(f"  relay round, {k} workers in {processes} processes: {ms:.1f} ms run by the server, "
            f"{driver_ms:.1f} ms chained by the driver")
        if processes == 1:  # the job's rounds then run in that process (cluster/hosted.py)
            period_ms = relay_period_ms(ray, int(theta0.size), k, 10 if quick else 30)
            out["relay"][k]["hosted_ms_per_period"] = period_ms
            log(f"  relay period, {k} workers in 1 process: {period_ms:.1f} ms a period")
    return out


# ------------------------------------------------------------------ output


class Printer:
    def __init__(self) -> None:
        try:
            from rich import box
            from rich.console import Console
            from rich.markup import escape
            from rich.table import Table

            self.console, self.Table, self.box = Console(width=170, highlight=False), Table, box.MARKDOWN
            self.escape = escape
        except ImportError:  # plain markdown
            self.console = None

    def table(self, title: str, header: list[str], rows: list[list[Any]], notes: list[str] = ()) -> None:
        cells = [[("—" if c is None else str(c)) for c in row] for row in rows]
        if self.console:
            esc = self.escape
            self.console.print(f"\n[bold]{esc(title)}[/bold]")
            t = self.Table(box=self.box, show_edge=True)
            for i, h in enumerate(header):
                t.add_column(esc(h), justify="left" if i == 0 else "right")
            for row in cells:
                t.add_row(*map(esc, row))
            self.console.print(t)
            for note in notes:
                self.console.print(esc(note), soft_wrap=False)
        else:
            print(f"\n{title}")
            print("| " + " | ".join(header) + " |")
            print("|" + "---|" * len(header))
            for row in cells:
                print("| " + " | ".join(row) + " |")
            for note in notes:
                print(note)


def f(value: float | None, fmt: str = ".1f", suffix: str = "") -> str | None:
    return None if value is None else f"{value:{fmt}}{suffix}"


def pct(value: float | None) -> str | None:
    return None if value is None else f"{value * 100:.1f}%"


def ksps(value: float | None) -> str | None:
    return None if value is None else f"{value / 1000:.1f}k"


# -------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 repeat, fewer configs, short jobs: a smoke test (~2 min)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="repeats of the baseline, sections 1, 2 and 4 and the headline job (at least 3 for the baseline table)")
    parser.add_argument("--out", default="benchmarks/results/speed.json")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds; extra repeats are dropped past it (default 480, quick 85)")
    args = parser.parse_args()
    quick = args.quick
    repeats = 1 if quick else max(1, args.repeats)
    budget = args.budget or (85.0 if quick else 480.0)
    t_begin = time.perf_counter()
    elapsed = lambda: time.perf_counter() - t_begin  # noqa: E731
    cores = os.cpu_count() or 1

    R: dict[str, Any] = {
        "config": {"quick": quick, "repeats": repeats, "budget_s": budget, "lr": LR, "argv": sys.argv[1:]},
        "machine": {"cpus": cores, "python": platform.python_version(), "numpy": np.__version__,
                    "loadavg_start": loadavg(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")},
        "errors": {}, "dropped_repeats": [],
    }
    try:
        import numba
        import ray as _ray

        R["machine"].update(numba=numba.__version__, ray=_ray.__version__)
    except ImportError:
        pass
    # Where SciPy is installed, numba imports it when it loads (dtrain's warm-up keeps it from
    # importing scipy.linalg, 0.19 s of CPU per worker); recorded with the figures.
    R["machine"]["scipy_installed"] = importlib.util.find_spec("scipy") is not None

    def attempt(name: str, fn: Callable[[], Any]) -> Any:
        """Run one measurement; on failure record the error and carry on with the others."""
        try:
            return fn()
        except Exception as e:  # noqa: BLE001 - a benchmark reports, the run goes on
            R["errors"][name] = f"{type(e).__name__}: {e}"
            log(f"ERROR in {name}: {type(e).__name__}: {e}")
            traceback.print_exc(file=sys.stderr)
            return None

    def may_repeat(name: str, estimate: float, reserve: float = 0.0) -> bool:
        if elapsed() + estimate + reserve <= budget:
            return True
        R["dropped_repeats"].append(name)
        log(f"dropping {name}: {elapsed():.0f} s used, ~{estimate:.0f} s more would pass the {budget:.0f} s budget")
        return False

    log(f"{'quick' if quick else 'full'} run, {repeats} repeat(s), budget {budget:.0f} s, load {loadavg()}")
    ds = load_dataset()
    R["dataset"] = {"name": ds.name, "bytes": int(ds.x_train.nbytes + ds.y_train.nbytes + ds.x_test.nbytes + ds.y_test.nbytes),
                    "train": len(ds.y_train), "test": len(ds.y_test)}

    # ---- phase A: kernels, and everything that runs as its own process (no Ray in this process yet,
    # so memory figures and start-up times see only the command's own Ray)
    kernels: Kernels | None = attempt("kernels_setup", lambda: Kernels(ds, quick))
    R["kernels"] = {"runs": []}
    if kernels:
        attempt("kernels_warm", kernels.warm)
        R["kernels"]["setup"] = kernels.setup
        R["kernels"]["samples"] = {"naive": kernels.n_numpy, "numpy": kernels.n_numpy, "numba": kernels.n_numba,
                                   "hidden": kernels.n_hidden}
        log("section 1: kernels")
        run = attempt("kernels", kernels.run)
        if run:
            R["kernels"]["runs"].append(run)

    log("baseline: dtrain's numba kernel against benchmarks/kernel.py's plain numba CSR kernel, alternated")
    kernel_ab = attempt("kernel_ab_setup", lambda: KernelAB(ds, 20_000 if quick else 60_000))
    R["kernel_ab"] = kernel_ab and attempt("kernel_ab", lambda: kernel_ab.run(3 if quick else 7))

    log("kernel load time in a fresh process")
    R["kernel_load"] = attempt("kernel_load", lambda: python_snippet(
        "import json, time; t0 = time.perf_counter(); from dtrain.model.kernels import warm_up; "
        "t1 = time.perf_counter(); warm_up('numba'); t2 = time.perf_counter(); "
        "print(json.dumps({'import_dtrain_kernels_s': t1 - t0, 'first_call_s': t2 - t1}))", 120))

    log("section 5/6: bare ray.init in a fresh process (and Ray's memory baseline)")
    R["ray_baseline"] = attempt("ray_baseline", lambda: python_snippet(
        "import json, time; t0 = time.perf_counter(); import ray; t1 = time.perf_counter(); "
        "from dtrain.cluster.connect import connect_local; connect_local(); t2 = time.perf_counter(); "
        "print(json.dumps({'import_ray_s': t1 - t0, 'ray_init_s': t2 - t1}), flush=True); time.sleep(3)",
        120, memory=True))

    # What Ray itself costs for the job's process layout: idle actors in place of the 8 workers
    # and the server, importing nothing, then NumPy, then numba with the kernel loaded.
    R["actor_baselines"] = {}
    for level, what in enumerate(ACTOR_LEVELS):
        if quick and level < len(ACTOR_LEVELS) - 1:
            continue  # quick: the last level only (the same code), to keep the smoke run near 2 minutes
        log(f"section 6: connect_local() + {JOB_ACTORS} idle actors ({what})")
        R["actor_baselines"][what] = attempt(f"actor_baseline_{level}", lambda: python_snippet(
            IDLE_ACTORS_SNIPPET.format(actors=JOB_ACTORS, level=level), 120, memory=True))

    mem_epochs = 2 if quick else 3
    log(f"section 6: peak memory of dtrain submit --workers 8 --epochs {mem_epochs}")
    R["memory_job"] = attempt("memory_job", lambda: submit(["--workers", "8", "--epochs", str(mem_epochs)], 180, memory=True))

    R["submit_2w_97"] = None
    if not quick:
        log("section 4/5: dtrain submit --workers 2 --until-accuracy 0.97")
        R["submit_2w_97"] = attempt("submit_2w_97", lambda: submit(["--workers", "2", "--until-accuracy", "0.97"], 180))

    R["headline"] = []
    R["one_process"] = []
    headline_options = ["--workers", "8"] if not quick else ["--workers", "8", "--epochs", str(mem_epochs)]
    one_process_epochs = mem_epochs if quick else 32

    def plain_process(rep: int) -> None:
        """The baseline, one plain process, alternated with the headline job."""
        log(f"baseline: one plain process ({one_process_epochs} epochs), repeat {rep + 1}")
        run = attempt(f"one_process_r{rep}", lambda: one_process(one_process_epochs, 180))
        if run:
            R["one_process"].append(run)

    if quick:
        # quick: the memory job above is the headline job too (2 epochs, not 32)
        if R["memory_job"]:
            R["headline"].append(R["memory_job"])
    else:
        log("headline: dtrain submit --workers 8 (32 epochs), repeat 1")
        h = attempt("headline", lambda: submit(headline_options, 240))
        if h:
            R["headline"].append(h)
    plain_process(0)

    # ---- phase B: one embedded Ray session in this process
    from dtrain.cluster.connect import connect_local
    from dtrain.cluster.placement import total_cpus

    log("connecting to an embedded Ray (in-process)")
    import ray

    try:
        _, R["in_process_ray_init_s"] = timed(connect_local)
        ray_cpus = total_cpus()
        R["machine"]["ray_cpus"] = ray_cpus
        scale_workers = [1, 2, 8] if quick else [1, 2, 4, 8]
        scale_epochs = 2 if quick else 3
        R["throughput"] = {"epochs": scale_epochs, "runs": []}

        def throughput_repeat(rep: int) -> None:
            for k in scale_workers:
                spec = JobSpec(workers=k, epochs=scale_epochs)
                run = attempt(f"throughput_w{k}_r{rep}", lambda: in_process_job(spec, dataset=ds))
                if run:
                    run["repeat"] = rep
                    R["throughput"]["runs"].append(run)
                    log(f"  workers={k}: {run['samples_per_s'] / 1000:.0f}k samples/s, train {run['timing']['train_s']:.2f} s, "
                        f"startup {run['timing']['startup_s']:.1f} s")

        log(f"section 2: run_job throughput, workers {scale_workers}, {scale_epochs} epochs, repeat 1")
        t_rep = time.perf_counter()
        throughput_repeat(0)
        throughput_repeat_s = time.perf_counter() - t_rep

        # section 4, in-process: 1 and 2 workers, 32 epochs (quick: 3), the times to 97% and 98%
        # read from their histories; also the baseline table's 2-worker / 1-worker throughput
        R["time_to_accuracy"] = []
        tta_epochs = 3 if quick else 32

        def tta_repeat(rep: int) -> None:
            for k in (1, 2) if rep % 2 == 0 else (2, 1):
                log(f"section 4: run_job workers={k} epochs={tta_epochs} (loads the data itself), repeat {rep + 1}")
                spec = JobSpec(workers=k, epochs=tta_epochs)
                run = attempt(f"time_to_accuracy_w{k}_r{rep}", lambda: in_process_job(spec))
                if run:
                    run["repeat"] = rep
                    R["time_to_accuracy"].append(run)

        t_rep = time.perf_counter()
        tta_repeat(0)
        tta_repeat_s = time.perf_counter() - t_rep

        log("section 7: sync round trips")
        R["sync"] = attempt("sync", lambda: sync_section(ds, quick, 10 if quick else 20))

        # reserve: the headline job's and the baseline's repeats, the kernels', and the cluster phase
        reserve = 45 + 15 * (repeats - 1) + CLUSTER_RESERVE_S * repeats
        for rep in range(1, repeats):
            if may_repeat(f"throughput repeat {rep + 1}", throughput_repeat_s * 1.15, reserve=reserve):
                log(f"section 2: repeat {rep + 1}")
                throughput_repeat(rep)
            if may_repeat(f"section 4 repeat {rep + 1}", tta_repeat_s * 1.15, reserve=reserve):
                tta_repeat(rep)
    except Exception as e:  # noqa: BLE001 - e.g. Ray would not start: report what was measured
        R["errors"]["in_process_ray"] = f"{type(e).__name__}: {e}"
        log(f"ERROR in the in-process Ray phase: {type(e).__name__}: {e}")
        traceback.print_exc(file=sys.stderr)
    finally:
        _, R["ray_shutdown_s"] = timed(ray.shutdown)

    # ---- phase C: extra repeats of the headline job with the baseline, and of the kernels (Ray shut down again)
    if not quick and R["headline"]:
        est = R["headline"][0]["wall_s"] + (R["one_process"][0]["wall_s"] if R["one_process"] else 10)
        for rep in range(1, repeats):
            if may_repeat(f"headline and baseline repeat {rep + 1}", est * 1.15, reserve=8 + CLUSTER_RESERVE_S):
                log(f"headline: dtrain submit --workers 8, repeat {rep + 1}")
                h = attempt(f"headline_r{rep}", lambda: submit(headline_options, 240))
                if h:
                    R["headline"].append(h)
                plain_process(rep)
    if kernels:
        for rep in range(1, repeats):
            if may_repeat(f"kernels repeat {rep + 1}", 8, reserve=CLUSTER_RESERVE_S):
                log(f"section 1: repeat {rep + 1}")
                run = attempt(f"kernels_r{rep}", kernels.run)
                if run:
                    R["kernels"]["runs"].append(run)

    # ---- phase D: a running cluster (`ray start`), its second jobs against the baseline
    attempt("cluster", lambda: cluster_section(R, quick, repeats, R["machine"].get("ray_cpus") or cores, attempt, may_repeat))

    R["machine"]["loadavg_end"] = loadavg()
    R["total_s"] = elapsed()
    report(R, quick, R["machine"].get("ray_cpus") or cores)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(R, indent=1, default=str))
    print(f"\nraw numbers: {out}   total run time {R['total_s']:.0f} s"
          f"{'   ERRORS: ' + ', '.join(R['errors']) if R['errors'] else ''}")
    return 1 if R["errors"] else 0


def report(R: dict[str, Any], quick: bool, cores: float) -> None:
    """Compute medians, print one table per section and the summary; store the derived figures in R."""
    P = Printer()
    S: dict[str, Any] = {}  # summary figures
    R["derived"] = S
    n_rep = lambda runs: f"median of {len(runs)}" if len(runs) > 1 else "single run"  # noqa: E731

    # 1. kernels
    runs = R["kernels"]["runs"]
    if runs:
        sps = {k: med([r[k]["samples_per_s"] for r in runs if k in r]) for k in ("naive", "numpy", "numba", "numba_dense_input")}
        base = sps["naive"]
        setup = R["kernels"].get("setup", {})
        load = R.get("kernel_load") or {}
        rows = [
            ["naive NumPy loop (this script, dense)", R["kernels"]["samples"]["naive"], ksps(base), "1.0x", None],
            ["sgd('numpy') (dtrain)", R["kernels"]["samples"]["numpy"], ksps(sps["numpy"]), f(sps["numpy"] / base, ".1f", "x"), None],
            ["sgd('numba') (dtrain)", R["kernels"]["samples"]["numba"], ksps(sps["numba"]), f(sps["numba"] / base, ".1f", "x"),
             f(load.get("first_call_s"), ".2f")],
        ]
        if sps["numba_dense_input"]:
            rows.append(["sgd('numba'), dense images passed", R["kernels"]["samples"]["numba"], ksps(sps["numba_dense_input"]),
                         f(sps["numba_dense_input"] / base, ".1f", "x"), None])
        S.update(kernel_sps=sps, numba_ratio=sps["numba"] / base, numpy_ratio=sps["numpy"] / base)
        P.table(
            f"1. SGD kernel, one core, 784-64-10 ReLU float32, lr {LR}, He init seed 0, MNIST in a fixed shuffled order ({n_rep(runs)})",
            ["kernel", "samples", "samples/s", "vs naive", "kernel load s"], rows,
            [f"dtrain kernels get the images as {setup.get('images_form')} (as workers do; conversion "
             f"{setup.get('convert_s', 0):.2f} s, untimed). Compile/load excluded: in-process warm_up "
             f"{setup.get('warm_up_s', 0):.2f} s + first call on writable arrays {setup.get('first_call_writable_s', 0):.2f} s.",
             f"kernel load s = first warm_up('numba') in a fresh process (numba import + cache load; a compile if the cache "
             f"is stale); importing dtrain's kernels before it: {f(load.get('import_dtrain_kernels_s'), '.2f')} s.",
             f"Same maths check: numpy kernel's loss sum over the same samples differs from the naive loop's by "
             f"{med([r['numpy_vs_naive_loss_rel_diff'] for r in runs]):.1e} (relative)."]
            + (["'dense images passed': the public sgd() converts the visited rows to sparse on every call."]
               if sps["numba_dense_input"] else []))

    # 2. throughput
    th = R.get("throughput") or {"runs": []}
    by_k: dict[int, list[dict]] = {}
    for run in th["runs"]:
        by_k.setdefault(run["workers"], []).append(run)
    if by_k:
        one = med([r["samples_per_s"] for r in by_k.get(1, [])])
        rows = []
        for k in sorted(by_k):
            rs = by_k[k]
            s = med([r["samples_per_s"] for r in rs])
            rows.append([k, rs[0]["cpus_per_worker"], rs[0]["epochs"], rs[0]["samples"], ksps(s),
                         f(med([r["timing"]["train_s"] for r in rs]), ".2f"),
                         f(s / one, ".2f", "x") if one else None,
                         f(med([r["timing"]["startup_s"] for r in rs]), ".1f"), len(rs)])
        two = med([r["samples_per_s"] for r in by_k.get(2, [])])
        S["throughput_sps"] = {k: med([r["samples_per_s"] for r in v]) for k, v in by_k.items()}
        S["scaling_2_over_1"] = two / one if one and two else None
        P.table(
            f"2. Training throughput, run_job on one embedded Ray, {th['epochs']} epochs, default sync schedule",
            ["workers", "CPU/worker", "epochs", "samples", "samples/s", "train s", "vs 1 worker", "startup s", "runs"], rows,
            ["samples/s = samples trained / report['timing']['train_s'] (the training phase: rounds, merges and the "
             "per-epoch scoring of the model); medians over the runs. startup s: data into the object store and the "
             "actors up, in an already running Ray session.",
             f"2 workers / 1 worker: {f(S['scaling_2_over_1'], '.2f', 'x')}"])

    # 3. sync share
    ksp = (S.get("kernel_sps") or {}).get("numba")
    rows = []
    S["sync_share"] = {}
    for k in (2, 8):
        rs = by_k.get(k, [])
        if not rs:
            continue
        shares = [sync_shares(r["timing"]["train_s"], r["samples"], r["workers_stats"], k, cores, ksp) for r in rs]
        idle, over = med([s.get("idle_share") for s in shares]), med([s.get("overhead_share") for s in shares])
        S["sync_share"][k] = {"idle_share": idle, "overhead_share": over, "epochs": th["epochs"]}
        rows.append([f"{k} workers, {th['epochs']} epochs (section 2, {n_rep(rs)})", f(med([s["train_s"] for s in shares]), ".2f"),
                     f(med([s.get("mean_busy_s") for s in shares]), ".2f"), f(med([s.get("ideal_s") for s in shares]), ".2f"),
                     pct(idle), pct(over)])
    long_runs = [(8, "headline `dtrain submit --workers 8`", h) for h in R.get("headline") or [] if h.get("epochs", 0) > 5]
    long_runs += [(r["workers"], f"run_job, {r['epochs']} epochs (section 4)", r)
                  for r in R.get("time_to_accuracy") or [] if r["workers"] == 2 and r["epochs"] > 5]
    for k in (2, 8):
        rs = [r for kk, _, r in long_runs if kk == k]
        if not rs:
            continue
        label = next(lbl for kk, lbl, _ in long_runs if kk == k)
        shares = [sync_shares(r["timing"]["train_s"], r["samples"], r["workers_stats"], k, cores, ksp) for r in rs]
        idle, over = med([s.get("idle_share") for s in shares]), med([s.get("overhead_share") for s in shares])
        S["sync_share"][f"{k}_long"] = {"idle_share": idle, "overhead_share": over, "epochs": rs[0]["epochs"]}
        rows.append([f"{k} workers, {label} ({n_rep(rs)})", f(med([s["train_s"] for s in shares]), ".2f"),
                     f(med([s.get("mean_busy_s") for s in shares]), ".2f"), f(med([s.get("ideal_s") for s in shares]), ".2f"),
                     pct(idle), pct(over)])
    if rows:
        P.table(
            "3. Share of the training phase not spent in SGD, default settings",
            ["job", "train s", "mean worker busy s", "ideal compute s", "(i) idle share", "(ii) sync+overhead share"], rows,
            ["(i) idle share = 1 - mean(worker busy_s) / train_s: time the average worker was outside train_block. With more",
             "    workers than cores, busy_s also counts waiting for a core, so (i) understates syncs once workers > cores.",
             f"(ii) sync+overhead share = 1 - ideal / train_s, ideal = samples / (one-core numba samples/s from section 1 "
             f"({ksps(ksp)}) x min(workers, {cores:g} cores)):",
             "    everything that is not SGD on a busy core: merges, Ray calls, weight copies, per-epoch scoring, idle cores,",
             "    and other processes on this shared machine."])

    # 4. time to accuracy
    rows = []
    S["time_to"] = {}
    tta_by_k: dict[int, list[dict]] = {}
    for r in R.get("time_to_accuracy") or []:
        tta_by_k.setdefault(r["workers"], []).append(r)
    for k, rs in sorted(tta_by_k.items()):
        for target in [t for t in TARGETS if t <= (rs[0].get("until_accuracy") or 1)]:
            hits = [reached(r["history"], target) for r in rs]
            label = f"run_job, {k} worker(s), {rs[0]['epochs']} epochs ({n_rep(rs)})"
            if None in hits:
                best = max(x["test_accuracy"] for r in rs for x in r["history"])
                rows.append([label, f"{target:.0%}", "not reached", f"best {best * 100:.2f}% in {rs[0]['epochs']} epochs", None, None])
                continue
            e2es = [r["events"]["epoch_s"].get(h["epoch"]) or r["events"]["epoch_s"].get(str(h["epoch"])) for r, h in zip(rs, hits)]
            epochs = sorted({h["epoch"] for h in hits})  # one, unless the runs' weights differ
            figures = {"epoch": epochs[0] if len(epochs) == 1 else med([h["epoch"] for h in hits]),
                       "train_s": med([h["train_time_s"] for h in hits]), "run_job_wall_s": med([h["wall_time_s"] for h in hits]),
                       "end_to_end_s": med(e2es), "runs": len(rs)}
            S["time_to"][f"{k}_{target}"] = figures
            rows.append([label, f"{target:.0%}", "/".join(map(str, epochs)), f(figures["train_s"], ".2f"),
                         f(figures["run_job_wall_s"], ".2f"), f(figures["end_to_end_s"], ".2f")])
    sub = R.get("submit_2w_97")
    if sub:
        h = reached(sub["history"], 0.97)
        ua = sub.get("until_accuracy") or {}
        S["time_to"]["2_0.97_command"] = {"epoch": h and h["epoch"], "train_s": ua.get("train_time_s"),
                                          "to_epoch_end_s": h and sub["before_run_job_s"] + h["wall_time_s"],
                                          "command_wall_s": sub["wall_s"]}
        rows.append(["`dtrain submit --workers 2 --until-accuracy 0.97`", "97%",
                     h["epoch"] if h else "not reached", f(ua.get("train_time_s"), ".2f"),
                     f(h and h["wall_time_s"], ".2f"),
                     f"{h and sub['before_run_job_s'] + h['wall_time_s']:.2f} (exit {sub['wall_s']:.2f})" if h else None])
    if rows:
        P.table(
            "4. Time to test accuracy",
            ["job", "target", "epoch", "train phase s", "run_job wall s", "end to end s"], rows,
            ["Medians where the row says so (the epoch is the same in every run: the weights do not depend on timing).",
             "train phase: from the first round to the end of scoring that epoch (history train_time_s). run_job wall: from",
             "run_job's start (history wall_time_s). end to end, run_job rows: from just before run_job was called, which then",
             "loads the data and starts its workers in the already running Ray session (ray.init excluded). end to end, command",
             "row: from just before Popen to the end of that epoch, and to the process exit in brackets (Ray start-up included)."])

    # 5. start-up
    rows = []
    base = R.get("ray_baseline") or {}
    heads = R.get("headline") or []
    for label, runs in (("`dtrain submit --workers 2` (section 4 command)", [sub] if sub else []),
                        (f"`dtrain submit {' '.join(heads[0]['options'])}` (headline)" if heads else "", heads)):
        if not runs:
            continue
        rows.append([label, f(med([r["before_run_job_s"] for r in runs]), ".2f"),
                     f(med([r["timing"]["startup_s"] for r in runs]), ".2f"),
                     f(med([r["startup_direct_s"] for r in runs]), ".2f"),
                     f(med([r["startup_formula_s"] for r in runs]), ".2f"),
                     f(med([r["after_run_job_s"] for r in runs]), ".2f"), n_rep(runs)])
    if heads:
        S["startup_8w_s"] = med([r["startup_direct_s"] for r in heads])
        S["startup_8w_formula_s"] = med([r["startup_formula_s"] for r in heads])
    if sub:
        S["startup_2w_s"] = sub["startup_direct_s"]
    if rows or base:
        P.table(
            "5. Start-up: command start to first trained sample",
            ["command", "before run_job s", "timing.startup_s", "start-up s (direct)", "start-up s (formula)",
             "after run_job s", "runs"], rows,
            ["before run_job: Popen to the job's record being written (Python, imports, loading and checking MNIST). timing.startup_s:",
             "run_job's start to all workers ready (ray.init, data into the object store, actors, kernel load).",
             "direct = the two added; formula (the brief's) = command wall - timing.total_s + timing.startup_s, which also counts",
             "'after run_job' (the final output and Ray's shutdown at exit), so it overstates start-up by that much.",
             f"For context, bare ray.init in a fresh process (connect_local()): {f(base.get('ray_init_s'), '.2f')} s, after "
             f"`import ray` {f(base.get('import_ray_s'), '.2f')} s; in this process: {f(R.get('in_process_ray_init_s'), '.2f')} s; "
             f"ray.shutdown here {f(R.get('ray_shutdown_s'), '.2f')} s (single runs)."])

    # 6. memory
    mj = R.get("memory_job")
    S["memory"] = None
    if mj and mj.get("memory") and base.get("memory"):
        peak, b = mj["memory"], base["memory"]
        dset = R["dataset"]["bytes"]
        S["memory"] = {"peak_mib": peak["total_kib"] / 1024, "baseline_mib": b["total_kib"] / 1024}
        rows = [
            [f"`dtrain submit --workers 8 --epochs {mj['epochs']}`", peak["processes"], f(peak["pss_kib"] / 1024, ".0f"),
             f(peak["rss_kib"] / 1024, ".0f"), f(peak["pss_shmem_kib"] / 1024, ".1f"), f(peak["rss_shmem_kib"] / 1024, ".1f"),
             peak["samples"]],
            ["bare connect_local() + sleep 3 s (Ray's baseline)", b["processes"], f(b["pss_kib"] / 1024, ".0f"),
             f(b["rss_kib"] / 1024, ".0f"), f(b["pss_shmem_kib"] / 1024, ".1f"), f(b["rss_shmem_kib"] / 1024, ".1f"), b["samples"]],
            ["difference (the job - Ray's baseline)", peak["processes"] - b["processes"], f((peak["pss_kib"] - b["pss_kib"]) / 1024, ".0f"),
             f((peak["rss_kib"] - b["rss_kib"]) / 1024, ".0f"), f((peak["pss_shmem_kib"] - b["pss_shmem_kib"]) / 1024, ".1f"),
             f((peak["rss_shmem_kib"] - b["rss_shmem_kib"]) / 1024, ".1f"), None],
        ]
        layers = [(what, (R.get("actor_baselines") or {}).get(what)) for what in ACTOR_LEVELS]
        layers = [(what, r["memory"]) for what, r in layers if r and r.get("memory")]
        for what, m in layers:
            rows.append([f"connect_local() + {JOB_ACTORS} idle actors, loading {what}", m["processes"],
                         f(m["pss_kib"] / 1024, ".0f"), f(m["rss_kib"] / 1024, ".0f"), f(m["pss_shmem_kib"] / 1024, ".1f"),
                         f(m["rss_shmem_kib"] / 1024, ".1f"), m["samples"]])
        warm = (R.get("cluster") or {}).get("pool")
        if warm and warm["pss_mib"]:
            S["memory"]["warm_worker_mib"] = {"pss": med(warm["pss_mib"]), "rss": med(warm["rss_mib"])}
            rows.append([f"one warm worker, idle in a running cluster's pool (median of {len(warm['pss_mib'])})", 1,
                         f(med(warm["pss_mib"]), ".0f"), f(med(warm["rss_mib"]), ".0f"), None, None, 1])
        if layers:
            S["memory"]["actor_baselines_mib"] = {what: m["pss_kib"] / 1024 for what, m in layers}
        once = peak["pss_shmem_kib"] * 1024 < 1.5 * dset
        P.table(
            "6. Peak memory of all the job's processes (single runs)",
            ["processes", "count", "PSS MiB", "RSS MiB", "shared-mem PSS MiB", "shared-mem RSS MiB", "samples"], rows,
            [f"Sampled every 0.2 s: the command, its descendants, and its Ray session's daemons (by session name); the peak of "
             f"the summed {peak['measure']}.",
             f"Dataset: x_train + y_train + x_test + y_test = {dset / MIB:.1f} MiB dense uint8.",
             f"Held once? Shared memory (the object store) is mapped by {peak['processes']} processes: summed RSS counts each "
             f"mapping ({peak['rss_shmem_kib'] / 1024:.0f} MiB), summed PSS counts each page once "
             f"({peak['pss_shmem_kib'] / 1024:.0f} MiB, {'under' if once else 'NOT under'} 1.5x the dataset): "
             f"{'held once' if once else 'check: may be held more than once'}.",
             "Idle actors: as many actor processes as the job has (8 workers and the server), doing nothing but import, "
             "which is what Ray and those imports cost whatever the actors then do; the dtrain job's driver also holds "
             "the dataset and numba."])

    # 7. growth
    sync = R.get("sync") or {}
    runs = R["kernels"]["runs"]
    if runs or sync:
        rows = []
        hidden_sps = {h: med([r["hidden"].get(h) for r in runs]) for h in (64, 256, 1024)} if runs else {}
        for h in (64, 256, 1024):
            s = (sync.get("by_hidden") or {}).get(h, {})
            rows.append([f"784-{h}-10", s.get("params"), f(s.get("bytes", 0) / 1024, ".0f") if s else None,
                         ksps(hidden_sps.get(h)), f(s.get("ms_per_round"), ".1f")])
        P.table(
            f"7a. Cost against model size (kernel: {n_rep(runs)}; sync: single run, {sync.get('by_hidden', {}).get(64, {}).get('workers', 2)} workers)",
            ["model", "parameters", "weights KiB", "numba samples/s (1 core)", "sync ms/round"], rows)
        rows = [[k, f(v["cpu_share"], "g"), f(v["ms_per_round"], ".1f"), f(v["ms_per_round"] / k, ".2f"),
                 f(v["new_actors_ready_s"] / max(v["new_actors"], 1), ".2f") if v["new_actors"] else None]
                for k, v in (sync.get("by_workers") or {}).items()]
        S["sync_ms"] = {k: v["ms_per_round"] for k, v in (sync.get("by_workers") or {}).items()}
        if rows:
            P.table(
                f"7b. One sync round against worker count, 784-64-10 (single run, {sync.get('rounds')} rounds each)",
                ["workers", "CPU/worker", "ms/round", "ms/round/worker", "s per new actor"], rows,
                ["A round: each worker copies the server's start weights, trains 1 sample (its whole 1-sample shard), returns its",
                 "weights; the server merges all of them in one step. The server runs the rounds, as a job's run",
                 "(train_period), ms/round = elapsed / rounds after 2 warm rounds. Worker count series: one pool of actors with the CPU",
                 "share of the largest count, the first K used; s per new actor = actor start + kernel load, on 2 shared cores.",
                 "With 1 worker its one process hosts every worker, so the server hands it all the rounds in one call",
                 "(cluster/hosted.py): that row's rounds make no Ray call each."]
                + [f"Relay round, {k} workers in {v['processes']} processes (the warm cluster jobs' layout): {v['ms_per_round']:.1f} ms "
                   + (f"run by the server, {v['through_driver_ms_per_round']:.1f} ms chained through the driver"
                      if "through_driver_ms_per_round" in v else "chained through the driver")
                   + ": the same calls and weights with no training and no averaging (median of 5 blocks of rounds)."
                   + (f" Relay period: {v['hosted_ms_per_period']:.1f} ms a period of 3 rounds handed to the one process with "
                      "the rule's state, each with the next (cluster/hosted.py), as the job's periods run in this layout."
                      if "hosted_ms_per_period" in v else "")
                   for k, v in (sync.get("relay") or {}).items()])

    # summary
    rows = []
    sps = S.get("kernel_sps") or {}
    n_k = len(R["kernels"]["runs"])
    rows.append(["numba kernel, one core", f"{ksps(sps.get('numba'))} samples/s, {f(S.get('numba_ratio'), '.1f')}x the naive loop",
                 f"median of {n_k}" if n_k > 1 else "single run"])
    rows.append(["numpy kernel vs naive loop", f(S.get("numpy_ratio"), ".1f", "x"), f"median of {n_k}" if n_k > 1 else "single run"])
    n2 = len(by_k.get(2, []))
    rows.append(["throughput, 2 workers / 1 worker", f(S.get("scaling_2_over_1"), ".2f", "x"),
                 f"median of {n2}" if n2 > 1 else "single run"])
    for k in (2, 8):
        s, l = S["sync_share"].get(k), S["sync_share"].get(f"{k}_long")
        parts = []
        if s:
            parts.append(f"{pct(s['overhead_share'])} ({s['epochs']}-epoch jobs; idle share {pct(s['idle_share'])})")
        if l:
            parts.append(f"{pct(l['overhead_share'])} ({l['epochs']}-epoch job; idle share {pct(l['idle_share'])})")
        if parts:
            rows.append([f"sync+overhead share of training, {k} workers", "; ".join(parts), "section 3"])
    if heads:
        S["headline"] = {"wall_s": med([h["wall_s"] for h in heads]), "accuracy": med([h["test_accuracy"] for h in heads]),
                         "train_s": med([h["timing"]["train_s"] for h in heads]), "epochs": heads[0]["epochs"]}
        rows.append([f"default job `dtrain submit {' '.join(heads[0]['options'])}`, end to end",
                     f"{S['headline']['wall_s']:.1f} s, test accuracy {S['headline']['accuracy'] * 100:.2f}% "
                     f"({heads[0]['epochs']} epochs, train phase {S['headline']['train_s']:.1f} s)",
                     f"median of {len(heads)}" if len(heads) > 1 else "single run"])
    t97 = S["time_to"].get("2_0.97")
    c97 = S["time_to"].get("2_0.97_command")
    if t97 or c97:
        parts = []
        if t97:
            parts.append(f"epoch {t97['epoch']}: train {t97['train_s']:.2f} s, run_job e2e {t97['end_to_end_s']:.2f} s")
        if c97 and c97["epoch"]:
            parts.append(f"command {c97['to_epoch_end_s']:.2f} s (exit {c97['command_wall_s']:.2f} s)")
        rows.append(["time to 97%, 2 workers", "; ".join(parts),
                     f"run_job: {n_rep([None] * t97.get('runs', 1)) if t97 else '—'}; command: single run"])
    if "startup_8w_s" in S or "startup_2w_s" in S:
        parts = []
        if "startup_8w_s" in S:
            parts.append(f"{S['startup_8w_s']:.1f} s with 8 workers (formula {S['startup_8w_formula_s']:.1f} s)")
        if "startup_2w_s" in S:
            parts.append(f"{S['startup_2w_s']:.1f} s with 2")
        rows.append(["start-up, command start to first trained sample", "; ".join(parts),
                     f"8 workers: median of {len(heads)}" if len(heads) > 1 else "single run"])
    if S.get("memory"):
        m = S["memory"]
        rows.append(["peak memory, 8-worker job (PSS, all processes)",
                     f"{m['peak_mib']:.0f} MiB vs Ray baseline {m['baseline_mib']:.0f} MiB (+{m['peak_mib'] - m['baseline_mib']:.0f} MiB)"
                     + (f"; Ray + {JOB_ACTORS} idle actors loading " + ", ".join(
                         f"{what} {v:.0f}" for what, v in m["actor_baselines_mib"].items()) + " MiB"
                        if m.get("actor_baselines_mib") else ""),
                     "single run"])
    P.table(f"Summary ({'QUICK run: fewer configs, 1 repeat, short jobs' if quick else 'full run'}; total "
            f"{R['total_s']:.0f} s; load average {R['machine']['loadavg_start']} at start, {R['machine']['loadavg_end']} at end; "
            f"SciPy {'installed' if R['machine']['scipy_installed'] else 'not installed'})",
            ["figure", "value", "runs"], rows,
            ([f"Dropped repeats (time budget): {', '.join(R['dropped_repeats'])}"] if R["dropped_repeats"] else [])
            + ([f"Errors: {R['errors']}"] if R["errors"] else []))

    baseline_table(R, P, quick)


#: The baseline table's goals (issue 19): a ratio and which side of it meets the goal.
GOALS = {
    "local_8w": ("<=", 1.0, "≤ 1.0"),
    "cluster_8w": ("<=", 0.6, "≤ 0.6"),
    "cluster_2w_97": ("<=", 0.5, "≤ 0.5"),
    "kernel": (">=", 1.5, "≥ 1.5 (moonshot 2.0)"),
    "two_over_one": (">=", 1.8, "≥ 1.8"),
}


def baseline_ratios(R: dict[str, Any], quick: bool) -> list[dict[str, Any]]:
    """The issue's five figures, each a ratio of two medians measured in this run."""
    plain = R.get("one_process") or []
    C = R.get("cluster") or {}
    plain_c = C.get("one_process") or []
    AB = R.get("kernel_ab") or {}
    sps = AB.get("samples_per_s") or {}
    tta = [r for r in R.get("time_to_accuracy") or [] if r.get("until_accuracy") is None]  # all their epochs
    heads = R.get("headline") or []
    epochs = f"{plain[0]['epochs']} epochs" if plain else "32 epochs"

    def side(what: str, runs: list, value: Callable[[Any], float | None], unit: str = "s") -> dict[str, Any]:
        return {"what": what, "median": med([value(r) for r in runs]), "unit": unit, "runs": len(runs)}

    def k_sps(k: int) -> Callable[[dict], float]:
        return lambda r: r["samples"] / r["timing"]["train_s"]

    rows = [
        ("local_8w", f"local `dtrain submit {' '.join(heads[0]['options']) if heads else '--workers 8'}` end to end "
                     f"÷ one plain process ({epochs})",
         side("dtrain submit, Popen to exit", heads, lambda r: r["wall_s"]),
         side("one plain process, Popen to exit", plain, lambda r: r["wall_s"])),
        ("cluster_8w", "the same job on a running cluster, second job (warm) ÷ one plain process",
         side("dtrain submit on the cluster, Popen to exit", C.get("runs_8w") or [], lambda r: r["wall_s"]),
         side("one plain process, Popen to exit", plain_c, lambda r: r["wall_s"])),
        ("cluster_2w_97", "warm cluster `dtrain submit --workers 2 --until-accuracy 0.97` end to end ÷ one plain "
                          "process's time to 97%",
         side("dtrain submit on the cluster, Popen to exit", C.get("runs_2w_97") or [], lambda r: r["wall_s"]),
         side("one plain process, Popen to the 97% epoch's score", plain_c, lambda r: r["to_target_s"])),
        ("kernel", "dtrain kernel ÷ plain numba CSR kernel, one core",
         {"what": "dtrain's sgd('numba')", "median": med(sps.get("dtrain numba") or []), "unit": "samples/s",
          "runs": len(sps.get("dtrain numba") or [])},
         {"what": "kernel.py's plain_sgd", "median": med(sps.get("plain numba") or []), "unit": "samples/s",
          "runs": len(sps.get("plain numba") or [])}),
        ("two_over_one", f"2 workers ÷ 1 worker training throughput, {tta[0]['epochs'] if tta else 32} epochs",
         side("run_job, 2 workers, samples / train s", [r for r in tta if r["workers"] == 2], k_sps(2), "samples/s"),
         side("run_job, 1 worker, samples / train s", [r for r in tta if r["workers"] == 1], k_sps(1), "samples/s")),
    ]
    out = []
    limits = bounds(R, {key: bottom["median"] for key, _, _, bottom in rows})
    for key, figure, top, bottom in rows:
        op, goal, goal_text = GOALS[key]
        ratio = top["median"] / bottom["median"] if top["median"] and bottom["median"] else None
        met = None if ratio is None else (ratio <= goal if op == "<=" else ratio >= goal)
        out.append({"key": key, "figure": figure, "numerator": top, "denominator": bottom, "ratio": ratio,
                    "goal": goal_text, "met": met, "bound": limits.get(key)})
    return out


def bounds(R: dict[str, Any], denominators: dict[str, float | None]) -> dict[str, dict[str, Any]]:
    """What each figure cannot pass on this machine, from costs measured in this run that the job cannot
    avoid: a ratio's floor (for a "≤" goal) or ceiling (for "≥"), with the sum it is made of.

    - A job's training can take no less than the plain process's training divided among the cores.
    - Local mode starts and stops an embedded Ray (ray.init, ray.shutdown, measured in this run).
    - A command on a running cluster costs at least what `dtrain status --json` does there (a new
      client process: Python, dtrain's imports, one request over the cluster's HTTP API, exit).
    - 2 workers ÷ 1: a job's processes (workers, parameter server, the driver scoring every epoch,
      Ray) share the cores, so its training phase lasts at least their CPU time ÷ the cores.
    """
    cores = R["machine"].get("ray_cpus") or R["machine"]["cpus"]
    C = R.get("cluster") or {}
    out: dict[str, dict[str, Any]] = {}

    def training(runs: list, until: str) -> float | None:  # the plain process's training phase, to exit or to 97%
        return med([r[until] - r["interpreter_s"] - r["ready_s"] for r in runs if r.get(until) is not None])

    def sgd(runs: list, until: str) -> float | None:
        """The same less its scoring (which a job may do while a round goes through its server) and
        its kernel's load (which a warm worker has done)."""
        def scoring(r: dict) -> float:
            last = r["epoch_to_target"] if until == "to_target_s" else r["epochs"]
            return sum(h.get("score_s", 0.0) for h in r["history"][:last]) + r["history"][0].get("kernel_load_s", 0.0)
        return med([r[until] - r["interpreter_s"] - r["ready_s"] - scoring(r) for r in runs if r.get(until) is not None])

    def floor(key: str, parts: list[tuple[str, float | None]]) -> None:
        if all(v is not None for _, v in parts) and denominators.get(key):
            total = sum(v for _, v in parts)
            out[key] = {"kind": "floor", "seconds": total, "ratio": total / denominators[key],
                        "parts": {name: v for name, v in parts}}

    plain, plain_c = R.get("one_process") or [], C.get("one_process") or []
    client = med([c["wall_s"] for c in C.get("client") or []])
    relay = (R.get("sync") or {}).get("relay") or {}

    def sync_rounds(workers: int, epochs: int) -> tuple[str, float | None]:
        """The rounds the job's schedule runs in `epochs` epochs, at the relay's cost of a round;
        or, when one process hosts every worker, the epochs at the relay's cost of a period."""
        entry = relay.get(workers) or relay.get(str(workers)) or {}  # str: read back from JSON
        if entry.get("hosted_ms_per_period"):
            ms = entry["hosted_ms_per_period"]
            return f"{epochs} hosted periods × {ms:.1f} ms", epochs * ms / 1000
        ms = entry.get("ms_per_round")
        spec = JobSpec(workers=workers)
        n = sum(algorithm_for(spec).schedule(-(-R["dataset"]["train"] // workers)).rounds[:epochs])
        return f"{n} sync rounds × {ms or 0:.1f} ms", (n * ms / 1000 if ms else None)
    floor("local_8w", [("ray.init", R.get("in_process_ray_init_s")), ("ray.shutdown", R.get("ray_shutdown_s")),
                       (f"plain training ÷ {cores:g} cores", (training(plain, "wall_s") or 0) / cores or None)])
    epochs_8w = med([r["epochs"] for r in C.get("runs_8w") or []])
    epochs_97 = med([r["epochs"] for r in C.get("runs_2w_97") or []])
    # The cluster rows' workers share the cores as two processes do: two plain copies at once each
    # do their SGD in T2, so one job's SGD split over 2 cores takes at least T2 / 2; no worker
    # trains while a round goes through the server, and scoring (left out) may overlap with that.
    pairs = [copy for pair in C.get("plain_pairs") or [] for copy in pair]
    two = min(cores, 2)
    floor("cluster_8w", [("a client command", client),
                         (f"plain SGD, {two:g} copies at once, ÷ {two:g}", (sgd(pairs, "wall_s") or 0) / two or None),
                         sync_rounds(8, int(epochs_8w or 0))])
    floor("cluster_2w_97", [("a client command", client),
                            (f"plain SGD to 97%, {two:g} copies at once, ÷ {two:g}", (sgd(pairs, "to_target_s") or 0) / two or None),
                            sync_rounds(2, int(epochs_97 or 0))])
    tta = [r for r in R.get("time_to_accuracy") or [] if r.get("until_accuracy") is None]
    one = med([r["timing"]["train_s"] for r in tta if r["workers"] == 1])
    two = [r for r in tta if r["workers"] == 2 and "cpu_at_end_s" in r["events"]]
    cpu2 = med([r["events"]["cpu_at_end_s"] - r["events"]["cpu_at_start_s"] for r in two])
    if one and cpu2:
        busy = med([sum(w["busy_s"] for w in r["workers_stats"]) for r in two if r.get("workers_stats")])
        out["two_over_one"] = {"kind": "ceiling", "ratio": one / (cpu2 / cores),
                               "parts": {"one_worker_train_s": one, "job_cpu_s": cpu2, "sgd_cpu_s": busy, "cores": cores}}
    return out


def bound_text(bound: dict[str, Any] | None) -> str | None:
    if not bound:
        return None
    p = bound["parts"]
    if bound["kind"] == "floor":
        return f"≥ {bound['ratio']:.2f}: " + " + ".join(f"{name} {v:.2f} s" for name, v in p.items())
    return (f"≤ {bound['ratio']:.2f}: the 2-worker job's processes used {p['job_cpu_s']:.2f} CPU-s in training "
            f"(SGD in its workers {p['sgd_cpu_s'] or 0:.2f}), so ≥ {p['job_cpu_s'] / p['cores']:.2f} s on {p['cores']:g} "
            f"cores; 1 worker's training: {p['one_worker_train_s']:.2f} s")


def baseline_table(R: dict[str, Any], P: Any, quick: bool) -> None:
    """Print the baseline table; store its rows in R["baseline_ratios"]."""
    rows = R["baseline_ratios"] = baseline_ratios(R, quick)

    def value(side: dict) -> str:
        if side["median"] is None:
            return "—"
        v = ksps(side["median"]) + " samples/s" if side["unit"] == "samples/s" else f"{side['median']:.2f} s"
        return f"{v} ({side['runs']})"

    table = [[r["figure"], f"{value(r['numerator'])} ÷ {value(r['denominator'])}", f(r["ratio"], ".2f"), r["goal"],
              None if r["met"] is None else ("yes" if r["met"] else "no"), bound_text(r.get("bound"))] for r in rows]
    plain, C, AB = R.get("one_process") or [], R.get("cluster") or {}, R.get("kernel_ab") or {}
    notes = ["(n): the runs a median is of. A ratio's two sides were measured in this run, their runs alternated: the "
             "local row's baseline runs after each headline job (no Ray running), the cluster rows' after each pair of "
             "cluster jobs (the idle cluster up)."]
    if plain:
        accs = sorted({r["final_accuracy"] for r in plain})
        notes.append(
            f"One plain process (benchmarks/one_process.py: a 1-worker job's maths, no Ray, one core, {plain[0]['epochs']} "
            f"epochs, scored each epoch), from Popen to exit: {med([r['wall_s'] for r in plain]):.2f} s, of which Python's "
            f"start-up {med([r['interpreter_s'] for r in plain]):.2f} s, then imports and data "
            f"{med([r['ready_s'] for r in plain]):.2f} s; 97% at epoch {plain[0]['epoch_to_target']}, "
            f"{f(med([r['to_target_s'] for r in plain]), '.2f')} s; final test accuracy "
            f"{', '.join(f'{a * 100:.2f}%' for a in accs)}.")
    if C.get("ray_start_s") is not None:
        flags = shlex.join(C["ray_start_flags"]).replace(f"--port {C['ray_start_flags'][2]}", "--port PORT")
        text = f"Cluster: `ray start {flags}` ({C['ray_start_s']:.1f} s; private temp dir, HOME and ports)"
        first, warm = C.get("first"), C.get("runs_8w") or []
        if first:
            text += f", a first job (`dtrain submit {' '.join(first['options'])}`, {first['wall_s']:.1f} s, which starts dtrain's registry and API)"
        text += ", then each repeat's two jobs, each from a new client process."
        for name, runs in (("8-worker job", warm), ("2-worker job to 97%", C.get("runs_2w_97") or [])):
            if runs:
                text += (f" The warm {name}: start-up in run_job {med([r['timing']['startup_s'] for r in runs]):.2f} s, "
                         f"training {med([r['timing']['train_s'] for r in runs]):.2f} s, the rest of run_job (scoring "
                         f"the last epoch, saving) {med([r['timing']['total_s'] - r['timing']['startup_s'] - r['timing']['train_s'] for r in runs]):.2f} s, "
                         f"outside run_job (client start, submission, following, exit) "
                         f"{med([r['outside_run_job_s'] for r in runs]):.2f} s; test accuracy "
                         f"{med([r['test_accuracy'] for r in runs]) * 100:.2f}%.")
        if C.get("one_process"):
            busy = med([r["cluster_cpu_s"] / r["wall_s"] for r in C["one_process"]])
            text += (f" The cluster rows' baseline: {med([r['wall_s'] for r in C['one_process']]):.2f} s to exit, "
                     f"{f(med([r['to_target_s'] for r in C['one_process']]), '.2f')} s to 97%, while the idle cluster "
                     f"used {busy * 100:.1f}% of a core.")
        copies = [c for pair in C.get("plain_pairs") or [] for c in pair]
        if copies:
            text += (f" Two plain processes at once (after each baseline run, {len(copies) // 2} pairs): each "
                     f"{med([c['wall_s'] for c in copies]):.2f} s to exit, {f(med([c['to_target_s'] for c in copies]), '.2f')} s to 97%.")
        notes.append(text)
    if AB:
        diffs = AB["max_abs_diff_vs_sgd_numpy_2000_samples"]
        notes.append(f"Kernels: benchmarks/kernel.py's plain numba CSR loop (plain_sgd) against dtrain's sgd('numba'), "
                     f"{AB['samples']} samples a run, the same weights and shuffled order, {AB['rounds']} runs each alternated "
                     f"ABBA; both match sgd_numpy on 2,000 samples (max |difference| {max(diffs.values()):.1e}).")
    notes.append("2 workers ÷ 1 worker: section 4's in-process run_job jobs, samples trained / training phase s.")
    notes.append("Bound: what the figure cannot pass here, from costs measured in this run that the job cannot avoid "
                 "(speed.py's `bounds`): a floor is the least the job's seconds could be, ÷ the same baseline; a ceiling the "
                 "most its ratio could be. Plain training = the plain process's time to exit (or to 97%) less Python's "
                 "start-up and its imports and data. Plain SGD (the cluster rows) = the same less its scoring (which a job "
                 "may do while a round goes through its server) and its kernel's load (which a warm worker has done), in each of two plain processes run at once (the 2 cores "
                 "shared by processes that share nothing else), so that one job's SGD split over them takes at least half "
                 "of that. A client command = `dtrain status --json` on the running cluster, a new "
                 "process (median of 3" + (", over the cluster's HTTP API" if all(c.get("via_http") for c in C.get("client") or [{}])
                                           else "") + "). Sync rounds = the rounds the job's schedule runs (spec.py; the "
                 "8-worker schedule's early epochs have many, which its accuracy needs), each at the cost of a round through a "
                 "parameter-server actor that computes nothing, in the job's layout of worker processes (section 7's relay "
                 "round): what Ray's calls alone take, during which no worker trains. Hosted periods = the same when one "
                 "process hosts every worker: the server hands it each epoch's rounds with the rule's state, which comes "
                 "back with it, and the next epoch's to start from that answer; the rounds make no Ray call "
                 "(cluster/hosted.py; section 7's relay period). A goal past "
                 "its bound cannot be met on this machine.")
    P.table(f"Baseline ratios ({'QUICK run: short jobs, 1 repeat' if quick else 'full run'}): the issue's figures, "
            f"each a ratio of two medians measured in this run",
            ["figure", "measured (runs)", "ratio", "goal", "met", "bound on this machine (measured in this run)"],
            table, notes)


if __name__ == "__main__":
    sys.exit(main())
