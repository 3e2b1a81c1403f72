"""Regenerate the measured tables in README.md and docs/*.md from the committed results files.

    python benchmarks/tables.py           # rewrite every generated block in place
    python benchmarks/tables.py --check   # exit 1 if any generated block differs from its results file

A generated block sits between two marker comments, each on a line of its own:

    <!-- table:speed-summary -->
    ...
    <!-- /table:speed-summary -->

Everything between them is replaced by what the generator of that name makes from
benchmarks/results/*.json, followed by a line naming the results file and the script
that wrote it. Edit the generator (or rerun the benchmark), never the block: a
hand-edited table fails `--check`, which tests/test_docs.py runs.

The speed tables are the ones benchmarks/speed.py prints: its own `report` function
runs on the saved JSON. The others are built here from the JSON the other scripts save.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import statistics
import sys
from functools import cache
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"(<!-- table:([a-z0-9-]+) -->\n)(.*?)(<!-- /table:\2 -->)", re.S)


# ------------------------------------------------------------------ helpers


def _int_keys(d: dict) -> dict:
    """JSON turns the scripts' int keys (workers, epochs) into strings; give them back."""
    return {(int(k) if isinstance(k, str) and k.isdigit() else k): v for k, v in d.items()}


@cache
def load(name: str) -> Any:
    path = RESULTS / name
    if not path.exists():
        raise SystemExit(f"error: {path.relative_to(REPO)} is missing (a generated table needs it)")
    return json.loads(path.read_text(), object_hook=_int_keys)


def markdown(header: list[str], rows: list[list[Any]]) -> str:
    cells = [[("—" if c is None else str(c)) for c in row] for row in rows]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def pct(x: float | None, digits: int = 2) -> str | None:
    return None if x is None else f"{x * 100:.{digits}f}%"


# ------------------------------------------------------------------ speed.json (benchmarks/speed.py's own report)


@cache
def speed_tables() -> dict[str, tuple[str, list[str], list[list[Any]], list[str]]]:
    """Run speed.py's `report` on the saved JSON, collecting its tables by section number."""
    spec = importlib.util.spec_from_file_location("_dtrain_speed", REPO / "benchmarks" / "speed.py")
    speed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(speed)
    R = json.loads((RESULTS / "speed.json").read_text(), object_hook=_int_keys)
    tables: dict[str, tuple] = {}

    class Collect:
        def table(self, title: str, header: list[str], rows: list[list[Any]], notes: list[str] = ()) -> None:
            key = title.split(" ", 1)[0].rstrip(".")  # "1", "7a", "Summary"
            tables[key] = (title, header, rows, list(notes))

    speed.Printer = Collect
    speed.report(R, R["config"]["quick"], R["machine"].get("ray_cpus") or R["machine"]["cpus"])
    tables["_derived"] = R["derived"]
    tables["_machine"] = R["machine"]
    return tables


def speed_section(key: str, notes: bool = True) -> Callable[[], str]:
    def make() -> str:
        title, header, rows, extra = speed_tables()[key]
        text = f"**{title}**\n\n" + markdown(header, rows)
        if notes and extra:
            text += "\n\n" + " ".join(" ".join(n.split()) for n in extra)
        return text

    return make


def speed_machine() -> str:
    m = speed_tables()["_machine"]
    return (f"Machine of the committed run: {m['cpus']} cores, Python {m['python']}, NumPy {m['numpy']}, "
            f"numba {m['numba']}, Ray {m['ray']}, started {m['started']}; load average {m['loadavg_start']} at "
            f"start and {m['loadavg_end']} at end (a shared, noisy host).")


def quickstart() -> str:
    h = speed_tables()["_derived"]["headline"]
    runs = len(load("speed.json")["headline"])
    return (f"It reaches {h['accuracy'] * 100:.2f}% test accuracy with the default seed (the same weights, bit for "
            f"bit, on every run). On a 2-core machine the whole command took {h['wall_s']:.1f} s from start to "
            f"prompt, {h['train_s']:.1f} s of it training (median of {runs} runs).")


# ------------------------------------------------------------------ accuracy_by_workers.json


SHOW_EPOCHS = (1, 2, 3, 5, 10, 20, 32)


