"""One trial, as plain functions: score it, log it as a child run, say how it ended.

Nothing here imports Prefect, so each step is tested by calling it directly; the ``trial`` task
wraps :func:`execute_trial`.
"""

from __future__ import annotations

import math
import os
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import optuna

from churnml.evaluate import TrialScoreError
from churnml.prepare import PreparedData
from churnml.search import score_trial
from flows.runtime import DataRef
from tracking import runs, tags
from tracking.store import TrackingTarget, client_for


@dataclass(frozen=True)
class TrialContext:
    """What every trial of one sweep shares; small, so it is cheap to pass to each task."""

    data_key: str
    target: TrackingTarget
    experiment_id: str
    parent_run_id: str
    study_name: str
    cv_folds: int
    seed: int
    flow_run_id: str | None = None
    #: How a trial in another process (a Dask worker) rebuilds the data behind ``data_key``.
    data_ref: DataRef | None = None
    #: Cores the trials of this sweep share in this process (its ``parallel``, at most the
    #: machine's; 1 on Dask, whose workers each run one trial at a time).
    trial_cores: int = 1


@dataclass(frozen=True)
class TrialResult:
    """One trial as the sweep saw it end: COMPLETE or PRUNED (from :func:`execute_trial`), or
    FAIL (its task raised; ``error`` says why)."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    fold_scores: list[float] = field(default_factory=list)
    fit_seconds: float = 0.0
    run_id: str | None = None
    #: Where the trial ran (:func:`worker_name`).
    worker: str | None = None
    error: str | None = None


_running: Counter[str] = Counter()
_running_lock = threading.Lock()


@contextmanager
def _counted(sweep: str) -> Iterator[None]:
    with _running_lock:
        _running[sweep] += 1
    try:
        yield
    finally:
        with _running_lock:
            _running[sweep] -= 1
            if not _running[sweep]:  # a worker outlives many sweeps: keep no key for them
                del _running[sweep]


_last_trials: set[str] = set()


def last_trials_launched(sweep: str, launched: bool = True) -> None:
    """Say that ``sweep`` launches no more trials (its budget is asked, or a stopping rule
    holds the rest), or, with ``launched=False``, forget it (its trials are over)."""
    with _running_lock:
        if launched:
            _last_trials.add(sweep)
        else:
            _last_trials.discard(sweep)


def forest_threads(context: TrialContext) -> int:
    """Threads for the next fold's forest: the sweep's cores shared by its trials running now
    in this process, one each mid-sweep. Once the last trials are launched, each fold takes
    every core: where two still overlap, their threads share the cores (the trees are long
    tasks, so little is lost to it), and the one left running when the others end already has
    the cores they freed, from the middle of its fold on, not only from its next fold."""
    with _running_lock:
        running = _running[context.parent_run_id]
        last = context.parent_run_id in _last_trials
    if last:
        return max(1, context.trial_cores)
    return max(1, context.trial_cores // max(1, running))


def execute_trial(
    trial: optuna.Trial,
    params: dict[str, Any],
    data: PreparedData,
    context: TrialContext,
    *,
    task_run_id: str | None = None,
    attempt: int = 1,
) -> TrialResult:
    """Score one trial and log it as a child run of the sweep.

    A retry (``attempt > 1``) reuses the child run made by the first attempt. A trial whose
    scoring raises is logged FAILED and the error propagates, so the caller marks it failed.
    """
    client = client_for(context.target)
    run_id = runs.start_trial_run(
        client,
        context.experiment_id,
        parent_run_id=context.parent_run_id,
        study_name=context.study_name,
        number=trial.number,
        params=params,
        tags={
            tags.TAG_FLOW_RUN: context.flow_run_id,
            tags.TAG_TASK_RUN: task_run_id,
            tags.TAG_WORKER: worker_name(),
        },
        reuse_existing=attempt > 1,
    )
    started = time.perf_counter()
    try:
        with _counted(context.parent_run_id):
            result = score_trial(
                trial,
                params,
                data.x_train,
                data.y_train,
                folds=context.cv_folds,
                seed=context.seed,
                threads=lambda: forest_threads(context),
            )
    except optuna.TrialPruned as pruned:
        scores = list(getattr(pruned, "partial_scores", []))
        elapsed = time.perf_counter() - started
        runs.finish_trial_run(
            client,
            run_id,
            state="PRUNED",
            fold_scores=scores,
            metrics={"fit_seconds": elapsed},
            error=str(pruned),
        )
        return TrialResult(
            number=trial.number,
            state="PRUNED",
            value=None,
            params=params,
            fold_scores=scores,
            fit_seconds=elapsed,
            run_id=run_id,
            worker=worker_name(),
        )
    except Exception as error:
        if is_transient(error):
            raise  # the task retries; the run stays RUNNING until the retry reuses it
        runs.finish_trial_run(
            client,
            run_id,
            state="FAIL",
            fold_scores=[],
            metrics={"fit_seconds": time.perf_counter() - started},
            error=f"{type(error).__name__}: {error}",
        )
        raise
    if not math.isfinite(result.mean_auc):
        runs.finish_trial_run(
            client,
            run_id,
            state="FAIL",
            fold_scores=result.fold_scores,
            metrics={},
            error="mean CV AUC is not finite",
        )
        raise TrialScoreError(f"trial {trial.number}: mean CV AUC is not finite")
    runs.finish_trial_run(
        client,
        run_id,
        state="COMPLETE",
        fold_scores=result.fold_scores,
        metrics={"cv_auc_mean": result.mean_auc, "fit_seconds": result.fit_seconds},
    )
    return TrialResult(
        number=trial.number,
        state="COMPLETE",
        value=result.mean_auc,
        params=params,
        fold_scores=result.fold_scores,
        fit_seconds=result.fit_seconds,
        run_id=run_id,
        worker=worker_name(),
    )


def worker_name() -> str:
    """Where this code runs: ``host:pid``, plus the worker's address inside a Dask worker."""
    name = f"{socket.gethostname()}:{os.getpid()}"
    if "distributed" in sys.modules:  # only a process that uses Dask can be a Dask worker
        from distributed import get_worker

        try:
            return f"{name} dask {get_worker().address}"
        except ValueError:  # not inside a Dask worker
            pass
    return name


def is_transient(error: BaseException) -> bool:
    """Errors worth a retry: I/O, network and database-busy errors, not bugs or bad data."""
    if isinstance(error, ConnectionError | TimeoutError):
        return True
    name = type(error).__name__
    if name == "OperationalError":  # sqlalchemy/sqlite "database is locked" and friends
        return True
    code = getattr(error, "error_code", None)
    return code in {"TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"}


def close_lost_trial_run(context: TrialContext, number: int, error: str) -> None:
    """Mark the child run of a trial whose task failed for good as FAILED, if it is open."""
    client = client_for(context.target)
    run_id = runs.find_trial_run(
        client, context.experiment_id, study_name=context.study_name, number=number
    )
    if run_id is not None and client.get_run(run_id).info.status == "RUNNING":
        runs.finish_trial_run(client, run_id, state="FAIL", fold_scores=[], metrics={}, error=error)
