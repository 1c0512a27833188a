"""Plain functions behind the sweep's tasks: glue between the ML core, the study and
``tracking/``. Nothing here imports Prefect, so each step is tested by calling it directly."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna

import studies
from churnml.config import SweepConfig
from churnml.evaluate import holdout_metrics
from churnml.model import build_pipeline, fit_quietly
from churnml.prepare import PreparedData
from churnml.promotion import holdout_spec
from churnml.search import params_on_bounds
from flows import runtime
from flows.sweep.trial_steps import TrialContext, TrialResult
from tracking import registry, runs, tags
from tracking.model_files import save_model_file
from tracking.store import client_for, connect, ensure_experiment, mlruns_dir, resolve_target


class SweepFailedError(RuntimeError):
    """No trial of the sweep completed, so there is no model to register."""


#: What only the end of a sweep needs: skops for the model file (it imports every scikit-learn
#: estimator, 0.7 s), matplotlib and Optuna's plots (plotly, 0.2 s), MLflow's pyfunc for
#: logging the model. Left out of the flow's imports, so a sweep with a running server starts
#: sooner; the command line imports them while a temporary server boots.
END_OF_RUN_MODULES = (
    "skops.io",
    "matplotlib.figure",
    "matplotlib.backends.backend_agg",
    "optuna.visualization",
    "optuna.visualization.matplotlib",
    "mlflow.pyfunc",
)


def start_sweep_run(
    config: SweepConfig,
    data: PreparedData,
    data_key: str,
    study_name: str,
    *,
    flow_run_id: str | None,
    flow_run_url: str | None,
) -> tuple[TrialContext, str | None]:
    """Create the store and experiment before trials fan out, then the sweep's parent run with
    its params and dataset input. Returns the trials' shared context and the study of the
    experiment's previous sweep."""
    target = resolve_target()
    client = connect(target)
    experiment_id = ensure_experiment(client, config.experiment_name, target)
    previous_study = runs.latest_sweep_study(client, experiment_id)
    parent_run_id = runs.start_sweep_run(
        client,
        experiment_id,
        run_name=f"sweep-{study_name}",
        params={
            "n_trials": config.n_trials,
            "parallel": config.parallel,
            "cv_folds": config.cv_folds,
            "test_size": config.test_size,
            "seed": config.seed,
            "pruner": config.pruner,
            "target": config.data.target,
            "data_source": data.source,
            "data_rows": data.rows,
            "encoded_features": len(data.encoded_features),
            "search_space": config.search_space.model_dump_json(),
            "holdout_spec": holdout_spec(config),
        },
        tags={
            tags.TAG_STUDY: study_name,
            tags.TAG_FLOW_RUN: flow_run_id,
            # A link is a working URL or absent (the temporary server has no UI address).
            tags.TAG_FLOW_RUN_URL: flow_run_url
            if flow_run_url and flow_run_url.startswith(("http://", "https://"))
            else None,
        },
    )
    generator = None
    if data.path is None:
        generator = {
            "generator": "churnml.synthetic.generate_bank_churn",
            "rows": config.data.synthetic_rows,
            "seed": config.data.synthetic_seed,
        }
    runs.log_training_data(
        client,
        parent_run_id,
        (data.train, data.test),
        source=data.path,
        name=Path(data.path).name if data.path else "built-in-bank-churn",
        digest=data.digest,
        target=data.target,
        generator=generator,
    )
    context = TrialContext(
        data_key=data_key,
        target=target,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        study_name=study_name,
        cv_folds=config.cv_folds,
        seed=config.seed,
        flow_run_id=flow_run_id,
        data_ref=runtime.data_ref(config, data.digest),
        trial_cores=trial_cores(config),
    )
    return context, previous_study


def trial_cores(config: SweepConfig) -> int:
    """Cores the sweep's trials share in this process: ``parallel``, at most the machine's, on
    threads; one on Dask (a worker runs one trial at a time, on a core of its own)."""
    if config.task_runner != "threads":
        return 1
    return max(1, min(config.parallel, os.cpu_count() or 1))