def _first(history: list[dict], target: float) -> int | None:
    return next((h["epoch"] for h in history if h["test_accuracy"] >= target), None)


def _median_epoch(found: list[int | None]) -> float | None:
    """As benchmarks/accuracy_by_workers.py: a seed that never reached the target counts as
    later than any that did; None when the middle of the ordering never reached it."""
    ordered = sorted(found, key=lambda e: float("inf") if e is None else e)
    mid = len(ordered) // 2
    middle = ordered[mid - 1 : mid + 1] if len(ordered) % 2 == 0 else ordered[mid : mid + 1]
    return None if None in middle else statistics.mean(middle)


def _by_workers() -> dict[int, list[dict]]:
    runs = load("accuracy_by_workers.json")
    return {w: sorted((r for r in runs if r["workers"] == w), key=lambda r: r["seed"])
            for w in sorted({r["workers"] for r in runs})}


def _seeds() -> str:
    seeds = sorted({r["seed"] for r in load("accuracy_by_workers.json")})
    return f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) else ",".join(map(str, seeds))


def accuracy_by_workers() -> str:
    by = _by_workers()
    epochs = min(len(r["history"]) for rs in by.values() for r in rs)
    shown = [e for e in SHOW_EPOCHS if e <= epochs]
    one = _median_epoch([_first(r["history"], 0.97) for r in by.get(1, [])])
    rows = []
    for w, rs in by.items():
        def to(target: float) -> str:
            found = [_first(r["history"], target) for r in rs]
            m, missing = _median_epoch(found), sum(f is None for f in found)
            if m is None:
                return f"never ({missing} of {len(found)} seeds)"
            return f"{m:g}" + (f" ({missing} of {len(found)} seeds never)" if missing else "")

        m97 = _median_epoch([_first(r["history"], 0.97) for r in rs])
        rows.append([w, to(0.97), f"{m97 / one:.2f}x" if m97 is not None and one else None, to(0.975),
                     *[f"{statistics.median(r['history'][e - 1]['test_accuracy'] for r in rs) * 100:.2f}" for e in shown],
                     f"{statistics.median(r['train_s'] for r in rs):.1f}", f"{statistics.median(r['total_s'] for r in rs):.1f}"])
    header = ["workers", "epochs to 97%", "vs 1 worker", "to 97.5%", *[f"ep {e}" for e in shown], "train s", "job s"]
    return f"Test accuracy (%) by epoch, medians over seeds {_seeds()}:\n\n" + markdown(header, rows)


def accuracy_per_seed() -> str:
    rows = [[w, " ".join("—" if e is None else str(e) for e in (_first(r["history"], 0.97) for r in rs))]
            for w, rs in _by_workers().items()]
    return f"Epoch of first reaching 97%, per seed ({_seeds()}):\n\n" + markdown(["workers", "per seed"], rows)


def rounds_by_workers() -> str:
    rows = []
    for w, rs in _by_workers().items():
        h = rs[0]["history"]
        first = [x["rounds"] for x in h[:4]]
        totals = sorted({sum(x["rounds"] for x in r["history"]) for r in rs})
        rows.append([w, " / ".join(map(str, first)), " or ".join(map(str, totals)), len(h)])
    return markdown(["workers", "rounds in epochs 1 / 2 / 3 / 4", "rounds in the whole job", "epochs"], rows)


def schedule_before_after() -> str:
    """The sync schedule before issue 20 (schedule/before.json) against today's default
    (accuracy_by_workers.json), for the worker counts both measured."""
    now = _by_workers()
    before: dict[int, list[dict]] = {}
    for r in load("schedule/before.json"):
        before.setdefault(r["workers"], []).append(r)
    one = _median_epoch([_first(r["history"], 0.97) for r in now.get(1, [])])
    rows = []
    for w in sorted(set(before) & set(now)):
        for label, rs in (("before (2000-sample rounds, late momentum 0.5)", before[w]), ("now (default)", now[w])):
            e97 = _median_epoch([_first(r["history"], 0.97) for r in rs])
            rounds = statistics.median(sum(h["rounds"] for h in r["history"]) for r in rs)
            rows.append([w, label, "never" if e97 is None else f"{e97:g}",
                         f"{e97 / one:.2f}x" if e97 is not None and one else None,
                         f"{statistics.median(r['history'][0]['test_accuracy'] for r in rs) * 100:.2f}",
                         f"{statistics.median(r['final'] for r in rs) * 100:.2f}",
                         sum(r["final"] >= 0.975 for r in rs), f"{rounds:g}"])
    seeds = len(next(iter(before.values())))
    return (f"Medians over {seeds} seeds (0-{seeds - 1}), 32 epochs; \"vs 1 worker\" divides by today's 1-worker median "
            f"({one:g} epochs):\n\n"
            + markdown(["workers", "schedule", "epochs to 97%", "vs 1 worker", "epoch 1 %", "final %",
                        "seeds ≥ 97.5%", "rounds"], rows))


