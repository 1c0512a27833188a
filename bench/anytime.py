"""``make bench-quality``: time to quality of our search against a bare Optuna loop, side by side.

On the same data, the same cores and one sitting, for each sampler seed:

- **bare**: a bare Optuna loop as a user writes it, frozen here as ``bench/worker.py`` ran it
  before the search changed (commit 0ebb5f4): multivariate TPE with constant liar and 5
  random startup trials, a median pruner over the folds (5 startup trials, asked after fold 1),
  the search space's bounds as given, ``study.optimize(n_trials, n_jobs=parallel)``.
- **ours**: the search the sweep runs, through the same functions (``make_sampler``,
  ``make_pruner``, ``suggest_params`` with the training rows, ``score_trial``), given the bare
  loop's search time of that seed as its wall-clock budget. It runs in this process without
  Prefect or MLflow: this compares searches, not orchestration (``make bench`` measures that).

Both use the same data, holdout, CV folds and forest seed (42); only the sampler seed changes
between repetitions. A variant's clock starts at its first ask and stops at its last trial's end
(bare) or at the budget (ours: a trial still running then is cut and does not count). The anytime
curve is the best CV ROC AUC so far against those seconds. Holdout ROC AUC is that of the best
trial's point refit on all training rows (as the sweep refits it), outside the clock: the bare
loop's final best, and ours' best at each time it improved, to find when it first reached the
bare loop's final holdout AUC.

    python -m bench.anytime                  # medians of 3 seeds on ../shared/data (~1 h)
    python -m bench.anytime --quick          # smoke size: built-in data, a few trials

Results go to ``bench/results/anytime-<stamp>/`` (``results.json``, ``table.md``,
``anytime.png``), rewritten after every variant; ``--publish`` also copies the plot to
``docs/img/anytime.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import optuna

from bench.anytime_report import incumbents, machine, save
from churnml import prepare
from churnml.config import SearchSpace, SweepConfig
from churnml.digests import frame_digest
from churnml.evaluate import cross_validate_auc, holdout_metrics
from churnml.model import build_pipeline, fit_quietly
from churnml.prepare import PreparedData
from churnml.search import make_pruner, make_sampler, score_trial, suggest_params

REPO = Path(__file__).resolve().parents[1]
LARGE_DATA = REPO.parent / "shared" / "data" / "bank_churn_train.csv"
RESULTS = REPO / "bench" / "results"
PUBLISHED_PLOT = REPO / "docs" / "img" / "anytime.png"
#: Data split, CV folds and forest seed: the same for every variant and repetition.
DATA_SEED = 42


def load_data(path: Path | None, rows: int | None) -> tuple[SweepConfig, PreparedData]:
    """The prepared split, as the sweep makes it (``churnml.prepare``)."""
    data: dict[str, Any] = {"path": str(path)} if path else {"synthetic_rows": rows or 2000}
    config = SweepConfig.model_validate({"data": data, "seed": DATA_SEED})
    clean = prepare.validate(prepare.load_raw(config.data), config)
    prepared = prepare.split(clean, config, digest=frame_digest(clean))
    return config, prepared


# --------------------------------------------------------------------------- the two searches


class _Cut(optuna.TrialPruned):
    """The trial was still running when the budget ran out."""


class _WithDeadline:
    """A trial that the pruner stops once the wall-clock budget has run out."""

    def __init__(self, trial: optuna.Trial, deadline: float) -> None:
        self._trial = trial
        self._deadline = deadline

    def report(self, value: float, step: int) -> None:
        self._trial.report(value, step)

    def should_prune(self) -> bool:
        if time.time() >= self._deadline:
            self._trial.set_user_attr("cut", True)
            raise _Cut("the budget ran out")
        return self._trial.should_prune()


def _bare_objective(data: PreparedData, space: SearchSpace, folds: int) -> Any:
    """The bare loop's objective (frozen): bounds as given, a median pruner asked per fold."""
    n_features = len(data.encoded_features)

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, space, n_features)  # no n_rows: the bounds as given
        trial.set_user_attr("params", params)

        def report(fold: int, score: float) -> None:
            trial.report(score, step=fold)
            if fold + 1 < folds and trial.should_prune():
                raise optuna.TrialPruned()

        return cross_validate_auc(
            params, data.x_train, data.y_train, folds=folds, seed=DATA_SEED, on_fold=report
        ).mean_auc

    return objective


