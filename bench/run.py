"""``make bench``: what orchestration and tracking cost over a bare Optuna loop, side by side.

Runs, in one process tree and one sitting, the same search (sampler seed, trial count, search
space, folds, pruner, data) several ways, each in a fresh process (``bench/worker.py``) with its
own temporary MLflow store and Optuna journal:

- ``bare-p1``, ``bare-p2``: a plain Optuna loop over the churnml pipeline, 1 and 2 threads;
- ``sweep-p1``, ``sweep-p2``: the sweep flow with full tracking (what ``sweepflow sweep`` does:
  data check, then the flow, which starts a temporary Prefect server);
- ``sweep-p2-server``: the same flow against an already-running ``prefect server start``;
- ``second-nocache``, ``second-cached``: a second, short sweep on ``sweep-p2``'s store, without
  and with the data cache, for the time to first trial.

Variants of one repetition run back to back and alternate bare and sweep, so a change in the
machine's load hits both; ratios are taken within a repetition, then the median across
repetitions is reported. Steady state is first trial start to last trial end, from Optuna's trial
timestamps, for both kinds. Peak memory is the summed RSS of the worker and its children (the
temporary server included), sampled every 0.1 s.

    python -m bench.run                      # one repetition: ~10 min on a quiet 2-core box
    python -m bench.run --repeats 3          # medians of 3 (docs/benchmarks.md)
    python -m bench.run --quick              # smoke size: 300 rows, 2 trials
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
LARGE_DATA = REPO.parent / "shared" / "data" / "bank_churn_train.csv"
RESULTS = REPO / "bench" / "results"

#: The bench's search space: the default one with forests of 10-60 trees instead of 50-300, so
#: 40 trials fit the time budget. Shorter trials make our per-trial cost weigh more, not less.
BENCH_SPACE: dict[str, Any] = {"n_estimators": {"low": 10, "high": 60, "log": True}}

#: Environment that would point a worker at someone else's stores or server.
_FOREIGN_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "OPTUNA_STORAGE", "PREFECT_API_URL")


@dataclass(frozen=True)
class Variant:
    """One way of running the search."""

    name: str
    kind: str  # "bare" or "sweep"
    parallel: int
    prefect: str = "none"  # "none", "temporary" or "server"
    #: Run on the store of this earlier variant (a second sweep) instead of a fresh one.
    store_of: str | None = None
    clear_cache: bool = False
    #: Trials of a second sweep: only its time to first trial is measured.
    trials: int | None = None


VARIANTS = (
    Variant("bare-p1", "bare", 1),
    Variant("sweep-p1", "sweep", 1, "temporary"),
    Variant("bare-p2", "bare", 2),
    Variant("sweep-p2", "sweep", 2, "temporary"),
    Variant("sweep-p2-server", "sweep", 2, "server"),
    Variant("second-nocache", "sweep", 2, "temporary", "sweep-p2", clear_cache=True, trials=2),
    Variant("second-cached", "sweep", 2, "temporary", "sweep-p2", trials=2),
)


@dataclass(frozen=True)
class Dataset:
    """The rows a search runs on, and its trial budget."""

    name: str
    data: dict[str, Any]
    trials: int


@dataclass
class Measurement:
    """What one worker run measured (all times in seconds, memory in MiB)."""

    variant: str
    dataset: str
    repeat: int
    wall: float
    imports: float
    server: float
    ttft: float
    steady: float
    trials: int
    states: dict[str, int]
    params: list[Any]
    peak_rss_mb: float
    #: Peak minus the size once imports (and the temporary server) were done: what the data
    #: and the search added.
    growth_mb: float
    #: CPU seconds (user + system) of the whole tree from first trial start to last trial end,
    #: the running server's included: the work done, which others' load hardly changes.
    steady_cpu: float = 0.0
    server_rss_mb: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_trial(self) -> float:
        return self.steady / self.trials

    @property
    def trials_per_s(self) -> float:
        return self.trials / self.steady


# --------------------------------------------------------------------------- memory


def _children_map() -> dict[int, list[int]]:
    """parent pid -> child pids, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:  # the process ended while we looked
            continue
        # The command name may hold spaces and parentheses: fields start after the last ')'.
        parent = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(parent, []).append(int(entry.name))
    return children


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def tree_usage(root: int) -> tuple[int, float]:
    """Summed resident memory (bytes) and CPU time (user + system seconds, reaped children
    included) of ``root`` and all its descendants; (0, 0.0) once it is gone.

    psutil is used when installed; otherwise /proc is read directly (Linux).
    """
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        try:
            process = psutil.Process(root)
            members = [process, *process.children(recursive=True)]
        except psutil.NoSuchProcess:
            return 0, 0.0
        rss, cpu = 0, 0.0
        for member in members:
            try:
                times = member.cpu_times()
                rss += member.memory_info().rss
                cpu += times.user + times.system + times.children_user + times.children_system
            except psutil.NoSuchProcess:
                continue
        return rss, cpu
    children = _children_map()
    rss, ticks, stack = 0, 0, [root]
    while stack:
        pid = stack.pop()
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                pages = int(handle.read().split()[1])
            with open(f"/proc/{pid}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        fields = stat[stat.rindex(b")") + 2 :].split()
        rss += pages * _PAGE
        ticks += sum(int(x) for x in fields[11:15])  # utime, stime, cutime, cstime
        stack.extend(children.get(pid, ()))
    return rss, ticks / _TICK