# ------------------------------------------------------------------ modes.json


def modes_sync_async() -> str:
    M = load("modes.json")
    rows = []
    for r in M["modes"]:
        rows.append([r["workers"], r["mode"], f"{r['samples_per_s'] / 1000:.0f}k",
                     f"{r['train_s_to_97']:.2f} s" if r["train_s_to_97"] is not None else f"not in {M['epochs']} epochs",
                     r["epochs_to_97"], pct(r["final_accuracy"]), f"{r['mean_staleness']:.1f}" if r["mean_staleness"] else "0"])
    return (f"{M['epochs']} epochs, medians of {_repeats(M, 'modes')} seeds:\n\n"
            + markdown(["workers", "mode", "samples/s (training)", "time to 97% (training)", "epochs to 97%",
                        "final accuracy", "mean staleness"], rows))


def modes_straggler() -> str:
    M = load("modes.json")
    k = max(r["workers"] for r in M["modes"])
    rows = [[r["mode"], f"{r['train_s']:.2f} s", f"{r['straggler_samples']:,.0f}", f"{r['others_samples']:,.0f}",
             pct(r["final_accuracy"])] for r in M["straggler"]]
    by = {r["mode"]: r["train_s"] for r in M["straggler"]}
    return (f"{k} workers, {M['epochs']} epochs, worker 0 late for every block (`--straggler-delay`), medians of "
            f"{_repeats(M, 'straggler')} seeds:\n\n"
            + markdown(["mode", "training time", "samples the straggler trained", "samples each other worker trained (median)",
                        "final accuracy"], rows)
            + f"\n\nSync took {by['sync'] / by['async']:.1f}x as long as async.")


def _repeats(M: dict, part: str) -> int:
    """The seeds the medians of a part of modes.json are of."""
    return M.get("repeats_of", {}).get(part, M["repeats"])


def modes_skew() -> str:
    M = load("modes.json")
    k = max(r["workers"] for r in M["modes"])
    base = next(r["final_accuracy"] for r in M["skew"] if r["shard"] == "iid" and r["combine"] == "bmuf")
    rows = [[r["shard"], r["combine"] + (" (default)" if r["combine"] == "bmuf" else ""), pct(r["final_accuracy"]),
             f"{(r['final_accuracy'] - base) * 100:+.2f}", r["epochs_to_97"] if r["epochs_to_97"] else f"not in {M['epochs']}"]
            for r in M["skew"]]
    return (f"{k} workers, {M['epochs']} epochs, sync, medians of {_repeats(M, 'skew')} seeds:\n\n"
            + markdown(["shard", "combine", "final accuracy", "points vs iid + bmuf", "epochs to 97%"], rows))


def modes_federated() -> str:
    M = load("modes.json")
    k = max(r["workers"] for r in M["modes"])
    base = next(r["final_accuracy"] for r in M["skew"] if r["shard"] == "iid" and r["combine"] == "bmuf")
    rows = [[f"the workers' shards ({r['clients']} clients, all each round)" if r["clients"] == r["clients_per_round"]
             else f"{r['clients']} clients, {r['clients_per_round']} each round",
             f"`{r['algorithm']}`" + (f" `--local-steps {r['local_steps']}`" if r.get("local_steps") else ""),
             r["rounds"], pct(r["final_accuracy"]), f"{(r['final_accuracy'] - base) * 100:+.2f}",
             r["epochs_to_97"] if r["epochs_to_97"] else f"not in {M['epochs']}"]
            for r in M["federated"] + M.get("scaffold-steps", [])]
    steps = (f" (the `--local-steps` rows: {_repeats(M, 'scaffold-steps')})"
             if _repeats(M, "scaffold-steps") != _repeats(M, "federated") else "")
    return (f"{k} workers, {M['epochs']} epochs, label-skewed data, each algorithm's defaults (lr 0.01, per-sample SGD, "
            f"one local epoch), medians of {_repeats(M, 'federated')} seeds{steps}:\n\n"
            + markdown(["clients", "algorithm", "rounds", "final accuracy", "points vs iid + bmuf", "epochs to 97%"], rows))


