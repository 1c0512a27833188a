"""The sweep's Prefect tasks: each body is one call into ``steps``, ``trial_steps``, ``churnml``
or ``studies`` (plain functions, tested without Prefect)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import optuna
from prefect import get_run_logger, task
from prefect.runtime import flow_run, task_run
from prefect.states import State

import studies
from churnml import cache as data_cache
from churnml import prepare
from churnml.config import SweepConfig
from churnml.plots.apart import StudyDrawer
from flows import preflight, runtime
from flows.events import THIN, champion_payload, emit_champion
from flows.sweep import plot_steps, report, steps, trial_steps
from flows.sweep.trial_steps import TrialContext, TrialResult
from sweepflow import settings
from tracking import model_card, registry
from tracking.plots import PlotReport
from tracking.store import client_for, mlruns_dir


def data_of(key: str) -> prepare.PreparedData:
    """The prepared data of this sweep, in the flow's process (trials use their reference)."""
    data = runtime.lookup(key)
    if data is None:  # pragma: no cover - the flow registered it before any task asks
        raise RuntimeError(f"prepared data {key} is not in this process")
    return data


@task(name="preflight", **THIN)
def check_backends(config: SweepConfig) -> preflight.Backends:
    """Refuse unsafe backends for this sweep before anything runs; log the ones in use."""
    from prefect.settings import PREFECT_API_URL

    backends = preflight.check_environment(config, prefect_api=PREFECT_API_URL.value())
    get_run_logger().info("backends: %s", "; ".join(backends.lines()))
    return backends


@task(name="prepare-data", **THIN)
def prepare_data(config: SweepConfig) -> str:
    """Load, validate and split the data (or take the split from the data cache, and cache a
    new one); trials get only the returned key, never the frame."""
    prepared, _ = data_cache.prepare_data(
        config,
        data_cache.cache_folder(mlruns_dir()),
        max_bytes=settings.current().sweepflow_max_data_bytes,
    )
    return runtime.remember(f"{prepared.digest}-{uuid.uuid4().hex[:8]}", prepared)


@task(name="start-tracking", **THIN)
def start_tracking(config: SweepConfig, data_key: str) -> tuple[TrialContext, str | None]:
    """Create the store, experiment and the sweep's parent run before trials fan out."""
    data = data_of(data_key)
    return steps.start_sweep_run(
        config,
        data,
        data_key,
        studies.study_name_for(config, data.digest),
        flow_run_id=flow_run.get_id(),
        flow_run_url=flow_run.get_flow_run_ui_url(),
    )


@task(name="open-study", **THIN)
def open_study(
    config: SweepConfig, context: TrialContext, previous_study: str | None
) -> tuple[optuna.Study, studies.StudyPlan]:
    """Resume the study of this data and setup, or start one seeded with the champion."""
    study, plan = steps.open_study(
        config, context, data_of(context.data_key).digest, previous_study
    )
    get_run_logger().info("%s (storage: %s)", plan.note, plan.storage)
    return study, plan


