"""Run one variant in a fresh worker process and measure it: wall and trial times from the
worker's report, memory and CPU of its process tree sampled every 0.1 s, a running Prefect server
when a variant needs one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.plan import Dataset, Measurement, Variant

REPO = Path(__file__).resolve().parents[1]

#: Environment that would point a worker at someone else's stores or server.
_FOREIGN_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "OPTUNA_STORAGE", "PREFECT_API_URL")


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


def process_rss(pid: int) -> int:
    """RSS in bytes of the process ``pid`` alone; 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except OSError:
        return 0


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
        #: (time, RSS) of each root process alone, without its children (a temporary server).
        self.own: dict[str, list[tuple[float, int]]] = {name: [] for name in roots}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, pid in self.roots.items():
                rss, cpu = tree_usage(pid)
                if rss:
                    self.peaks[name] = max(self.peaks[name], rss)
                    self.samples[name].append((time.time(), rss, cpu))
                    own = process_rss(pid)
                    if own:
                        self.own[name].append((time.time(), own))
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

    def own_growth(self, since: float, name: str = "worker") -> int:
        """The root process's own peak RSS above its largest sample up to ``since``."""
        samples = self.own[name]
        base = max((rss for when, rss in samples if when <= since), default=0)
        return max((rss for _, rss in samples), default=0) - base

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
def running_server(home: Path) -> Iterator[tuple[str, int, float, int | None]]:
    """A Prefect server kept running the way users keep one: ``sweepflow server start`` (any
    free port) with its own PREFECT_HOME, where it records itself; ``sweepflow server stop``
    at the end.

    Yields its API URL, its process id (for its memory), how long it took to answer (its warm
    sweep process ready too) and that process's id.
    """
    env = {**_worker_env(), "PREFECT_HOME": str(home)}
    home.mkdir(parents=True, exist_ok=True)
    sweepflow = str(Path(sys.executable).parent / "sweepflow")
    started = time.time()
    subprocess.run(
        [sweepflow, "server", "start", "--port", "0"],
        env=env,
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=300,
    )
    took = time.time() - started
    try:
        from cli.record import read_record

        record = read_record(home)
        if record is None:
            raise RuntimeError(f"sweepflow server start left no record in {home}")
        yield record.api_url, record.pid, took, record.runner_pid
    finally:
        subprocess.run(
            [sweepflow, "server", "stop"], env=env, cwd=REPO, stdout=subprocess.DEVNULL, timeout=60
        )


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
    #: The Prefect home of the running server (its record is there).
    server_home: Path | None = None
    server_url: str | None = None
    server_pid: int | None = None
    #: The warm sweep process kept beside it (``cli/warm/``).
    runner_pid: int | None = None
    stores: dict[tuple[str, int, str], Path] = field(default_factory=dict)
    #: Every variant runs the same enqueued points, unpruned (``--same-trials``).
    same_trials: bool = False


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
    if variant.trials is not None or sitting.same_trials:
        # A second sweep is timed to its first trial; unpruned, its short budget cannot end with
        # every trial pruned (which fails a sweep). The pruner is not in the study fingerprint.
        # The same trials are run whole: pruning would depend on the order they end in.
        config["pruner"] = "none"
    spec = {
        "kind": variant.kind,
        "prefect": variant.prefect,
        "config": config,
        "same_trials": sitting.same_trials,
    }
    spec_path = folder / "spec.json"
    spec_path.write_text(json.dumps(spec))

    env = _worker_env()
    env["SWEEPFLOW_MLRUNS"] = str(mlruns)
    env["PREFECT_HOME"] = str(sitting.prefect_home)
    if variant.prefect in ("server", "recorded"):
        if sitting.server_url is None or sitting.server_home is None:
            raise RuntimeError("the running-server variants need the server started")
        if variant.prefect == "server":
            env["PREFECT_API_URL"] = sitting.server_url
        else:  # the command finds the server `sweepflow server start` recorded there
            env["PREFECT_HOME"] = str(sitting.server_home)
            if not variant.warm:
                env["SWEEPFLOW_WARM_SWEEPS"] = "false"
    if variant.kind == "command":
        # The console script a user runs, as a user runs it; its config file holds the spec's
        # config (JSON is YAML).
        config_path = folder / "config.json"
        config_path.write_text(json.dumps(config))
        sweepflow = str(Path(sys.executable).parent / "sweepflow")
        command = [sweepflow, "sweep", "--config", str(config_path)]
    else:
        command = [sys.executable, "-m", "bench.worker", str(spec_path)]
    log = folder / "worker.log"
    roots: dict[str, int] = {}
    load_before = os.getloadavg()
    with open(log, "wb") as handle:
        spawned_at = time.time()
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT
        )
        roots["worker"] = process.pid
        if variant.prefect in ("server", "recorded") and sitting.server_pid is not None:
            roots["server"] = sitting.server_pid
        if variant.prefect == "recorded" and variant.warm and sitting.runner_pid is not None:
            roots["runner"] = sitting.runner_pid  # the sweep runs in a child of it
        try:
            with PeakMemory(roots) as memory:
                # wait4: the CPU seconds of the process and every descendant it waited for
                # (the temporary server), exact to its exit, whatever else loads the machine.
                _, status, usage = os.wait4(process.pid, 0)
                exited_at = time.time()
                returncode = process.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if process.poll() is None:  # the benchmark was interrupted: take the worker along
                process.terminate()
                process.wait(timeout=30)
    if returncode != 0:
        tail = log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{tag}: worker exited with {returncode}; log {log}:\n{tail}")
    if variant.kind == "command":
        from bench.worker import journal_trials

        # This command's trials (a second sweep's store holds the first one's too).
        ours = [t for t in journal_trials(mlruns) if t["start"] >= spawned_at]
        result = {"trials": ours, "ended": exited_at}
        if variant.prefect == "recorded" and sitting.server_url.removesuffix("/api") not in (
            log.read_text(errors="replace")
        ):
            raise RuntimeError(f"{tag}: the command did not use the running server; log {log}")
        if variant.prefect == "recorded" and sitting.server_home is not None:
            from cli.warm import LOG_NAME

            handed = f"sweep --config {config_path}" in (
                (sitting.server_home / LOG_NAME).read_text(errors="replace")
            )
            if handed != variant.warm:
                raise RuntimeError(
                    f"{tag}: the command {'did not run' if variant.warm else 'ran'} in the "
                    f"warm process; see {sitting.server_home / LOG_NAME}"
                )
    else:
        result = json.loads(spec_path.with_suffix(".result.json").read_text())
    trials = result["trials"]
    if not trials:
        raise RuntimeError(f"{tag}: no finished trial")
    first_start = min(t["start"] for t in trials)
    last_end = max(t["end"] for t in trials)
    states: dict[str, int] = {}
    for trial in trials:
        states[trial["state"]] = states.get(trial["state"], 0) + 1
    outside = variant.kind == "command"  # start-up and the work's start are not seen
    started = None if outside else result["work_started"]
    return Measurement(
        variant=variant.name,
        dataset=dataset.name,
        repeat=repeat,
        wall=result["ended"] - spawned_at,
        imports=None if outside else result["imported"] - spawned_at,
        server=None if outside else result["server_ready"] - result["imported"],
        ttft=None if started is None else first_start - started,
        steady=last_end - first_start,
        trials=len(trials),
        states=states,
        params=[t["params"] for t in trials],
        peak_rss_mb=memory.peaks["worker"] / 2**20,
        growth_mb=None
        if started is None
        else (memory.peaks["worker"] - memory.at(started)) / 2**20,
        own_growth_mb=None if started is None else memory.own_growth(started) / 2**20,
        steady_cpu=sum(
            memory.cpu_at(last_end, name) - memory.cpu_at(first_start, name) for name in roots
        ),
        server_rss_mb=memory.peaks["server"] / 2**20 if "server" in memory.peaks else None,
        whole=exited_at - spawned_at,
        whole_cpu=usage.ru_utime
        + usage.ru_stime
        + sum(
            memory.cpu_at(exited_at, name) - memory.cpu_at(spawned_at, name)
            for name in ("server", "runner")
            if name in roots
        ),
        extra={
            "best_value": result.get("best_value"),
            "tail": result["ended"] - last_end,
            "holdout_roc_auc": result.get("holdout_roc_auc"),
            "first_trial_from_spawn": first_start - spawned_at,
            # The machine is shared: its 1-minute load average before and after this run.
            "load_before": round(load_before[0], 2),
            "load_after": round(os.getloadavg()[0], 2),
        },
    )


def warm_up(sitting: Sitting, space: dict[str, Any]) -> None:
    """One tiny unmeasured sweep: migrates the temporary server's database, warms the disk cache."""
    warm = Dataset("warm-up", {"synthetic_rows": 300}, 1)
    run_variant(sitting, Variant("warm-up", "sweep", 1, "temporary"), warm, 0, space)