class PeakMemory:
    """Samples memory and CPU time of process trees in a background thread.

    Keeps each tree's peak RSS and a time series of (time, RSS, CPU seconds), to read a tree's
    size or its CPU time at a given moment.
    """

    def __init__(self, roots: dict[str, int], interval: float = 0.1) -> None:
        self.roots = roots
        self.interval = interval
        self.peaks = dict.fromkeys(roots, 0)
        self.samples: dict[str, list[tuple[float, int, float]]] = {name: [] for name in roots}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.roots.items():
                rss, cpu = tree_usage(pid)
                if rss:
                    self.peaks[name] = max(self.peaks[name], rss)
                    self.samples[name].append((time.time(), rss, cpu))
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, moment: float, name: str = "worker") -> int:
        """A tree's size at ``moment``: the largest sample taken up to then."""
        return max((rss for when, rss, _ in self.samples[name] if when <= moment), default=0)

    def cpu_at(self, moment: float, name: str = "worker") -> float:
        """A tree's CPU seconds at ``moment``, interpolated between the samples around it."""
        samples = self.samples[name]
        if not samples:
            return 0.0
        before = [(w, c) for w, _, c in samples if w <= moment] or [(samples[0][0], samples[0][2])]
        after = [(w, c) for w, _, c in samples if w > moment] or [before[-1]]
        (t0, c0), (t1, c1) = before[-1], after[0]
        return c0 if t1 <= t0 else c0 + (c1 - c0) * (moment - t0) / (t1 - t0)


# --------------------------------------------------------------------------- servers


@contextmanager
def running_server(home: Path) -> Iterator[tuple[str, subprocess.Popen, float]]:
    """``prefect server start`` on a free port with its own PREFECT_HOME.

    Yields its API URL, its process (for its memory) and how long it took to answer.
    """
    from sweepflow.processes import free_port, start, stop, wait_for_http

    port = free_port()
    env = {**_worker_env(), "PREFECT_HOME": str(home)}
    home.mkdir(parents=True, exist_ok=True)
    started = time.time()
    prefect = str(Path(sys.executable).parent / "prefect")
    process = start(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        log=home / "server.log",
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/health", timeout=120, process=process)
        yield f"http://127.0.0.1:{port}/api", process, time.time() - started
    finally:
        stop(process)


def _worker_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _FOREIGN_ENV}
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    # A fresh PREFECT_HOME migrates its database first: slower than the default 20 s allows here.
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
    env["PYTHONPATH"] = str(REPO)
    return env


# --------------------------------------------------------------------------- running


@dataclass
class Sitting:
    """Where one benchmark invocation keeps its stores, and the servers it shares."""

    root: Path
    prefect_home: Path
    server_url: str | None = None
    server_process: subprocess.Popen | None = None
    stores: dict[tuple[str, int, str], Path] = field(default_factory=dict)