def run_bare(
    data: PreparedData, space: SearchSpace, *, seed: int, trials: int, parallel: int, folds: int
) -> dict[str, Any]:
    """The bare Optuna loop, as frozen in the module docstring."""
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(
            seed=seed, multivariate=True, constant_liar=True, n_startup_trials=5
        ),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=5, n_warmup_steps=1, interval_steps=1, n_min_trials=3
        ),
    )
    return _timed(
        lambda: study.optimize(
            _bare_objective(data, space, folds), n_trials=trials, n_jobs=parallel
        ),
        study,
    )


def run_ours(
    data: PreparedData,
    space: SearchSpace,
    *,
    seed: int,
    budget: float,
    parallel: int,
    folds: int,
) -> dict[str, Any]:
    """Our search (the sweep's functions) for ``budget`` wall seconds."""
    study = optuna.create_study(
        direction="maximize", sampler=make_sampler(seed), pruner=make_pruner("median", folds)
    )
    n_features, n_rows = len(data.encoded_features), len(data.x_train)
    deadline = time.time() + budget

    def objective(trial: optuna.Trial) -> float:
        params = suggest_params(trial, space, n_features, n_rows=n_rows)
        trial.set_user_attr("params", params)
        return score_trial(
            _WithDeadline(trial, deadline),  # type: ignore[arg-type]
            params,
            data.x_train,
            data.y_train,
            folds=folds,
            seed=DATA_SEED,
        ).mean_auc

    result = _timed(
        lambda: study.optimize(objective, timeout=budget, n_jobs=parallel), study, deadline
    )
    result["budget"] = budget
    return result


def _timed(search: Any, study: optuna.Study, deadline: float | None = None) -> dict[str, Any]:
    """Run ``search``; the trials' times relative to its start, the CPU and load around it."""
    load_before = os.getloadavg()
    cpu, started = time.process_time(), time.time()
    search()
    cpu, ended = time.process_time() - cpu, time.time()
    rows = []
    for trial in study.trials:
        if trial.datetime_complete is None:
            continue
        end = trial.datetime_complete.timestamp()
        if trial.user_attrs.get("cut") or (deadline is not None and end > deadline):
            state = "CUT"
        else:
            state = trial.state.name
        rows.append(
            {
                "number": trial.number,
                "state": state,
                "end": end - started,
                "value": trial.value if state == "COMPLETE" else None,
                "params": trial.user_attrs.get("params"),
            }
        )
    complete = [row for row in rows if row["state"] == "COMPLETE"]
    wall = (deadline if deadline is not None else max(r["end"] for r in rows) + started) - started
    return {
        "trials": rows,
        "states": {s: sum(r["state"] == s for r in rows) for s in {r["state"] for r in rows}},
        "wall": wall,
        "overrun": max(0.0, ended - started - wall),
        "cpu": cpu,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "best_value": max((r["value"] for r in complete), default=None),
    }


# --------------------------------------------------------------------------- holdout and curve


class Holdout:
    """Holdout ROC AUC of a point refit on all training rows, as the sweep refits it; cached."""

    def __init__(self, data: PreparedData) -> None:
        self.data = data
        self.cache: dict[str, float] = {}

    def __call__(self, params: dict[str, Any]) -> float:
        key = json.dumps(params, sort_keys=True, default=str)
        if key not in self.cache:
            model = fit_quietly(
                build_pipeline(params, seed=DATA_SEED, n_jobs=-1),
                self.data.x_train,
                self.data.y_train,
            )
            model.set_params(forest__n_jobs=1)
            self.cache[key] = holdout_metrics(model, self.data.x_test, self.data.y_test)["roc_auc"]
        return self.cache[key]