# ------------------------------------------------------------------ fedavg.json

FED_ROWS = {
    "fedsgd-iid": "FedSGD, IID, B = ∞ (`--batch-size 0`)",
    "fedavg-iid": "FedAvg, IID, B = 10",
    "fedavg-noniid": "FedAvg, pathological non-IID, B = 10 (`--split label-skew`)",
    "fedadam-noniid": "FedAdam, the same non-IID row (`--algorithm fedadam`)",
    "fedyogi-noniid": "FedYogi, the same non-IID row (`--algorithm fedyogi`)",
    "scaffold-noniid": "SCAFFOLD, the same non-IID row (`--algorithm scaffold`)",
}


def fedavg() -> str:
    F = load("fedavg.json")
    seeds = sorted({r["seed"] for r in F["runs"]})
    rows = []
    order = list(FED_ROWS)
    for t in sorted(F["table"], key=lambda t: (order.index(t["row"]) if t["row"] in order else len(order), t.get("server_lr") or 0)):
        by_seed = ", ".join("—" if x is None else str(x) for x in t["by_seed"])
        med = t["median_rounds_to_97"]
        lr = f"{t['lr']:g}" + (f", server {t['server_lr']:g}" if t.get("server_lr") else "")
        rows.append([FED_ROWS.get(t["row"], t["row"]), t["paper_rounds"] or "—",
                     f"{med:g} ({by_seed})" if med is not None else f"— ({by_seed})",
                     f"{t['ratio']:.2f}" if t["ratio"] else None, lr])
    counts = {len(t["by_seed"]) for t in F["table"]}
    runs = (f"median of seeds {seeds[0]}-{seeds[-1]}" if len(counts) == 1
            else "median (each seed's, from seed 0: " + " or ".join(map(str, sorted(counts))) + " seeds a row)")
    return markdown(["row (2NN, E = 1, C = 0.1)", "paper", f"dtrain, {runs}", "dtrain / paper", "lr"], rows)


def fedavg_ratios() -> str:
    t = {r["row"]: r for r in load("fedavg.json")["table"]}
    def ratio(a: str, b: str, key: str) -> str:
        return f"{t[a][key] / t[b][key]:.1f}x"
    rows = [["FedSGD / FedAvg, IID", ratio("fedsgd-iid", "fedavg-iid", "paper_rounds"),
             ratio("fedsgd-iid", "fedavg-iid", "median_rounds_to_97")],
            ["FedAvg non-IID / IID", ratio("fedavg-noniid", "fedavg-iid", "paper_rounds"),
             ratio("fedavg-noniid", "fedavg-iid", "median_rounds_to_97")]]
    return markdown(["rounds to 97%, ratio of rows", "paper", "dtrain"], rows)


# ------------------------------------------------------------------ ps_ceiling.json

PS_K = (8, 16, 32, 64)


def _ps_title(P: dict) -> str:
    m = P["machine"]
    return (f"Medians of {P['config']['repeats']} runs; {m['cpus']} shared cores, load average {m['loadavg_start']} at start, "
            f"{m['loadavg_end']} at end.")


def ps_merge() -> str:
    P = load("ps_ceiling.json")
    rows = []
    for model, g in P["grid"].items():
        by = g["by_k"]
        rows.append([model, f"{g['params']:,}", " / ".join(f"{by[k]['ms_per_round']:.1f}" for k in PS_K),
                     f"{by[64]['syncs_per_s']:,.0f}", f"{P['per_result_slope'][model]['ms_per_result']:.2f}"])
    return (_ps_title(P) + "\n\n"
            + markdown(["model", "parameters", "server ms per round at K = " + " / ".join(map(str, PS_K)),
                        "syncs/s at K = 64", "ms per extra worker"], rows))