def run_variant(
    sitting: Sitting, variant: Variant, dataset: Dataset, repeat: int, space: dict[str, Any]
) -> Measurement:
    """Run one variant in a fresh worker process and return what it measured."""
    tag = f"{dataset.name}-r{repeat}-{variant.name}"
    folder = sitting.root / tag
    folder.mkdir(parents=True)
    if variant.store_of:
        mlruns = sitting.stores[(dataset.name, repeat, variant.store_of)]
    else:
        mlruns = folder / "mlruns"
    sitting.stores[(dataset.name, repeat, variant.name)] = mlruns
    if variant.clear_cache:
        shutil.rmtree(mlruns / "cache", ignore_errors=True)
    experiment = f"bench-{dataset.name}-r{repeat}-{variant.store_of or variant.name}"
    config = {
        "data": dataset.data,
        "n_trials": variant.trials or dataset.trials,
        "parallel": variant.parallel,
        "experiment_name": experiment,
        "model_name": f"{experiment}-model",
        "search_space": space,
    }
    if variant.trials is not None:
        # A second sweep is timed to its first trial; unpruned, its short budget cannot end with
        # every trial pruned (which fails a sweep). The pruner is not in the study fingerprint.
        config["pruner"] = "none"
    spec = {"kind": variant.kind, "prefect": variant.prefect, "config": config}
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec))

    env = _worker_env()
    env["SWEEPFLOW_MLRUNS"] = str(mlruns)
    env["PREFECT_HOME"] = str(sitting.prefect_home)
    if variant.prefect == "server":
        if sitting.server_url is None:
            raise RuntimeError("the running-server variant needs the server started")
        env["PREFECT_API_URL"] = sitting.server_url
    log = folder / "worker.log"
    roots: dict[str, int] = {}
    with open(log, "wb") as handle:
        spawned_at = time.time()
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.worker", str(spec_path)],
            cwd=REPO,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        roots["worker"] = process.pid
        if variant.prefect == "server" and sitting.server_process is not None:
            roots["server"] = sitting.server_process.pid
        try:
            with PeakMemory(roots) as memory:
                returncode = process.wait()
        finally:
            if process.poll() is None:  # the benchmark was interrupted: take the worker along
                process.terminate()
                process.wait(timeout=30)
    if returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{tag}: worker exited with {returncode}; log {log}:\n{tail}")
    result = json.loads(spec_path.with_suffix(".result.json").read_text())
    trials = result["trials"]
    if not trials:
        raise RuntimeError(f"{tag}: no finished trial")
    first_start = min(t["start"] for t in trials)
    last_end = max(t["end"] for t in trials)
    states: dict[str, int] = {}
    for trial in trials:
        states[trial["state"]] = states.get(trial["state"], 0) + 1
    return Measurement(
        variant=variant.name,
        dataset=dataset.name,
        repeat=repeat,
        wall=result["ended"] - spawned_at,
        imports=result["imported"] - spawned_at,
        server=result["server_ready"] - result["imported"],
        ttft=first_start - result["work_started"],
        steady=last_end - first_start,
        trials=len(trials),
        states=states,
        params=[t["params"] for t in trials],
        peak_rss_mb=memory.peaks["worker"] / 2**20,
        growth_mb=(memory.peaks["worker"] - memory.at(result["work_started"])) / 2**20,
        steady_cpu=sum(
            memory.cpu_at(last_end, name) - memory.cpu_at(first_start, name) for name in roots
        ),
        server_rss_mb=memory.peaks["server"] / 2**20 if "server" in memory.peaks else None,
        extra={
            "best_value": result["best_value"],
            "tail": result["ended"] - last_end,
            "holdout_roc_auc": result["holdout_roc_auc"],
        },
    )


# --------------------------------------------------------------------------- summary


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _ratio(
    by: dict[tuple[int, str], Measurement], repeats: list[int], num: str, den: str, metric: str
) -> float | None:
    """Median over repetitions of ``num``'s metric over ``den``'s, taken within a repetition."""
    values = []
    for r in repeats:
        a, b = by.get((r, num)), by.get((r, den))
        if a is not None and b is not None:
            values.append(getattr(a, metric) / getattr(b, metric))
    return _median(values)