def open_study(
    config: SweepConfig, context: TrialContext, digest: str, previous_study: str | None
) -> tuple[optuna.Study, studies.StudyPlan]:
    """Resume the study of this data and setup, or start one seeded with the champion; close
    in MLflow what crashed sweeps left open."""
    client = connect(context.target)
    champion = registry.champion_params(client, config.model_name)
    data = runtime.prepared(context.data_key, None)
    study, plan = studies.open_sweep_study(
        config,
        digest,
        n_rows=len(data.x_train),
        sweep_id=context.parent_run_id,
        previous_study=previous_study,
        champion=champion,
    )
    if plan.recovery is not None:
        close_recovered(context, plan.recovery, study)
    client.set_tag(context.parent_run_id, tags.TAG_STUDY_NOTE, plan.note)
    return study, plan


def close_recovered(context: TrialContext, recovery: studies.Recovery, study: optuna.Study) -> None:
    """Close what crashed sweeps left open in MLflow as KILLED, not left RUNNING.

    A trial lost before its child run was made (the process died between ask and the run) gets
    one now, KILLED, so that every trial of the study still has exactly one child run.
    """
    client = client_for(context.target)
    for sweep_run_id in recovery.dead_sweeps:
        runs.mark_killed(client, sweep_run_id, f"crashed; recovered by {context.parent_run_id}")
    reason = "its process died; the trial is retried once"
    for number in recovery.lost_trials:
        run_id = runs.find_trial_run(
            client, context.experiment_id, study_name=context.study_name, number=number
        )
        if run_id is not None:
            # Even a run that logged a score: Optuna never heard it, and the retry has its own.
            runs.mark_killed(client, run_id, reason, even_if_finished=True)
            continue
        lost = study.trials[number]
        run_id = runs.start_trial_run(
            client,
            context.experiment_id,
            parent_run_id=lost.user_attrs.get(studies.ATTR_SWEEP_RUN, context.parent_run_id),
            study_name=context.study_name,
            number=number,
            params=lost.user_attrs.get(studies.ATTR_PARAMS, lost.params),
            tags={tags.TAG_FLOW_RUN: lost.user_attrs.get(studies.ATTR_FLOW_RUN)},
        )
        runs.mark_killed(client, run_id, f"{reason} (lost before its run was made)")


def note_recovered(context: TrialContext, descriptions: list[str]) -> None:
    """Record on the sweep run what it recovered from crashed sweeps (the latest part)."""
    client_for(context.target).set_tag(
        context.parent_run_id, tags.TAG_RECOVERED, tags.tag_tail("; ".join(descriptions))
    )


def close_late_trial_run(context: TrialContext, number: int) -> str:
    """A trial whose heartbeat went stale while it ran was failed (and queued for a retry) by
    another sweep: its late result is not used, and its MLflow run is closed as KILLED."""
    client = client_for(context.target)
    run_id = runs.find_trial_run(
        client, context.experiment_id, study_name=context.study_name, number=number
    )
    reason = "its heartbeat went stale while it ran; failed as lost and retried once"
    if run_id is not None:
        runs.mark_killed(client, run_id, reason, even_if_finished=True)
    return reason


@dataclass(frozen=True)
class Best:
    """The study's best trial, as the sweep refits it."""

    number: int
    value: float
    params: dict[str, Any]


def pick_best(study: optuna.Study, results: list[TrialResult]) -> Best:
    """The best of the whole study: earlier sweeps' trials count too, so a resumed study whose
    new trials were all pruned still has a model.

    Raises:
        SweepFailedError: every trial of this sweep failed, or the study has no completed
            trial at all.
    """
    complete = [r for r in results if r.state == "COMPLETE"]
    failed = [r for r in results if r.state == "FAIL"]
    best = studies.best_trial(study)
    if best is None or (not complete and len(failed) == len(results)):
        first_error = failed[0].error if failed else "every trial was pruned"
        raise SweepFailedError(
            f"no trial completed ({len(failed)} failed, "
            f"{len(results) - len(failed)} pruned); first error: {first_error}"
        )
    return Best(number=best.number, value=float(best.value), params=studies.used_params(best))


def best_on_bounds(best: Best, config: SweepConfig, data: PreparedData) -> list[str]:
    """The best params that sit on a bound of the space that could be widened."""
    return params_on_bounds(
        best.params, config.search_space, len(data.encoded_features), n_rows=len(data.x_train)
    )


