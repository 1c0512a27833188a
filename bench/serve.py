"""``make bench-serve``: ``sweepflow serve`` vs ``mlflow models serve`` on the same model.

In a temporary SQLite store it registers two versions of a churn model (fitted on the real
classic file when it is there, else on synthetic rows), starts both servers on 127.0.0.1 on free
ports, both serving ``@champion``, and measures from this process, over loopback:

1. **Load**: requests/s and p50/p99 latency for 1-row and 1,000-row JSON requests (the same
   ``{"dataframe_records": [...]}`` body to both) at 1 and 8 concurrent clients, each cell for
   ``--seconds`` (bounded also by ``--max-requests``).
2. **Swaps**: while 4 clients send 1-row requests, ``champion`` is moved between v1 and v2 every
   ``--swap-every`` seconds, ``--swaps`` times, by ``tracking.registry.set_alias`` (the call
   promotion makes). Counted: failed requests (any non-200 or connection error), and per move
   the time until the first answer that names the new version. ``mlflow models serve`` does not
   follow an alias (it loads once at start), so it has no time to report.

Clients and servers share the machine (2 cores here): absolute figures are for comparison
within one run. Prints a table; nothing is written.

    python -m bench.serve                    # ~2 min
    python -m bench.serve --seconds 1 --swaps 2 --trees 10    # smoke size
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sweepflow.processes import REPO, free_port, start, stop, wait_for_http

BIN = Path(sys.executable).parent
CLASSIC = REPO.parent / "shared" / "data" / "churn_modelling.csv"
MODEL = "bench-serve-churn"


@contextlib.contextmanager
def server(command: list[str], env: dict[str, str], ready_url: str, log: Path) -> Iterator[None]:
    """Run ``command`` in its own process group until the block ends; wait for ``ready_url``."""
    process = start(command, env=env, log=log)
    try:
        wait_for_http(ready_url, timeout=180, process=process)
        yield
    finally:
        stop(process)


def register_two_versions(trees: int) -> None:
    """v1 (champion) and v2 of MODEL in the store the environment names."""
    import pandas as pd

    from churnml.data import validate_frame
    from churnml.model import build_pipeline, fit_quietly
    from churnml.schema import DEFAULT_TARGET
    from churnml.synthetic import generate_bank_churn
    from tracking import registry, runs
    from tracking.store import connect, ensure_experiment, resolve_target

    raw = pd.read_csv(CLASSIC) if CLASSIC.is_file() else generate_bank_churn(10_000, seed=0)
    clean = validate_frame(raw, source="bench", cv_folds=2)
    features, label = clean.drop(columns=DEFAULT_TARGET), clean[DEFAULT_TARGET]
    client = connect()
    experiment = ensure_experiment(client, "bench-serve", resolve_target())
    for seed in (1, 2):
        params = {"k": 8, "n_estimators": trees, "max_depth": 10}
        model = fit_quietly(build_pipeline(params, seed=seed), features, label)
        model.set_params(forest__n_jobs=1)
        run_id = runs.start_sweep_run(client, experiment, run_name="bench", params={}, tags={})
        registry.register_best_model(
            client, run_id=run_id, model=model, model_name=MODEL,
            input_example=raw.head(5), tags={},
        )  # fmt: skip
    registry.set_alias(client, MODEL, "champion", "1")


def body(rows: int) -> bytes:
    import pandas as pd

    from churnml.synthetic import generate_bank_churn

    frame = pd.read_csv(CLASSIC, nrows=rows) if CLASSIC.is_file() else generate_bank_churn(rows)
    return json.dumps({"dataframe_records": json.loads(frame.to_json(orient="records"))}).encode()


@dataclass
class Cell:
    latencies: list[float] = field(default_factory=list)
    failed: int = 0
    seconds: float = 0.0

    def row(self) -> tuple[str, str, str, str]:
        if not self.latencies:
            return "-", "-", "-", str(self.failed)
        ordered = sorted(self.latencies)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        return (
            f"{len(ordered) / self.seconds:,.1f}",
            f"{statistics.median(ordered) * 1000:,.1f}",
            f"{p99 * 1000:,.1f}",
            str(self.failed),
        )


def load(url: str, payload: bytes, clients: int, seconds: float, max_requests: int) -> Cell:
    """``clients`` threads posting ``payload`` back to back for ``seconds`` (bounded)."""
    import httpx

    cell = Cell()
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    budget = [max_requests]

    def client_loop() -> None:
        with httpx.Client(timeout=60, headers={"content-type": "application/json"}) as http:
            while time.monotonic() < stop_at:
                with lock:
                    if budget[0] <= 0:
                        return
                    budget[0] -= 1
                started = time.perf_counter()
                try:
                    ok = http.post(url, content=payload).status_code == 200
                except httpx.HTTPError:
                    ok = False
                elapsed = time.perf_counter() - started
                with lock:
                    if ok:
                        cell.latencies.append(elapsed)
                    else:
                        cell.failed += 1

    started = time.monotonic()
    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cell.seconds = time.monotonic() - started
    return cell


@dataclass
class SwapResult:
    requests: int = 0
    failed: int = 0
    to_new: list[float] = field(default_factory=list)
    missed: int = 0


def swaps(url: str, payload: bytes, *, every: float, count: int, follows: bool) -> SwapResult:
    """Move champion ``count`` times while 4 clients post; see the module docstring."""
    import httpx

    from tracking import registry
    from tracking.store import connect

    client = connect()
    result = SwapResult()
    seen: list[tuple[float, str | None]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client_loop() -> None:
        with httpx.Client(timeout=60, headers={"content-type": "application/json"}) as http:
            while not stop.is_set():
                try:
                    answer = http.post(url, content=payload)
                    ok = answer.status_code == 200
                    version = answer.json().get("model_version") if ok else None
                except (httpx.HTTPError, ValueError):
                    ok, version = False, None
                with lock:
                    result.requests += 1
                    result.failed += 0 if ok else 1
                    seen.append((time.monotonic(), version))

    threads = [threading.Thread(target=client_loop) for _ in range(4)]
    for thread in threads:
        thread.start()
    current = "1"
    try:
        for _ in range(count):
            time.sleep(every)
            current = "2" if current == "1" else "1"
            moved = time.monotonic()
            registry.set_alias(client, MODEL, "champion", current)
            if not follows:
                continue
            deadline = moved + max(every, 10.0)
            while time.monotonic() < deadline:
                with lock:
                    first = next((t for t, v in seen if t > moved and v == current), None)
                if first is not None:
                    result.to_new.append(first - moved)
                    break
                time.sleep(0.01)
            else:
                result.missed += 1
        time.sleep(min(every, 2.0))
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        registry.set_alias(client, MODEL, "champion", "1")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="per load cell")
    parser.add_argument("--max-requests", type=int, default=20_000, help="per load cell")
    parser.add_argument("--swap-every", type=float, default=3.0)
    parser.add_argument("--swaps", type=int, default=6)
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="of sweepflow serve")
    parser.add_argument("--trees", type=int, default=100, help="of each forest")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as folder:
        home = Path(folder)
        os.environ["SWEEPFLOW_MLRUNS"] = str(home / "mlruns")
        for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
            os.environ.pop(name, None)
        from tracking.store import resolve_target

        register_two_versions(args.trees)
        target = resolve_target()
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "MLFLOW_TRACKING_URI": target.tracking_uri,
            "MLFLOW_REGISTRY_URI": target.registry_uri,
        }
        ours, theirs = free_port(), free_port()
        payloads = {1: body(1), 1000: body(1000)}
        rows: list[tuple[str, ...]] = []
        swap_rows: list[tuple[str, ...]] = []
        ours_cmd = [sys.executable, "-m", "serving", "--model-name", MODEL,
                    "--port", str(ours), "--poll-seconds", str(args.poll_seconds)]  # fmt: skip
        theirs_cmd = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion",
                      "--env-manager", "local", "-h", "127.0.0.1", "-p", str(theirs),
                      "-w", "1"]  # fmt: skip
        servers = (
            ("sweepflow serve", ours_cmd, f"http://127.0.0.1:{ours}", "/health", "/predict"),
            ("mlflow models serve", theirs_cmd, f"http://127.0.0.1:{theirs}", "/ping",
             "/invocations"),
        )  # fmt: skip
        for label, command, base, ready, path in servers:
            log = home / f"{label.split()[0]}.log"
            with server(command, env, base + ready, log):
                print(f"{label}: up", file=sys.stderr)
                for size in (1, 1000):
                    for clients in (1, 8):
                        load(base + path, payloads[size], clients, 0.5, 50)  # warm up
                        cell = load(
                            base + path, payloads[size], clients, args.seconds, args.max_requests
                        )
                        rows.append((label, f"{size:,}", str(clients), *cell.row()))
                follows = label == "sweepflow serve"
                swap = swaps(
                    base + path, payloads[1], every=args.swap_every, count=args.swaps,
                    follows=follows,
                )  # fmt: skip
                if follows and swap.to_new:
                    times = sorted(swap.to_new)
                    to_new = f"{statistics.median(times):.2f} / {times[-1]:.2f}"
                else:
                    to_new = "does not follow (restart)" if not follows else "-"
                swap_rows.append(
                    (label, str(args.swaps), str(swap.requests), str(swap.failed), to_new,
                     str(swap.missed) if follows else "-")
                )  # fmt: skip
        print_table(
            ["server", "rows/request", "clients", "requests/s", "p50 ms", "p99 ms", "failed"], rows
        )
        print()
        print_table(
            ["server", "alias moves", "requests", "failed", "move -> new version s (median / max)",
             "moves never seen"],
            swap_rows,
        )  # fmt: skip
        print(
            f"\n{args.trees} trees per forest; poll every {args.poll_seconds} s; "
            f"{args.seconds} s a cell; {os.cpu_count()} CPUs shared by clients and servers."
        )
    return 0


def print_table(header: list[str], rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) + " |")


if __name__ == "__main__":
    sys.exit(main())