def summarise(measurements: list[Measurement], datasets: list[Dataset]) -> dict[str, Any]:
    """Medians per variant and within-repetition ratios, per dataset."""
    summary: dict[str, Any] = {}
    for dataset in datasets:
        mine = [m for m in measurements if m.dataset == dataset.name]
        repeats = sorted({m.repeat for m in mine})
        by = {(m.repeat, m.variant): m for m in mine}
        rows: dict[str, dict[str, Any]] = {}
        for variant in VARIANTS:
            runs = [by[(r, variant.name)] for r in repeats if (r, variant.name) in by]
            if not runs:
                continue
            bare_name = f"bare-p{variant.parallel}"
            pairs = [(by[(m.repeat, bare_name)], m) for m in runs if (m.repeat, bare_name) in by]
            full = variant.trials is None
            rows[variant.name] = {
                "wall": _median([m.wall for m in runs]),
                "steady": _median([m.steady for m in runs]),
                "per_trial": _median([m.per_trial for m in runs]),
                "trials_per_s": _median([m.trials_per_s for m in runs]),
                "overhead_ms": _median(
                    [1000 * (m.steady - b.steady) / m.trials for b, m in pairs if full]
                )
                if variant.kind == "sweep"
                else None,
                "steady_ratio": _median([m.steady / b.steady for b, m in pairs if full])
                if variant.kind == "sweep"
                else None,
                "steady_cpu": _median([m.steady_cpu for m in runs]),
                "cpu_ratio": _median([m.steady_cpu / b.steady_cpu for b, m in pairs if full])
                if variant.kind == "sweep"
                else None,
                "cpu_overhead_ms": _median(
                    [1000 * (m.steady_cpu - b.steady_cpu) / m.trials for b, m in pairs if full]
                )
                if variant.kind == "sweep"
                else None,
                "wall_ratio": _median([m.wall / b.wall for b, m in pairs if full])
                if variant.kind == "sweep"
                else None,
                "peak_rss_mb": _median([m.peak_rss_mb for m in runs]),
                "rss_ratio": _median([m.peak_rss_mb / b.peak_rss_mb for b, m in pairs])
                if variant.kind == "sweep"
                else None,
                "growth_mb": _median([m.growth_mb for m in runs]),
                "growth_ratio": _median([m.growth_mb / b.growth_mb for b, m in pairs])
                if variant.kind == "sweep"
                else None,
                "server_rss_mb": _median([m.server_rss_mb for m in runs if m.server_rss_mb]),
                "ttft": _median([m.ttft for m in runs]),
                "imports": _median([m.imports for m in runs]),
                "server": _median([m.server for m in runs]),
                "trials": runs[0].trials,
                "states": runs[0].states,
                "same_trials_as_bare": all(m.params == b.params for b, m in pairs),
            }

        summary[dataset.name] = {
            "rows": rows,
            "repeats": len(repeats),
            "speedup_sweep": _ratio(by, repeats, "sweep-p2", "sweep-p1", "trials_per_s"),
            "speedup_bare": _ratio(by, repeats, "bare-p2", "bare-p1", "trials_per_s"),
            "ttft_first_over_cached": _ratio(by, repeats, "sweep-p2", "second-cached", "ttft"),
            "ttft_nocache_over_cached": _ratio(
                by, repeats, "second-nocache", "second-cached", "ttft"
            ),
            "server_vs_temporary_wall": _ratio(by, repeats, "sweep-p2-server", "sweep-p2", "wall"),
        }
    return summary


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def render(
    summary: dict[str, Any], datasets: list[Dataset], steady_targets: dict[str, float]
) -> str:
    """The markdown table and the targets, as printed and as published."""
    header = (
        "| data | variant | trials | wall s | steady s | s/trial | trials/s | overhead ms/trial "
        "| steady xbare | steady CPU s | CPU xbare | CPU overhead ms/trial "
        "| peak RSS MiB | RSS xbare | RSS growth MiB | growth xbare "
        "| first trial s | imports s | server start s |"
    )
    lines = [header, "|---|---|" + "---:|" * 17]
    for dataset in datasets:
        rows = summary[dataset.name]["rows"]
        for name, row in rows.items():
            rss = _fmt(row["peak_rss_mb"], ".0f")
            if row["server_rss_mb"]:
                rss += f" (+{row['server_rss_mb']:.0f} server)"
            lines.append(
                f"| {dataset.name} | {name} | {row['trials']} | {_fmt(row['wall'], '.1f')} "
                f"| {_fmt(row['steady'], '.1f')} | {_fmt(row['per_trial'])} "
                f"| {_fmt(row['trials_per_s'], '.3f')} | {_fmt(row['overhead_ms'], '.0f')} "
                f"| {_fmt(row['steady_ratio'], '.3f')} | {_fmt(row['steady_cpu'], '.1f')} "
                f"| {_fmt(row['cpu_ratio'], '.3f')} | {_fmt(row['cpu_overhead_ms'], '.0f')} "
                f"| {rss} | {_fmt(row['rss_ratio'])} "
                f"| {_fmt(row['growth_mb'], '.0f')} | {_fmt(row['growth_ratio'])} "
                f"| {_fmt(row['ttft'])} | {_fmt(row['imports'], '.1f')} "
                f"| {_fmt(row['server'], '.1f')} |"
            )
    lines.append("")
    lines.append("| target | data | measured | met |")
    lines.append("|---|---|---:|:---:|")
    for dataset in datasets:
        part = summary[dataset.name]
        rows = part["rows"]
        limit = steady_targets.get(dataset.name)
        for p in (1, 2):
            row = rows.get(f"sweep-p{p}")
            if row and limit and row["steady_ratio"] is not None:
                lines.append(
                    f"| steady state ≤ {limit:.2f}x bare (p{p}), wall | {dataset.name} "
                    f"| {row['steady_ratio']:.3f}x | {_yes(row['steady_ratio'] <= limit)} |"
                )
                lines.append(
                    f"| steady state ≤ {limit:.2f}x bare (p{p}), CPU | {dataset.name} "
                    f"| {row['cpu_ratio']:.3f}x | {_yes(row['cpu_ratio'] <= limit)} |"
                )
        speedup = part["speedup_sweep"]
        if speedup is not None:
            lines.append(
                f"| p2 ≥ 1.8x trials/s of p1 | {dataset.name} | {speedup:.2f}x "
                f"(bare: {_fmt(part['speedup_bare'])}x) | {_yes(speedup >= 1.8)} |"
            )
        for p in (1, 2):
            row = rows.get(f"sweep-p{p}")
            if row and row["rss_ratio"] is not None:
                lines.append(
                    f"| peak RSS ≤ 1.3x bare (p{p}) | {dataset.name} | {row['rss_ratio']:.2f}x "
                    f"(growth after start-up: {_fmt(row['growth_ratio'])}x) "
                    f"| {_yes(row['rss_ratio'] <= 1.3)} |"
                )
        first = part["ttft_first_over_cached"]
        if first is not None:
            isolated = part["ttft_nocache_over_cached"]
            lines.append(
                f"| second sweep: first trial ≥ 3x sooner | {dataset.name} | {first:.1f}x "
                f"(cache alone: {_fmt(isolated, '.1f')}x) | {_yes(first >= 3)} |"
            )
    return "\n".join(lines)


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def machine_facts() -> dict[str, Any]:
    """What the figures depend on: cores, CPU, memory, load, versions."""
    facts: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        facts["cpu"] = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.splitlines()
                if "model name" in line
            ),
            "unknown",
        )
        meminfo = Path("/proc/meminfo").read_text().split()
        facts["memory_gib"] = round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1)
        facts["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    except (OSError, ValueError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("prefect", "mlflow", "optuna", "scikit-learn", "pandas", "numpy", "pyarrow"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    facts["packages"] = packages
    return facts


# --------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="repetitions (medians reported)")
    parser.add_argument("--rows", type=int, default=20_000, help="rows of built-in data")
    parser.add_argument("--trials", type=int, default=40, help="trials on the built-in data")
    parser.add_argument("--large-data", type=Path, default=LARGE_DATA, help="the 165k CSV")
    parser.add_argument("--large-trials", type=int, default=8, help="trials on the large data")
    parser.add_argument("--no-large", action="store_true", help="skip the large data")
    parser.add_argument("--no-small", action="store_true", help="skip the built-in data")
    parser.add_argument("--no-server", action="store_true", help="skip the running server")
    parser.add_argument(
        "--variants", help="comma-separated subset of: " + ", ".join(v.name for v in VARIANTS)
    )
    parser.add_argument(
        "--full-space", action="store_true", help="the default search space (50-300 trees)"
    )
    parser.add_argument("--no-warm-up", action="store_true", help="skip the unmeasured warm-up")
    parser.add_argument("--quick", action="store_true", help="smoke size: 300 rows, 2 trials")
    parser.add_argument("--out", type=Path, help="folder for results (default bench/results/)")
    parser.add_argument(
        "--summarise", type=Path, metavar="RESULTS_JSON", help="print the table of a saved run"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.trials, args.no_large, args.no_server = 300, 2, True, True
        args.no_warm_up = True
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print and save the table. Returns the summary (for the smoke test)."""
    args = parse_args(argv)
    if args.summarise:
        print(resummarise(args.summarise))
        return {}
    wanted = set(args.variants.split(",")) if args.variants else {v.name for v in VARIANTS}
    if args.no_server:
        wanted.discard("sweep-p2-server")
    unknown = wanted - {v.name for v in VARIANTS}
    if unknown:
        raise SystemExit(f"unknown variant(s): {', '.join(sorted(unknown))}")
    variants = [v for v in VARIANTS if v.name in wanted]
    space = {} if args.full_space else BENCH_SPACE
    datasets = []
    if not args.no_small:
        name = "20k" if args.rows == 20_000 else f"{args.rows} rows"
        datasets.append(Dataset(name, {"synthetic_rows": args.rows}, args.trials))
    if not args.no_large:
        if not args.large_data.is_file():
            raise SystemExit(f"{args.large_data} not found; pass --large-data or --no-large")
        datasets.append(
            Dataset("165k", {"path": str(args.large_data.resolve())}, args.large_trials)
        )

    stamp = time.strftime("%Y%m%d-%H%M%S")
    out = (args.out or RESULTS) / stamp
    out.mkdir(parents=True, exist_ok=True)
    facts = machine_facts()
    command = "python -m bench.run " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"bench: {command.strip()} -> {out}", flush=True)
    print(f"machine: {facts.get('nproc')} cores, {facts.get('cpu')}, load {facts.get('loadavg')}")

    measurements: list[Measurement] = []
    with tempfile.TemporaryDirectory(prefix="sweepflow-bench-") as tmp:
        sitting = Sitting(root=Path(tmp), prefect_home=Path(tmp) / "prefect-home")
        with ExitStack() as stack:
            if any(v.prefect == "server" for v in variants):
                url, process, took = stack.enter_context(running_server(Path(tmp) / "server-home"))
                sitting.server_url, sitting.server_process = url, process
                facts["running_server_start_s"] = round(took, 2)
                print(f"running Prefect server at {url} (answered after {took:.1f} s)")
            if not args.no_warm_up:
                _warm_up(sitting, space)
            for repeat in range(args.repeats):
                for dataset in datasets:
                    for variant in variants:
                        if variant.store_of and variant.store_of not in wanted:
                            continue
                        m = run_variant(sitting, variant, dataset, repeat, space)
                        measurements.append(m)
                        # Saved as it goes, so an interrupted run keeps what it measured.
                        save(out, command.strip(), facts, space, measurements, datasets)
                        print(
                            f"  r{repeat} {dataset.name:>5} {variant.name:<16} wall {m.wall:6.1f}s"
                            f"  imports {m.imports:4.1f}s  server {m.server:4.1f}s"
                            f"  first trial {m.ttft:5.2f}s  steady {m.steady:6.1f}s"
                            f"  cpu {m.steady_cpu:6.1f}s  peak {m.peak_rss_mb:5.0f} MiB"
                            f"  {m.states}",
                            flush=True,
                        )
    facts["loadavg_after"] = machine_facts().get("loadavg")
    summary, table = save(out, command.strip(), facts, space, measurements, datasets)
    print()
    print(table)
    return summary


def save(
    out: Path,
    command: str,
    facts: dict[str, Any],
    space: dict[str, Any],
    measurements: list[Measurement],
    datasets: list[Dataset],
) -> tuple[dict[str, Any], str]:
    """Write results.json (every measurement, the summary) and table.md; return both."""
    names = {m.dataset for m in measurements}
    done = [d for d in datasets if d.name in names]
    summary = summarise(measurements, done)
    table = render(summary, done, {done[0].name: 1.10, "165k": 1.03} if done else {})
    (out / "results.json").write_text(
        json.dumps(
            {
                "command": command,
                "machine": facts,
                "space": space,
                "datasets": [d.__dict__ for d in datasets],
                "summary": summary,
                "measurements": [m.__dict__ for m in measurements],
            },
            indent=1,
            default=str,
        )
    )
    (out / "table.md").write_text(table + "\n")
    return summary, table


def resummarise(path: Path) -> str:
    """The table of a saved (maybe interrupted) run's results.json."""
    saved = json.loads(path.read_text())
    measurements = [Measurement(**m) for m in saved["measurements"]]
    datasets = [Dataset(**d) for d in saved["datasets"]]
    _, table = save(
        path.parent, saved["command"], saved["machine"], saved["space"], measurements, datasets
    )
    return table


def _warm_up(sitting: Sitting, space: dict[str, Any]) -> None:
    """One tiny unmeasured sweep: migrates the temporary server's database, warms the disk cache."""
    warm = Dataset("warm-up", {"synthetic_rows": 300}, 1)
    run_variant(sitting, Variant("warm-up", "sweep", 1, "temporary"), warm, 0, space)


if __name__ == "__main__":
    # A plain `kill` unwinds like Ctrl-C: the worker and the running server are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