def ps_saturation() -> str:
    P = load("ps_ceiling.json")
    rows = []
    for model, s in P["saturation"].items():
        by = s["first_saturated_k_by_epoch"]
        rows.append([model, f"{P['kernel']['models'][model]['samples_per_s'] / 1000:.0f}k",
                     *[by[e] or "none ≤ 64" for e in sorted(by)], s["whole_shard_first_saturated_k"] or "none ≤ 64"])
    epochs = sorted(next(iter(P["saturation"].values()))["first_saturated_k_by_epoch"])
    return markdown(["model", "kernel samples/s (1 core)", *[f"epoch {e}" for e in epochs], "whole-shard rounds"], rows)


def ps_profile() -> str:
    P = load("ps_ceiling.json")
    rows = []
    for model, p in P["profile"].items():
        parts, total = p["parts_ms"], p["total_ms"]
        rows.append([model, f"{total:.1f}", *[f"{parts[x] / total * 100:.0f}%" for x in
                                                ("fetch_deserialise_args", "weighted_mean", "return_start_weights")]])
    k = next(iter(P["profile"].values()))["k"]
    return markdown(["model", f"merge ms at K = {k}", "fetching the K argument objects", "weighted mean",
                     "returning the start weights"], rows) + \
        f"\n\nFetching costs about {P['per_ref_ms']:.3f} ms per argument object, whatever its size."


def ps_tree() -> str:
    P = load("ps_ceiling.json")
    rows = []
    for model, t in P["tree"].items():
        flat = P["grid"][model]["by_k"][t["k"]]["ms_per_round"]
        g8 = t["by_group"][8]
        rows.append([model, f"{flat:.1f}", f"{g8['server_ms']:.1f}", f"{flat / g8['server_ms']:.1f}x",
                     f"{g8['reducer_ms']:.1f}", f"{t['equal']['max_abs_diff']:g}"])
    return markdown(["model", "flat merge ms (K = 64)", "tree: server ms (8 partials of 8 workers)", "server speed-up",
                     "one reducer ms", "max weight difference, tree vs flat"], rows)


def ps_projection() -> str:
    P = load("ps_ceiling.json")
    models = list(P["projection_1000"])
    designs = [d for d in P["projection_1000"][models[0]] if not d.startswith("_")]
    rows = [[d, *[f"{P['projection_1000'][m][d]['merge_ms']:,.0f}" for m in models]] for d in designs]
    d = P["projection_1000"][models[0]]["_default_schedule_at_1000"]
    return (markdown(["design", *[f"{m} ms/round" for m in models]], rows)
            + f"\n\nThe driver alone spends about {d['driver_submit_ms_per_round']:.0f} ms per round submitting 1000 "
              f"worker calls ({P['checks']['driver_submit']['us_per_call']:.0f} µs each, measured).")


# ------------------------------------------------------------------ startup_ab.json (when committed)


def ab_table(results: str) -> Callable[[], str]:
    """startup_ab.py's before/after medians from `results`."""
    return lambda: _ab_table(results)


def _ab_table(results: str) -> str:
    S = load(results)
    rows = [[name, f"{m['end_to_end_s']:.2f} s", f"{m['startup_s']:.2f} s", f"{m['train_s']:.2f} s", pct(m["test_accuracy"])]
            for name, m in S["medians"].items()]
    r = S["ratio_after_before"]
    return (f"`{S['command']}`, {S['before']} (before) against {S['after']} (after), medians of {S['runs']} "
            f"alternated runs:\n\n" + markdown(["side", "end to end", "start-up", "training", "accuracy"], rows)
            + f"\n\nafter / before: end to end {r['end_to_end_s']:.3f}, start-up {r['startup_s']:.3f}.")


