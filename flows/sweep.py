"""The ``sweep`` flow: load -> validate -> split -> mapped trials -> pick best -> refit and
evaluate on the holdout -> register -> save skops -> record in the Prefect run.

Tasks are thin: each body is a call into ``churnml``, ``tracking`` or ``flows.steps``. Trials run
as mapped task runs on a thread pool (scikit-learn's forest releases the GIL, so threads use every
core at ~10 ms overhead a task, against ~165 ms for processes). Optuna is driven by ask/tell: a
finished trial is told at once and its slot refilled by a new mapped wave, so TPE keeps learning
while ``parallel`` trials run. With ``task_runner: dask`` the trials go to a Dask cluster instead
(``flows/runners.py``); they rebuild the data and their Optuna trial there from references.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NONE
from prefect.futures import PrefectFuture
from prefect.runtime import flow_run, task_run
from prefect.states import Completed, State
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import BaseModel

from churnml import cache as data_cache
from churnml import prepare
from churnml.config import SweepConfig
from churnml.data import frame_digest
from churnml.evaluate import holdout_metrics
from churnml.model import build_pipeline, feature_importances, fit_quietly
from churnml.promotion import holdout_spec
from churnml.search import suggest_params
from flows import preflight, runners, runtime, steps, studies
from flows.report import (
    TrialRecord,
    history_markdown,
    leaderboard_rows,
    prefect_ui_hint,
    study_records,
    summary_markdown,
)
from tracking import registry, runs
from tracking.model_files import save_model_file
from tracking.plots import PlotReport
from tracking.store import connect, ensure_experiment, mask_uri, mlruns_dir, resolve_target

# Results stay in memory: nothing (least of all the frame) is hashed or persisted per task.
THIN = {"cache_policy": NONE, "persist_result": False}


#: Event emitted when a sweep's model becomes champion (promotion emits it too).
CHAMPION_EVENT = "sweepflow.model.champion"


class SweepFailedError(RuntimeError):
    """No trial of the sweep completed, so there is no model to register."""


class SweepSummary(BaseModel):
    """What a sweep found and where it put it; returned by the flow and printed by the CLI."""

    study_name: str
    study_note: str
    study_trials: int
    experiment_name: str
    experiment_id: str
    parent_run_id: str
    flow_run_id: str | None
    data_source: str
    data_digest: str
    data_rows: int
    trials_complete: int
    trials_pruned: int
    trials_failed: int
    best_trial: int
    best_cv_auc: float
    best_params: dict[str, Any]
    holdout: dict[str, float]
    selected_features: list[str]
    model_name: str
    model_version: str
    model_aliases: list[str]
    model_uri: str
    skops_path: str
    skops_sha256: str
    tracking_uri: str
    mlflow_ui_command: str
    mlflow_run_url: str
    mlflow_model_url: str
    prefect_ui_hint: str
    plots: PlotReport | None = None


# --------------------------------------------------------------------------- tasks


@task(name="preflight", **THIN)
def check_backends(config: SweepConfig) -> preflight.Backends:
    """Refuse unsafe backends for this sweep before anything runs; log the ones in use."""
    from prefect.settings import PREFECT_API_URL

    backends = preflight.check_environment(config, prefect_api=PREFECT_API_URL.value())
    get_run_logger().info("backends: %s", "; ".join(backends.lines()))
    return backends


@task(name="load-cached-data", **THIN)
def load_cached_data(config: SweepConfig) -> tuple[str | None, str | None]:
    """Look the split up in the data cache: (cache key, data key), the data key on a hit only.

    The cache key is None when the file cannot be read; load-data then says what is wrong.
    """
    try:
        key = data_cache.cache_key(config)
    except OSError:
        return None, None
    prepared = data_cache.load(key, data_cache.cache_folder(mlruns_dir()), config)
    if prepared is None:
        return key, None
    return key, runtime.remember(f"{prepared.digest}-{uuid.uuid4().hex[:8]}", prepared)


@task(name="load-data", **THIN)
def load_data(config: SweepConfig) -> pd.DataFrame:
    return prepare.load_raw(config.data)


@task(name="validate-data", **THIN)
def validate_data(raw: pd.DataFrame, config: SweepConfig) -> pd.DataFrame:
    return prepare.validate(raw, config)


@task(name="split-data", **THIN)
def split_data(clean: pd.DataFrame, config: SweepConfig, cache_key: str | None = None) -> str:
    """Split once and register the result in-process; trials get only the returned key.

    With a ``cache_key`` (taken before the data was read) the split is cached for the next sweep.
    """
    prepared = prepare.split(clean, config, digest=frame_digest(clean))
    if cache_key is not None:
        try:
            data_cache.store(prepared, cache_key, data_cache.cache_folder(mlruns_dir()))
        except OSError as error:  # the next sweep reloads the data; nothing else is lost
            get_run_logger().warning("data cache not written: %s", error)
    return runtime.remember(f"{prepared.digest}-{uuid.uuid4().hex[:8]}", prepared)


@task(name="start-tracking", **THIN)
def start_tracking(
    config: SweepConfig, data_key: str, study_name: str
) -> tuple[steps.TrialContext, str | None]:
    """Create the store and experiment before trials fan out, then the sweep's parent run.

    Returns the trials' shared context and the study of the experiment's previous sweep.
    """
    data = _data(data_key)
    target = resolve_target()
    client = connect(target)
    experiment_id = ensure_experiment(client, config.experiment_name, target)
    previous_study = runs.latest_sweep_study(client, experiment_id)
    flow_run_id = flow_run.get_id()
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
            runs.TAG_STUDY: study_name,
            runs.TAG_FLOW_RUN: flow_run_id,
            runs.TAG_FLOW_RUN_URL: flow_run.get_flow_run_ui_url(),
        },
    )
    generator = None
    if data.path is None:
        generator = {
            "generator": "churnml.data.generate_bank_churn",
            "rows": config.data.synthetic_rows,
            "seed": config.data.synthetic_seed,
        }
    runs.log_training_data(
        client,
        parent_run_id,
        pd.concat([data.train, data.test], ignore_index=True),
        source=data.path,
        name=Path(data.path).name if data.path else "built-in-bank-churn",
        digest=data.digest,
        target=data.target,
        generator=generator,
    )
    context = steps.TrialContext(
        data_key=data_key,
        target=target,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        study_name=study_name,
        cv_folds=config.cv_folds,
        seed=config.seed,
        flow_run_id=flow_run_id,
        data_ref=runtime.data_ref(config, data.digest),
    )
    return context, previous_study


@task(name="open-study", **THIN)
def open_study(
    config: SweepConfig, context: steps.TrialContext, digest: str, previous_study: str | None
) -> tuple[optuna.Study, studies.StudyPlan]:
    """Resume the study of this data and setup, or start one seeded with the champion."""
    client = connect(context.target)
    champion = registry.champion_params(client, config.model_name)
    study, plan = studies.open_sweep_study(
        config,
        digest,
        sweep_id=context.parent_run_id,
        previous_study=previous_study,
        champion=champion,
    )
    if plan.recovery is not None:
        _close_recovered(client, context, plan.recovery, study)
    client.set_tag(context.parent_run_id, "sweepflow.study_note", plan.note)
    return study, plan


def _close_recovered(
    client: Any, context: steps.TrialContext, recovery: studies.Recovery, study: optuna.Study
) -> None:
    """Close what crashed sweeps left open in MLflow as KILLED, not left RUNNING.

    A trial lost before its child run was made (the process died between ask and the run) gets
    one now, KILLED, so that every trial of the study still has exactly one child run.
    """
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
            tags={runs.TAG_FLOW_RUN: lost.user_attrs.get(studies.ATTR_FLOW_RUN)},
        )
        runs.mark_killed(client, run_id, f"{reason} (lost before its run was made)")


def _retry_only_transient(task: Any, task_run: Any, state: State) -> bool:
    """Retry I/O and database-busy errors; a bug or bad hyperparameters fails at once."""
    error = state.result(raise_on_failure=False)
    return isinstance(error, BaseException) and steps.is_transient(error)


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
    context: steps.TrialContext,
) -> steps.TrialOutcome:
    """One trial. On another process (Dask) ``trial`` is a handle and the data a reference."""
    return steps.execute_trial(
        trial.open() if isinstance(trial, studies.TrialHandle) else trial,
        params,
        runtime.prepared(context.data_key, context.data_ref),
        context,
        task_run_id=str(task_run.get_id()),
        attempt=task_run.get_run_count(),
    )


@task(name="refit-and-evaluate", **THIN)
def refit_and_evaluate(
    params: dict[str, Any], data_key: str, seed: int
) -> tuple[Any, dict[str, float]]:
    """Fit the best point on the whole training part; score it on the untouched holdout."""
    data = _data(data_key)
    model = fit_quietly(build_pipeline(params, seed=seed, n_jobs=-1), data.x_train, data.y_train)
    # Fit on every core, but predict on one: a parallel forest sums tree votes in a varying
    # order, and the saved model should give the same probabilities on every call.
    model.set_params(forest__n_jobs=1)
    return model, holdout_metrics(model, data.x_test, data.y_test)


@task(name="register-model", **THIN)
def register_model(
    model: Any, context: steps.TrialContext, config: SweepConfig, tags: dict[str, Any]
) -> registry.RegisteredVersion:
    data = _data(context.data_key)
    return registry.register_best_model(
        connect(context.target),
        run_id=context.parent_run_id,
        model=model,
        model_name=config.model_name,
        input_example=data.x_test.head(5),
        tags=tags,
    )


@task(name="save-skops", **THIN)
def save_skops(
    model: Any, version: registry.RegisteredVersion, context: steps.TrialContext, path: Path
) -> str:
    """Write the standalone skops file and record its sha256 on the version and the run."""
    sha256 = save_model_file(model, path)
    client = connect(context.target)
    registry.tag_version(
        client, version.name, version.version, {"skops_sha256": sha256, "skops_path": path}
    )
    client.set_tag(context.parent_run_id, "sweepflow.skops_sha256", sha256)
    client.set_tag(context.parent_run_id, "sweepflow.skops_path", str(path))
    return sha256


@task(name="log-plots", **THIN)
def log_plots(model: Any, study: optuna.Study, context: steps.TrialContext) -> PlotReport | None:
    """Log the model's and the study's plots on the parent run; a failure only warns."""
    try:
        return steps.log_plots(model, study, _data(context.data_key), context)
    except Exception as error:  # a picture is never worth failing the sweep over
        get_run_logger().warning("plots not logged: %s: %s", type(error).__name__, error)
        return None


@task(name="record-in-prefect", **THIN)
def record_in_prefect(summary: SweepSummary, study: optuna.Study) -> None:
    from prefect.artifacts import (
        create_link_artifact,
        create_markdown_artifact,
        create_table_artifact,
    )

    create_markdown_artifact(
        summary_markdown(summary), key="sweep-summary", description="What the sweep found"
    )
    create_table_artifact(
        leaderboard_rows(study_records(study)),
        key="sweep-leaderboard",
        description="Top trials of the study by CV AUC",
    )
    create_markdown_artifact(
        history_markdown(summary.study_note, studies.history_rows(study), _active_schedules()),
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
def announce_champion(summary: SweepSummary) -> None:
    """Emit the event that notification automations listen for (a new champion)."""
    from prefect.events import emit_event

    emit_event(
        event=CHAMPION_EVENT,
        resource={
            "prefect.resource.id": f"mlflow.model.{summary.model_name}",
            "prefect.resource.name": summary.model_name,
        },
        payload={
            "model_name": summary.model_name,
            "version": summary.model_version,
            "cv_auc": summary.best_cv_auc,
            "holdout_roc_auc": summary.holdout["roc_auc"],
            "flow_run_id": summary.flow_run_id,
        },
    )


def _active_schedules() -> list[str]:
    """The schedules of the deployment running this flow (none for an ad-hoc run)."""
    from prefect.runtime import deployment

    deployment_id = deployment.get_id()
    if not deployment_id:
        return []
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        schedules = client.read_deployment_schedules(uuid.UUID(str(deployment_id)))
    return [
        f"{getattr(s.schedule, 'cron', s.schedule)} ({getattr(s.schedule, 'timezone', 'UTC')})"
        + ("" if s.active else " [paused]")
        for s in schedules
    ]


# --------------------------------------------------------------------------- the flow


def _data(key: str) -> prepare.PreparedData:
    """The prepared data of this sweep, in the flow's process (trials use their reference)."""
    data = runtime.lookup(key)
    if data is None:  # pragma: no cover - the flow registered it before any task asks
        raise RuntimeError(f"prepared data {key} is not in this process")
    return data


