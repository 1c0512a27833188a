"""``make bench``: what orchestration and tracking cost over a bare Optuna loop, side by side.

Runs, in one process tree and one sitting, the same search (sampler seed, trial count, search
space, folds, pruner, data) several ways, each in a fresh process (``bench/worker.py``) with its
own temporary MLflow store and Optuna journal:

- ``bare-p1``, ``bare-p2``: a plain Optuna loop over the churnml pipeline, 1 and 2 threads;
- ``sweep-p1``, ``sweep-p2``: the sweep flow with full tracking (what ``sweepflow sweep`` does:
  data check, then the flow, which starts a temporary Prefect server);
- ``sweep-p2-server``: the same flow against an already-running ``prefect server start``;
- ``command-p1``, ``command-p1-server``, ``command-p1-server-cold``: the ``sweepflow sweep``
  console script, spawn to exit: with a temporary server; with the server of ``sweepflow server
  start`` and its warm process (``cli/warm/``); with that server, in its own process;
- ``second-nocache``, ``second-cached``: a second, short sweep on ``sweep-p2``'s store, without
  and with the data cache, for the time to first trial;
- ``second-warm``: a second, short sweep on ``command-p1``'s store, in the warm process: its
  first trial from spawn, against the fresh command's.

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
import signal
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from bench.measure import REPO, Sitting, run_variant, running_server, warm_up
from bench.plan import BENCH_SPACE, VARIANTS, Dataset, Measurement
from bench.report import machine_facts, resummarise, save

LARGE_DATA = REPO.parent / "shared" / "data" / "bank_churn_train.csv"
RESULTS = REPO / "bench" / "results"


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
    parser.add_argument(
        "--same-trials",
        action="store_true",
        help="every variant runs the same points (drawn at random, enqueued), unpruned: the "
        "p2/p1 speed-up on the same trials",
    )
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


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:5.2f}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print and save the table. Returns the summary (for the smoke test)."""
    args = parse_args(argv)
    if args.summarise:
        print(resummarise(args.summarise))
        return {}
    wanted = set(args.variants.split(",")) if args.variants else {v.name for v in VARIANTS}
    if args.no_server:
        wanted -= {v.name for v in VARIANTS if v.prefect in ("server", "recorded")}
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
        sitting = Sitting(
            root=Path(tmp), prefect_home=Path(tmp) / "prefect-home", same_trials=args.same_trials
        )
        with ExitStack() as stack:
            if any(v.prefect in ("server", "recorded") for v in variants):
                home = Path(tmp) / "server-home"
                url, pid, took, runner = stack.enter_context(running_server(home))
                sitting.server_url, sitting.server_pid, sitting.server_home = url, pid, home
                sitting.runner_pid = runner
                facts["running_server_start_s"] = round(took, 2)
                print(f"running Prefect server at {url} (answered after {took:.1f} s)")
            if not args.no_warm_up:
                warm_up(sitting, space)
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
                            f"  r{repeat} {dataset.name:>5} {variant.name:<17} "
                            f"whole {m.whole:6.1f}s (cpu {_s(m.whole_cpu)})"
                            f"  imports {_s(m.imports)}"
                            f"  server {_s(m.server)}  first trial {_s(m.ttft)}"
                            f"  steady {m.steady:6.1f}s  cpu {m.steady_cpu:6.1f}s"
                            f"  peak {m.peak_rss_mb:5.0f} MiB  growth {_s(m.growth_mb)}"
                            f" (own {_s(m.own_growth_mb)})"
                            f"  load {m.extra['load_before']}-{m.extra['load_after']}"
                            f"  {m.states}",
                            flush=True,
                        )
    facts["loadavg_after"] = machine_facts().get("loadavg")
    summary, table = save(out, command.strip(), facts, space, measurements, datasets)
    print()
    print(table)
    return summary


if __name__ == "__main__":
    # A plain `kill` unwinds like Ctrl-C: the worker and the running server are stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    main()