def refit_and_evaluate(
    params: dict[str, Any], data: PreparedData, seed: int
) -> tuple[Any, dict[str, float]]:
    """Fit the best point on the whole training part; score it on the untouched holdout."""
    model = fit_quietly(build_pipeline(params, seed=seed, n_jobs=-1), data.x_train, data.y_train)
    # Fit on every core, but predict on one: a parallel forest sums tree votes in a varying
    # order, and the saved model should give the same probabilities on every call.
    model.set_params(forest__n_jobs=1)
    return model, holdout_metrics(model, data.x_test, data.y_test)


def register(
    model: Any,
    context: TrialContext,
    config: SweepConfig,
    data: PreparedData,
    best: Best,
    holdout: dict[str, float],
) -> registry.RegisteredVersion:
    """Log the model on the sweep run and register it (idempotent per sweep run)."""
    return registry.register_best_model(
        connect(context.target),
        run_id=context.parent_run_id,
        model=model,
        model_name=config.model_name,
        input_example=data.x_test.head(5),
        tags={
            tags.TAG_SWEEP_RUN: context.parent_run_id,
            tags.TAG_VERSION_STUDY: context.study_name,
            tags.TAG_BEST_TRIAL: best.number,
            tags.TAG_CV_AUC: f"{best.value:.6f}",
            tags.TAG_PARAMS: json.dumps(best.params),
            tags.TAG_HOLDOUT_ROC_AUC: f"{holdout['roc_auc']:.6f}",
            tags.TAG_VERSION_DATA_DIGEST: data.digest,
            tags.TAG_VERSION_FLOW_RUN: context.flow_run_id,
        },
    )


def skops_path(config: SweepConfig, version: registry.RegisteredVersion, run_id: str) -> Path:
    """Where the standalone skops file goes: ``--skops-path``, or a name no other store on this
    checkout can take (version numbers repeat across stores; sweep run ids do not)."""
    if config.skops_path:
        return Path(config.skops_path).resolve()
    name = f"{config.model_name}-v{version.version}-{run_id}.skops"
    return (mlruns_dir() / "models" / name).resolve()


def save_skops(
    model: Any, version: registry.RegisteredVersion, context: TrialContext, path: Path
) -> str:
    """Write the standalone skops file and record its sha256 on the version and the run."""
    sha256 = save_model_file(model, path)
    client = connect(context.target)
    registry.tag_version(
        client,
        version.name,
        version.version,
        {tags.TAG_SKOPS_SHA256: sha256, tags.TAG_SKOPS_PATH: path},
    )
    client.set_tag(context.parent_run_id, tags.TAG_SKOPS_SHA256_RUN, sha256)
    client.set_tag(context.parent_run_id, tags.TAG_SKOPS_PATH_RUN, str(path))
    return sha256


def finish_sweep_run(context: TrialContext, summary: Any) -> None:
    """Close the sweep run FINISHED with its metrics and the best params."""
    runs.finish_sweep_run(
        client_for(context.target),
        context.parent_run_id,
        status="FINISHED",
        metrics={
            "best_cv_auc": summary.best_cv_auc,
            "trials_complete": summary.trials_complete,
            "trials_pruned": summary.trials_pruned,
            "trials_failed": summary.trials_failed,
            **{f"holdout_{k}": v for k, v in summary.holdout.items()},
        },
        params={f"best_{k}": v for k, v in summary.best_params.items()}
        | {"best_trial": summary.best_trial},
        tags={
            tags.TAG_MODEL_VERSION: summary.model_version,
            tags.TAG_STOP_REASON: tags.tag_value(summary.stop_reason),
        },
    )


@contextmanager
def failing_sweep_run(context: TrialContext) -> Iterator[None]:
    """Inside the block, an error closes the sweep run FAILED with the error as a tag."""
    try:
        yield
    except BaseException as error:
        runs.finish_sweep_run(
            client_for(context.target),
            context.parent_run_id,
            status="FAILED",
            metrics={},
            tags={tags.TAG_ERROR: tags.tag_value(f"{type(error).__name__}: {error}")},
        )
        raise