def _run_trials(
    study: optuna.Study,
    config: SweepConfig,
    context: steps.TrialContext,
    n_features: int,
    keeper: studies.SweepKeeper,
    runner: Any | None = None,
) -> list[TrialRecord]:
    """Ask/tell loop: keep ``parallel`` trials running as mapped tasks, tell each as it ends.

    Trials go to ``runner`` when one is given (a started Dask runner), else to the flow's thread
    pool. Between trials the keeper fails trials whose heartbeat went stale and takes over the
    budget of sweeps that died; a trial of this sweep failed as lost while it ran does not
    count, and one more trial is asked in its place.
    """
    from prefect.artifacts import create_progress_artifact, update_progress_artifact

    logger = get_run_logger()
    trial_task = run_trial.with_options(retries=config.trial_retries)
    progress_id = create_progress_artifact(
        0.0, key="sweep-progress", description=f"Trials done of {keeper.budget}"
    )
    runtime.report_progress(runtime.TrialProgress(study.study_name, 0, keeper.budget, None))
    records: list[TrialRecord] = []
    running: dict[PrefectFuture, tuple[optuna.Trial, dict[str, Any]]] = {}
    finished_one = threading.Event()
    asked = 0

    def launch(count: int) -> None:
        nonlocal asked
        if count <= 0:
            return
        wave = []
        for _ in range(count):
            trial = keeper.ask()
            params = suggest_params(trial, config.search_space, n_features)
            trial.set_user_attr(studies.ATTR_PARAMS, params)
            trial.set_user_attr(studies.ATTR_SWEEP_RUN, context.parent_run_id)
            trial.set_user_attr(studies.ATTR_FLOW_RUN, context.flow_run_id)
            wave.append((trial, params))
        asked += count
        parameters = {
            "number": [t.number for t, _ in wave],
            # Another process cannot use this process's trial object: it gets a handle.
            "trial": [t if runner is None else studies.handle_for(t, config) for t, _ in wave],
            "params": [p for _, p in wave],
            "context": unmapped(context),
        }
        futures = (
            trial_task.map(**parameters)
            if runner is None
            else runner.map(trial_task, parameters)  # what Task.map does with a flow's runner
        )
        for future in futures:
            future.add_done_callback(lambda _: finished_one.set())
        running.update(zip(futures, wave, strict=True))

    recovered: list[str] = []
    waiting_for: tuple[int, ...] = ()

    def maintain() -> None:
        nonlocal waiting_for
        recovery = keeper.maintain()
        changed = recovery.pending_trials != waiting_for
        waiting_for = recovery.pending_trials
        if not (recovery.dead_sweeps or recovery.lost_trials or changed):
            return
        logger.warning("%s", recovery.describe() or "no more trials of crashed sweeps to wait for")
        if recovery.dead_sweeps or recovery.lost_trials:
            client = connect(context.target)
            _close_recovered(client, context, recovery, study)
            recovered.append(recovery.describe())
            client.set_tag(
                context.parent_run_id, "sweepflow.recovered", "; ".join(recovered)[-5000:]
            )

    while True:
        launch(min(config.parallel - len(running), keeper.budget - keeper.pending - asked))
        if not running:
            if asked >= keeper.budget:
                break
            # The rest of the budget waits for crashed sweeps' trials to go stale and be
            # retried, so that their retries run in this sweep.
            time.sleep(keeper.seconds_to_check())
            maintain()
            continue
        finished = _wait_some(running, finished_one, timeout=keeper.seconds_to_check())
        for future in finished:
            future.wait()  # records the final state locally (the API may lag behind)
            trial, params = running.pop(future)
            keeper.release(trial)
            record = _tell(study, trial, params, future, context, logger)
            if record is None:
                asked -= 1  # it was failed as lost and does not count: ask one more
            else:
                records.append(record)
        if keeper.due():
            maintain()
        if not finished:
            continue
        # Refill the freed slots before the progress update (an API call), so the next
        # trial does not wait for it.
        launch(min(config.parallel - len(running), keeper.budget - keeper.pending - asked))
        done, budget = len(records), keeper.budget
        best = max((r.value for r in records if r.state == "COMPLETE"), default=None)
        update_progress_artifact(
            progress_id,
            100.0 * done / budget,
            description=f"{done}/{budget} trials done; best CV AUC "
            + (f"{best:.4f}" if best is not None else "n/a"),
        )
        runtime.report_progress(runtime.TrialProgress(study.study_name, done, budget, best))
    return sorted(records, key=lambda r: r.number)