def api_speed() -> str:
    A = load("api_speed.json")
    m = A["medians"]
    rows = [["through Ray (`RAY_ADDRESS`)", f"{m['through_ray_s']:.2f} s", "1"],
            ["over HTTP (`--address http://...`)", f"{m['over_http_s']:.2f} s", f"{A['ratio_http_ray']:.3f}"]]
    for label, key in [("floor: `python -c pass`", "python_alone_s"), ("floor: `python -c \"import dtrain.cli.main\"`", "cli_import_s")]:
        if key in m:  # measured in the same alternation since the file gained them
            rows.append([label, f"{m[key]:.2f} s", f"{m[key] / m['through_ray_s']:.3f}"])
    latencies = ", ".join(f"{x:.2f}" for x in A["follow_latency_s"])
    return (f"`dtrain status JOB --json`, a new process each, timed from start to exit, the two alternated; "
            f"medians of {A['runs']}:\n\n" + markdown(["how", "status", "ratio to Ray"], rows)
            + f"\n\n`dtrain logs JOB --follow` over HTTP, from an epoch's line landing on the head's disk to the "
              f"follower printing it: {latencies} s (max {A['follow_latency_max_s']:.2f} s).")


# ------------------------------------------------------------------ chaos.json


def chaos() -> str:
    """benchmarks/chaos.py's own table (its `table_rows`), run on the saved JSON."""
    spec = importlib.util.spec_from_file_location("_dtrain_chaos", REPO / "benchmarks" / "chaos.py")
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # its dataclasses look it up there
    spec.loader.exec_module(module)
    C = load("chaos.json")
    header, rows = module.table_rows(C)
    made = [k for k in C["kills"] if "skipped" not in k]
    jobs = C["table"][-1]["count"]
    m = C["machine"]
    resumed = C["table"][-1]["resumed"]
    identical = sum(1 for j in C["jobs"] if j["checks"].get("bit_identical_to_baseline"))
    compared = sum(1 for j in C["jobs"] if j["algorithm"] in ("sync", "federated"))
    return (f"A {C['mode']} run, seed {C['seed']}: {len(made)} kills over {C['kill_window_s']:.0f} s into {jobs} jobs, "
            f"{C['config']['slots']} at a time; {C['runtime_s']:.0f} s in all on {m['cpus']} shared cores (load average "
            f"{m['loadavg_start'][0]} at start, {m['loadavg_end'][0]} at end).\n\n"
            + markdown(header, rows)
            + f"\n\nRows count the kills made while a job of theirs ran (one kill can hit two jobs); `all` counts "
              f"each kill once. Recoveries: times a job went back to its last checkpoint (a lost server, runner or "
              f"node, a resume); worker restarts: workers Ray restarted in place. Extra s: a job's time from its "
              f"workers' start to its end, against the undisturbed run of its spec. Jobs that ended FAILED and were "
              f"taken to SUCCEEDED by `dtrain resume`: {resumed}. {identical} of {compared} sync and federated jobs ended with weights bit-identical to "
              f"their undisturbed run; lost: {C['lost']}.")


# ------------------------------------------------------------------ the registry

#: block name -> (results file, the script that writes it, generator)
def submit_options() -> str:
    """`dtrain submit`'s options as its --help gives them (their text and defaults are spec.py's),
    with the algorithms each setting belongs to."""
    import typer.main

    from dtrain.cli.main import app
    from dtrain.spec import SETTINGS, JobSpec

    command = typer.main.get_command(app).commands["submit"]  # type: ignore[attr-defined]
    rows = []
    for param in command.params:
        if getattr(param, "hidden", False):
            continue
        # an inherited setting an algorithm refuses (FedAdam's block momentum) is not one of its options
        having = [n for n, settings in SETTINGS.items() if param.name in settings.model_fields and param.name not in settings.refused]
        required = any(SETTINGS[n].model_fields[param.name].is_required() for n in having)
        default = "required" if required else param.show_default if isinstance(param.show_default, str) else "—"
        spec_wide = param.name in JobSpec.model_fields or param.name == "algorithm"
        names = ", ".join(f"`{o}`" for o in param.opts)
        cells = [names, ", ".join(having) or ("all" if spec_wide else ""), default, param.help or ""]
        rows.append([cell.replace("|", "\\|") for cell in cells])
    return markdown(["option", "algorithms", "default", "meaning"], rows)


