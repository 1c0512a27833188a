"""One measurement of the benchmark, in a fresh process: the bare Optuna loop or a sweepflow sweep.

``bench/run.py`` starts ``python -m bench.worker SPEC.json`` once per measurement, so each one pays
its own imports and server start, owns its own stores, and its process tree's memory is its own.
The worker writes a JSON result next to the spec (timestamps from ``time.time()``, comparable
with the parent's ``spawned_at`` and with Optuna's trial datetimes).

Both kinds run the same search: the same config (sampler seed, trial count, search space, folds,
pruner), the same data path (``churnml.prepare``), the same ``suggest_params``/``score_trial``. The
bare loop then refits the best point and scores the holdout, as a plain user would; the sweep does
that and everything sweepflow adds (Prefect task runs, MLflow runs, registry, skops, plots).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

#: Result of a trial as the benchmark needs it: (number, state, start, end, params).
TrialRow = dict[str, Any]


def _trial_rows(trials: list[Any]) -> list[TrialRow]:
    """Timestamps and params of finished trials, in trial-number order."""
    rows = []
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.datetime_start is None or trial.datetime_complete is None:
            continue
        rows.append(
            {
                "number": trial.number,
                "state": trial.state.name,
                "start": trial.datetime_start.timestamp(),
                "end": trial.datetime_complete.timestamp(),
                "params": trial.user_attrs.get("params", trial.params),
            }
        )
    return rows


def same_points(config: Any, n_features: int, n_rows: int) -> list[dict[str, Any]]:
    """``config.n_trials`` points of the search space drawn at random (seeded by the config):
    with ``--same-trials`` every variant enqueues them, so p1 and p2 run the same trials."""
    import optuna

    from churnml.search import suggest_params

    draw = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=config.seed))
    points = []
    for _ in range(config.n_trials):
        trial = draw.ask()
        suggest_params(trial, config.search_space, n_features, n_rows=n_rows)
        points.append(dict(trial.params))
        draw.tell(trial, 0.0)
    return points


def run_bare(spec: dict[str, Any]) -> dict[str, Any]:
    """A plain Optuna loop over the churnml pipeline: no Prefect, no MLflow, in-memory study."""
    import optuna

    from churnml import prepare
    from churnml.config import SweepConfig
    from churnml.digests import frame_digest
    from churnml.evaluate import holdout_metrics
    from churnml.model import build_pipeline, fit_quietly
    from churnml.search import make_pruner, make_sampler, score_trial, suggest_params

    imported = time.time()
    config = SweepConfig.model_validate(spec["config"])
    work_started = time.time()
    clean = prepare.validate(prepare.load_raw(config.data), config)
    data = prepare.split(clean, config, digest=frame_digest(clean))
    del clean
    features, target = data.x_train, data.y_train
    n_features, n_rows = len(data.encoded_features), len(data.x_train)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize",
        sampler=make_sampler(config.seed),
        pruner=make_pruner(config.pruner, config.cv_folds),
    )
    if spec.get("same_trials"):
        for point in same_points(config, n_features, n_rows):
            study.enqueue_trial(point)

    def objective(trial: optuna.Trial) -> float:
        # The bounds the sweep draws from (they follow the training rows: flows/sweep/trials.py).
        params = suggest_params(trial, config.search_space, n_features, n_rows=n_rows)
        trial.set_user_attr("params", params)
        return score_trial(
            trial, params, features, target, folds=config.cv_folds, seed=config.seed
        ).mean_auc

    # optimize(n_jobs=p) keeps p trials running on threads, like the sweep's ask/tell loop.
    study.optimize(objective, n_trials=config.n_trials, n_jobs=config.parallel)
    best = study.best_trial
    model = fit_quietly(
        build_pipeline(best.user_attrs["params"], seed=config.seed, n_jobs=-1),
        data.x_train,
        data.y_train,
    )
    holdout = holdout_metrics(model, data.x_test, data.y_test)
    return {
        "imported": imported,
        "server_ready": imported,
        "work_started": work_started,
        "ended": time.time(),
        "trials": _trial_rows(study.trials),
        "best_value": best.value,
        "holdout_roc_auc": holdout["roc_auc"],
    }


def run_sweep(spec: dict[str, Any]) -> dict[str, Any]:
    """What ``sweepflow sweep`` does: check the data, then run the flow in this process."""
    from sweepflow.memory import configure_allocator, limit_malloc_arenas

    # As the command line does: one arena until the config is known, before any import starts a
    # thread, then one per trial thread; large blocks given back when freed.
    configure_allocator(1)
    import optuna

    from churnml.config import SweepConfig
    from cli.common import ServerStart, quiet_console_logs
    from cli.sweep import check_data, import_end_of_run, make_stores, ready_for_the_end
    from flows.sweep.flow import sweep
    from studies.storage import make_storage
    from tracking.store import mlruns_dir

    limit_malloc_arenas(SweepConfig.model_validate(spec["config"]).parallel)
    # The memory baseline is taken after every import of the run, as the bare loop's is: what
    # the end of the run imports (the command imports it while its server boots) is no growth.
    import_end_of_run()
    imported = time.time()
    # The command starts the temporary server (on a thread: the flow finds this instance, one
    # per process, and uses it), makes the stores while it boots, and readies the end of the
    # run before the trials. Like the imports, none of it depends on the data, so the memory
    # baseline (``work_started``) is taken after it.
    server = ServerStart()  # nothing to start when PREFECT_API_URL names a running server
    make_stores()
    ready_for_the_end()
    server.wait()
    server_ready = time.time()
    config = SweepConfig.model_validate(spec["config"])
    work_started = time.time()
    # The command line checks the data before the flow starts, and holds the split meanwhile
    # (the flow's prepare-data then takes the same frames: churnml.cache).
    prepared = check_data(config)
    if spec.get("same_trials"):
        # The sweep resumes the study of its data and setup: enqueued there, these points are
        # its trials.
        import studies

        waiting = optuna.create_study(
            study_name=studies.study_name_for(config, prepared.digest),
            storage=make_storage(None, mlruns_dir() / "optuna.journal"),
            direction="maximize",
        )
        n_features, n_rows = len(prepared.encoded_features), len(prepared.x_train)
        for point in same_points(config, n_features, n_rows):
            waiting.enqueue_trial(point)
    quiet_console_logs()
    summary = sweep(config=config)
    del prepared
    ended = time.time()
    study = optuna.load_study(
        study_name=summary.study_name,
        storage=make_storage(None, mlruns_dir() / "optuna.journal"),
    )
    mine = [t for t in study.trials if t.user_attrs.get("sweep_run_id") == summary.parent_run_id]
    return {
        "imported": imported,
        "server_ready": server_ready,
        "work_started": work_started,
        "ended": ended,
        "trials": _trial_rows(mine),
        "best_value": summary.best_cv_auc,
        "holdout_roc_auc": summary.holdout["roc_auc"],
    }


def journal_trials(mlruns: Path) -> list[TrialRow]:
    """The finished trials of every study in a store's Optuna journal (a command's store holds
    one sweep)."""
    import optuna

    from studies.storage import make_storage

    storage = make_storage(None, mlruns / "optuna.journal")
    rows: list[TrialRow] = []
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        rows += _trial_rows(study.trials)
    return rows


def main(argv: list[str]) -> int:
    """Run the measurement described by the spec file ``argv[0]``; write ``<spec>.result.json``."""
    spec_path = Path(argv[0])
    spec = json.loads(spec_path.read_text())
    runner = run_bare if spec["kind"] == "bare" else run_sweep
    result = runner(spec)
    result_path = spec_path.with_suffix(".result.json")
    result_path.write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