def _wait_some(
    running: dict[PrefectFuture, Any], finished_one: threading.Event, timeout: float
) -> list[PrefectFuture]:
    """The trial futures that have finished, waiting up to ``timeout`` seconds for one."""
    if not any(_is_done(future) for future in running):
        finished_one.wait(timeout)
    finished_one.clear()  # a future finishing from here on sets it again
    return [future for future in running if _is_done(future)]


def _is_done(future: PrefectFuture) -> bool:
    """True when a trial's task has finished (thread pool or Dask), without asking the API."""
    wrapped = getattr(future, "wrapped_future", None)
    return bool(wrapped is not None and wrapped.done())


def _tell(
    study: optuna.Study,
    trial: optuna.Trial,
    params: dict[str, Any],
    future: PrefectFuture,
    context: steps.TrialContext,
    logger: Any,
) -> TrialRecord | None:
    """Tell Optuna how a trial ended; None when it had been failed as lost meanwhile."""
    state = future.state
    if state.is_completed():
        outcome: steps.TrialOutcome = future.result()
        if outcome.state == "COMPLETE":
            counted = studies.tell_trial(study, trial, value=outcome.value)
        else:
            counted = studies.tell_trial(study, trial, state=optuna.trial.TrialState.PRUNED)
        if not counted:
            return _forget_lost(trial, context, logger)
        logger.info(
            "trial-%03d %s %s",
            trial.number,
            outcome.state,
            f"CV AUC {outcome.value:.4f}" if outcome.value is not None else "",
        )
        return TrialRecord.from_outcome(outcome)
    error = state.result(raise_on_failure=False)
    message = (
        f"{type(error).__name__}: {error}"
        if isinstance(error, BaseException)
        else str(state.message)
    )
    if not studies.tell_trial(
        study, trial, state=optuna.trial.TrialState.FAIL, fail_reason=message
    ):
        return _forget_lost(trial, context, logger)
    steps.close_lost_trial_run(context, trial.number, message)
    logger.warning("trial-%03d FAILED: %s", trial.number, message)
    return TrialRecord(number=trial.number, state="FAIL", value=None, params=params, error=message)