#: What a generated block is made from: (results file, script that wrote it, generator); a block
#: without a results file is made from dtrain's own code, named by the script.
TABLES: dict[str, tuple[str | None, str, Callable[[], str]]] = {
    "submit-options": (None, "", submit_options),
    "quickstart": ("speed.json", "speed.py", quickstart),
    "speed-machine": ("speed.json", "speed.py", speed_machine),
    "speed-summary": ("speed.json", "speed.py", speed_section("Summary")),
    "speed-baseline": ("speed.json", "speed.py", speed_section("Baseline")),
    "speed-kernel": ("speed.json", "speed.py", speed_section("1")),
    "speed-throughput": ("speed.json", "speed.py", speed_section("2")),
    "speed-sync-share": ("speed.json", "speed.py", speed_section("3")),
    "speed-time-to-accuracy": ("speed.json", "speed.py", speed_section("4")),
    "speed-startup": ("speed.json", "speed.py", speed_section("5")),
    "speed-memory": ("speed.json", "speed.py", speed_section("6")),
    "speed-model-size": ("speed.json", "speed.py", speed_section("7a")),
    "speed-sync-round": ("speed.json", "speed.py", speed_section("7b")),
    "accuracy-by-workers": ("accuracy_by_workers.json", "accuracy_by_workers.py", accuracy_by_workers),
    "accuracy-per-seed": ("accuracy_by_workers.json", "accuracy_by_workers.py", accuracy_per_seed),
    "rounds-by-workers": ("accuracy_by_workers.json", "accuracy_by_workers.py", rounds_by_workers),
    "schedule-before-after": ("accuracy_by_workers.json", "accuracy_by_workers.py", schedule_before_after),
    "modes-sync-async": ("modes.json", "modes.py", modes_sync_async),
    "modes-straggler": ("modes.json", "modes.py", modes_straggler),
    "modes-skew": ("modes.json", "modes.py", modes_skew),
    "modes-federated": ("modes.json", "modes.py", modes_federated),
    "fedavg": ("fedavg.json", "fedavg.py", fedavg),
    "fedavg-ratios": ("fedavg.json", "fedavg.py", fedavg_ratios),
    "ps-merge": ("ps_ceiling.json", "ps_ceiling.py", ps_merge),
    "ps-saturation": ("ps_ceiling.json", "ps_ceiling.py", ps_saturation),
    "ps-profile": ("ps_ceiling.json", "ps_ceiling.py", ps_profile),
    "ps-tree": ("ps_ceiling.json", "ps_ceiling.py", ps_tree),
    "ps-projection": ("ps_ceiling.json", "ps_ceiling.py", ps_projection),
    "startup-ab": ("startup_ab.json", "startup_ab.py", ab_table("startup_ab.json")),
    "refactor-ab": ("refactor_ab.json", "startup_ab.py", ab_table("refactor_ab.json")),
    "pack-ab": ("pack_ab.json", "startup_ab.py", ab_table("pack_ab.json")),
    "chaos": ("chaos.json", "chaos.py", chaos),
    "api-speed": ("api_speed.json", "api_speed.py", api_speed),
}


def block(name: str) -> str:
    if name not in TABLES:
        raise SystemExit(f"error: unknown generated block {name!r} (known: {', '.join(TABLES)})")
    results, script, make = TABLES[name]
    if results is None:
        return f"{make()}\n\n_Generated from the job spec's fields (`spec.py`) by `benchmarks/tables.py`._\n"
    load(results)  # a clear error when the file is missing
    return f"{make()}\n\n_Generated from `benchmarks/results/{results}`, written by `benchmarks/{script}`._\n"


def render(text: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + block(m.group(2)) + m.group(4), text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a generated block is out of date")
    args = parser.parse_args(argv)
    stale = []
    for path in DOCS:
        text = path.read_text()
        new = render(text)
        if new != text:
            stale.append(path.relative_to(REPO))
            if not args.check:
                path.write_text(new)
    if args.check and stale:
        print("generated tables out of date (run `python benchmarks/tables.py`): " + ", ".join(map(str, stale)),
              file=sys.stderr)
        return 1
    if not args.check:
        print("rewrote " + (", ".join(map(str, stale)) if stale else "nothing (all up to date)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