def _retry_only_transient(task: Any, task_run: Any, state: State) -> bool:
    """Retry I/O and database-busy errors; a bug or bad hyperparameters fails at once."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, BaseException) and trial_steps.is_transient(error)


@task(
    name="trial",
    task_run_name="trial-{number:03d}",
    retries=1,
    retry_delay_seconds=2,
    retry_condition_fn=_retry_only_transient,
    **THIN,
)
def run_trial(
    number: int,
    trial: optuna.Trial | studies.TrialHandle,
    params: dict[str, Any],
    context: TrialContext,
) -> TrialResult:
    """One trial. On another process (Dask) ``trial`` is a handle and the data a reference."""
    return trial_steps.execute_trial(
        trial.open() if isinstance(trial, studies.TrialHandle) else trial,
        params,
        runtime.prepared(context.data_key, context.data_ref),
        context,
        task_run_id=str(task_run.get_id()),
        attempt=task_run.get_run_count(),
    )


@task(name="refit-and-evaluate", **THIN)
def refit_and_evaluate(best: steps.Best, data_key: str, seed: int) -> tuple[Any, dict[str, float]]:
    """Fit the best point on the whole training part; score it on the untouched holdout."""
    return steps.refit_and_evaluate(best.params, data_of(data_key), seed)


@task(name="register-model", **THIN)
def register_model(
    model: Any,
    context: TrialContext,
    config: SweepConfig,
    best: steps.Best,
    holdout: dict[str, float],
) -> registry.RegisteredVersion:
    return steps.register(model, context, config, data_of(context.data_key), best, holdout)


@task(name="save-skops", **THIN)
def save_skops(
    model: Any, version: registry.RegisteredVersion, context: TrialContext, config: SweepConfig
) -> tuple[Path, str]:
    """Write the standalone skops file; record its sha256 on the version and the run."""
    path = steps.skops_path(config, version, context.parent_run_id)
    return path, steps.save_skops(model, version, context, path)


@task(name="log-plots", **THIN)
def log_plots(
    model: Any, study: optuna.Study, context: TrialContext, drawer: StudyDrawer | None = None
) -> PlotReport | None:
    """Log the model's and the study's plots on the parent run; a failure only warns."""
    try:
        return plot_steps.log_plots(model, study, data_of(context.data_key), context, drawer)
    except Exception as error:  # a picture is never worth failing the sweep over
        get_run_logger().warning("plots not logged: %s: %s", type(error).__name__, error)
        return None


@task(name="record-in-prefect", **THIN)
def record_in_prefect(summary: report.SweepSummary, study: optuna.Study) -> None:
    """The summary, leaderboard, study history and links as artifacts of this flow run."""
    from prefect.artifacts import (
        create_link_artifact,
        create_markdown_artifact,
        create_table_artifact,
    )

    create_markdown_artifact(
        report.summary_markdown(summary), key="sweep-summary", description="What the sweep found"
    )
    create_table_artifact(
        report.leaderboard_rows(report.study_records(study)),
        key="sweep-leaderboard",
        description="Top trials of the study by CV AUC",
    )
    create_markdown_artifact(
        report.history_markdown(
            summary.study_note, studies.history_rows(study), _active_schedules()
        ),
        key="study-history",
        description="The study across sweeps, and the schedule that runs them",
    )
    create_link_artifact(
        summary.mlflow_run_url,
        link_text=f"MLflow sweep run {summary.parent_run_id[:8]}",
        key="mlflow-sweep-run",
        description=f"Open after: {summary.mlflow_ui_command}",
    )
    create_link_artifact(
        summary.mlflow_model_url,
        link_text=f"{summary.model_name} v{summary.model_version}",
        key="mlflow-model-version",
        description="The registered model version in MLflow",
    )


@task(name="announce-champion", **THIN)
def announce_champion(summary: report.SweepSummary) -> None:
    """Emit the event that notification automations listen for (a new champion)."""
    emit_champion(
        champion_payload(
            model_name=summary.model_name,
            version=summary.model_version,
            holdout_roc_auc=summary.holdout["roc_auc"],
            cv_auc=summary.best_cv_auc,
            flow_run_id=summary.flow_run_id,
        )
    )


@task(name="finish-tracking", **THIN)
def finish_tracking(context: TrialContext, summary: report.SweepSummary) -> None:
    steps.finish_sweep_run(context, summary)


@task(name="write-model-card", **THIN)
def write_model_card(
    model: Any, version: registry.RegisteredVersion, context: TrialContext
) -> None:
    """The version's model card, from what the sweep recorded (after finish-tracking): logged
    with the model and set as the version's description."""
    model_card.write_model_card(
        client_for(context.target), version.name, version.version, model=model,
        target=context.target,
    )  # fmt: skip


def _active_schedules() -> list[str]:
    """The schedules of the deployment running this flow (none for an ad-hoc run)."""
    from prefect.client.orchestration import get_client
    from prefect.runtime import deployment

    deployment_id = deployment.get_id()
    if not deployment_id:
        return []
    with get_client(sync_client=True) as client:
        schedules = client.read_deployment_schedules(uuid.UUID(str(deployment_id)))
    return [
        f"{getattr(s.schedule, 'cron', s.schedule)} ({getattr(s.schedule, 'timezone', 'UTC')})"
        + ("" if s.active else " [paused]")
        for s in schedules
    ]