def _forget_lost(trial: optuna.Trial, context: steps.TrialContext, logger: Any) -> None:
    """A trial whose heartbeat went stale while it ran was failed (and queued for a retry) by
    another sweep: its late result is not used, and its MLflow run is closed as KILLED."""
    client = connect(context.target)
    run_id = runs.find_trial_run(
        client, context.experiment_id, study_name=context.study_name, number=trial.number
    )
    reason = "its heartbeat went stale while it ran; failed as lost and retried once"
    if run_id is not None:
        runs.mark_killed(client, run_id, reason, even_if_finished=True)
    logger.warning("trial-%03d not counted: %s", trial.number, reason)


@flow(
    name="sweep",
    flow_run_name="sweep-{config.experiment_name}",
    task_runner=ThreadPoolTaskRunner(max_workers=64),
    validate_parameters=True,
)
def sweep(config: SweepConfig = SweepConfig()) -> SweepSummary:  # noqa: B008 - frozen model
    """Run one hyperparameter sweep and register its best model (see the module docstring)."""
    logger = get_run_logger()
    check_backends(config)
    cache_key, data_key = load_cached_data(config)
    if data_key is None:  # not cached: load, validate and split, and cache the split
        raw = load_data(config)
        clean = validate_data(raw, config)
        data_key = split_data(clean, config, cache_key)
        del raw, clean
    data = _data(data_key)
    study_name = studies.study_name_for(config, data.digest)
    context, previous_study = start_tracking(config, data_key, study_name)
    client = connect(context.target)
    logger.info(
        "sweep %s: %d trials, %d in parallel, on %s; tracking at %s",
        study_name,
        config.n_trials,
        config.parallel,
        data.source,
        mask_uri(context.target.tracking_uri),
    )
    try:
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own log says it better
        study, plan = open_study(config, context, data.digest, previous_study)
        logger.info("%s (storage: %s)", plan.note, plan.storage)
        keeper = plan.keeper
        assert keeper is not None  # open_sweep_study always gives the sweep its keeper
        try:
            with keeper, runners.opened(runners.trial_runner(config)) as runner:
                records = _run_trials(
                    study, config, context, len(data.encoded_features), keeper, runner
                )
        finally:
            keeper.finish()  # nothing is owed from here on, even if the trials failed
        complete = [r for r in records if r.state == "COMPLETE"]
        failed = [r for r in records if r.state == "FAIL"]
        # The best of the whole study: earlier sweeps' trials count too, so a resumed study
        # whose new trials were all pruned still has a model. Only errors, or a study with no
        # completed trial at all, fail the sweep.
        best = studies.best_trial(study)
        if best is None or (not complete and len(failed) == len(records)):
            first_error = failed[0].error if failed else "every trial was pruned"
            raise SweepFailedError(
                f"no trial completed ({len(failed)} failed, "
                f"{len(records) - len(failed)} pruned); first error: {first_error}"
            )
        best_params = studies.used_params(best)
        model, holdout = refit_and_evaluate(best_params, data_key, config.seed)
        version = register_model(
            model,
            context,
            config,
            tags={
                "sweep_run_id": context.parent_run_id,
                "study_name": study_name,
                "best_trial": best.number,
                "cv_auc": f"{best.value:.6f}",
                registry.TAG_PARAMS: json.dumps(best_params),
                "holdout_roc_auc": f"{holdout['roc_auc']:.6f}",
                "data_digest": data.digest,
                "prefect_flow_run_id": context.flow_run_id,
            },
        )
        skops_path = Path(
            config.skops_path
            or mlruns_dir() / "models" / f"{config.model_name}-v{version.version}.skops"
        ).resolve()
        sha256 = save_skops(model, version, context, skops_path)
        plots = log_plots(model, study, context)
        summary = SweepSummary(
            study_name=study_name,
            study_note=plan.note,
            study_trials=len(study.trials),
            experiment_name=config.experiment_name,
            experiment_id=context.experiment_id,
            parent_run_id=context.parent_run_id,
            flow_run_id=context.flow_run_id,
            data_source=data.source,
            data_digest=data.digest,
            data_rows=data.rows,
            trials_complete=len(complete),
            trials_pruned=len(records) - len(complete) - len(failed),
            trials_failed=len(failed),
            best_trial=best.number,
            best_cv_auc=float(best.value),
            best_params=best_params,
            holdout=holdout,
            selected_features=list(feature_importances(model)),
            model_name=version.name,
            model_version=version.version,
            model_aliases=list(version.aliases),
            model_uri=version.model_uri,
            skops_path=str(skops_path),
            skops_sha256=sha256,
            tracking_uri=mask_uri(context.target.tracking_uri),
            mlflow_ui_command=context.target.ui_command,
            mlflow_run_url=context.target.run_url(context.experiment_id, context.parent_run_id),
            mlflow_model_url=context.target.model_version_url(version.name, version.version),
            prefect_ui_hint=prefect_ui_hint(context.flow_run_id),
            plots=plots,
        )
        record_in_prefect(summary, study)
        if version.created and "champion" in version.aliases:
            announce_champion(summary)
        runs.finish_sweep_run(
            client,
            context.parent_run_id,
            status="FINISHED",
            metrics={
                "best_cv_auc": summary.best_cv_auc,
                "trials_complete": len(complete),
                "trials_pruned": summary.trials_pruned,
                "trials_failed": len(failed),
                **{f"holdout_{k}": v for k, v in holdout.items()},
            },
            params={f"best_{k}": v for k, v in best_params.items()} | {"best_trial": best.number},
            tags={"sweepflow.model_version": version.version},
        )
    except BaseException as error:
        runs.finish_sweep_run(
            client,
            context.parent_run_id,
            status="FAILED",
            metrics={},
            tags={runs.TAG_ERROR: f"{type(error).__name__}: {error}"[:5000]},
        )
        raise
    finally:
        runtime.forget(data_key)
    if failed:
        return Completed(
            message=f"{len(failed)} of {len(records)} trials failed; "
            f"best of the {len(complete)} completed registered as v{version.version}",
            data=summary,
        )
    return summary