def judge(bare: dict[str, Any], ours: dict[str, Any], holdout: Holdout) -> dict[str, Any]:
    """Final holdout AUC of both, and when ours first reached bare's final CV and holdout AUC."""
    bare_best = incumbents(bare)[-1]
    bare_holdout = holdout(bare_best["params"])
    reached_holdout = reached_cv = None
    ours_steps = incumbents(ours)
    for row in ours_steps:
        row["holdout"] = holdout(row["params"])
        if reached_cv is None and row["value"] >= bare_best["value"]:
            reached_cv = row["end"]
        if reached_holdout is None and row["holdout"] >= bare_holdout:
            reached_holdout = row["end"]
    return {
        "bare_cv": bare_best["value"],
        "bare_holdout": bare_holdout,
        "bare_params": bare_best["params"],
        "ours_cv": ours_steps[-1]["value"] if ours_steps else None,
        "ours_holdout": ours_steps[-1]["holdout"] if ours_steps else None,
        "ours_params": ours_steps[-1]["params"] if ours_steps else None,
        "ours_incumbents": [
            {k: r[k] for k in ("number", "end", "value", "holdout")} for r in ours_steps
        ],
        "reached_holdout_s": reached_holdout,
        "reached_cv_s": reached_cv,
    }


# --------------------------------------------------------------------------- report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=LARGE_DATA, help="the data file")
    parser.add_argument("--seeds", type=int, default=3, help="sampler seeds (medians reported)")
    parser.add_argument("--trials", type=int, default=40, help="trials of the bare loop")
    parser.add_argument("--parallel", type=int, default=2, help="trials at once (both)")
    parser.add_argument("--folds", type=int, default=3, help="CV folds (both)")
    parser.add_argument("--out", type=Path, help="results folder (default bench/results/...)")
    parser.add_argument("--publish", action="store_true", help=f"copy the plot to {PUBLISHED_PLOT}")
    parser.add_argument(
        "--quick", action="store_true", help="smoke size: built-in 600 rows, 4 trials, 1 seed"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.quick:
        args.seeds, args.trials = 1, 4
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    out = args.out or RESULTS / f"anytime-{time.strftime('%Y%m%d-%H%M%S')}"
    config, data = load_data(None if args.quick else args.data, 600 if args.quick else None)
    space = config.search_space  # the default space, for both
    report: dict[str, Any] = {
        "command": "python -m bench.anytime "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "data": data.source,
        "train_rows": len(data.x_train),
        "holdout_rows": len(data.x_test),
        "trials": args.trials,
        "parallel": args.parallel,
        "machine": machine(),
        "runs": [],
    }
    holdout = Holdout(data)
    print(f"anytime: {data.source}, {len(data.x_train)} training rows -> {out}", flush=True)
    for index in range(args.seeds):
        seed = DATA_SEED + index
        run: dict[str, Any] = {"seed": seed}
        report["runs"].append(run)
        common = {"parallel": args.parallel, "folds": args.folds, "seed": seed}
        # The bare loop's time is ours' budget, so it runs first; the next seed's pair follows.
        run["bare"] = run_bare(data, space, trials=args.trials, **common)
        print(f"seed {seed} bare: {run['bare']['wall']:.0f} s, {run['bare']['states']}", flush=True)
        save(out, report)
        run["ours"] = run_ours(data, space, budget=run["bare"]["wall"], **common)
        print(f"seed {seed} ours: {run['ours']['states']}", flush=True)
        run["verdict"] = judge(run["bare"], run["ours"], holdout)
        print(json.dumps({k: v for k, v in run["verdict"].items() if "params" not in k}))
        save(out, report)
    print((out / "table.md").read_text(), flush=True)
    if args.publish:
        PUBLISHED_PLOT.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(out / "anytime.png", PUBLISHED_PLOT)
    return 0


if __name__ == "__main__":
    sys.exit(main())
