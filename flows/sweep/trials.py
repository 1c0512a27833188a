"""The ask/tell loop: ``parallel`` trials run as mapped Prefect tasks, each told to Optuna as it
ends and its slot refilled at once, so TPE keeps learning while trials run.

Trials go to a started Dask runner when there is one, else to the flow's thread pool. Between
trials the study's keeper (``studies.keeper``) fails trials whose heartbeat went stale and takes
over the budget of sweeps that died; a trial of this sweep failed as lost while it ran does not
count, and one more trial is asked in its place. The sweep's stopping rules
(``churnml.stopping``: a time budget, patience, a target) can end the loop before the budget.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import optuna
from prefect import get_run_logger, unmapped
from prefect.artifacts import create_progress_artifact, update_progress_artifact
from prefect.futures import PrefectFuture

import studies
from churnml.config import SweepConfig
from churnml.search import suggest_params
from churnml.stopping import Stopper, StoppingRules
from flows import runtime
from flows.sweep import steps
from flows.sweep.tasks import run_trial
from flows.sweep.trial_steps import (
    TrialContext,
    TrialResult,
    close_lost_trial_run,
    last_trials_launched,
)


def run_trials(
    study: optuna.Study,
    config: SweepConfig,
    context: TrialContext,
    keeper: studies.SweepKeeper,
    runner: Any | None,
    *,
    started: float,
) -> tuple[list[TrialResult], str]:
    """Run the sweep's trials (see the module docstring) until its budget is done or a
    stopping rule stops it (``churnml.stopping``, counted from ``started``, a monotonic time).

    Returns the results by trial number, and why the sweep stopped.
    """
    data = runtime.prepared(context.data_key, None)
    n_features, n_rows = len(data.encoded_features), len(data.x_train)
    trial_task = run_trial.with_options(retries=config.trial_retries)
    best = studies.best_trial(study)
    stopper = Stopper(
        StoppingRules.of(config),
        best_before=None if best is None else float(best.value),
        started=started,
    )
    loop = TrialLoop(
        study,
        config,
        context,
        n_features,
        keeper,
        trial_task=trial_task,
        runner=runner,
        stopper=stopper,
        n_rows=n_rows,
    )
    results = loop.run()
    reason = stopper.final_reason(len(results))
    loop.logger.info("trials stopped: %s", reason)
    return results, reason


class TrialLoop:
    """One sweep's trials, from the first ask to the last tell."""

    def __init__(
        self,
        study: optuna.Study,
        config: SweepConfig,
        context: TrialContext,
        n_features: int,
        keeper: studies.SweepKeeper,
        *,
        trial_task: Any,
        runner: Any | None = None,
        stopper: Stopper | None = None,
        n_rows: int | None = None,
    ) -> None:
        self.study = study
        self.config = config
        self.context = context
        self.n_features = n_features
        #: Training rows: the bounds of the leaf and split sizes follow them.
        self.n_rows = n_rows
        self.keeper = keeper
        self.trial_task = trial_task
        self.runner = runner
        self.stopper = stopper or Stopper(StoppingRules.of(config))
        self.logger = get_run_logger()
        self.results: list[TrialResult] = []
        self.running: dict[PrefectFuture, tuple[optuna.Trial, dict[str, Any]]] = {}
        self._launched: dict[PrefectFuture, float] = {}
        self.asked = 0
        self._finished_one = threading.Event()
        self._recovered: list[str] = []
        self._waiting_for: tuple[int, ...] = ()
        self._progress_id: Any = None

    # ------------------------------------------------------------------ the loop

    def run(self) -> list[TrialResult]:
        """Run the sweep's budget of trials; their results, by trial number."""
        try:
            return self._run()
        finally:
            last_trials_launched(self.context.parent_run_id, False)

    def _run(self) -> list[TrialResult]:
        keeper = self.keeper
        self._progress_id = create_progress_artifact(
            0.0, key="sweep-progress", description=f"Trials done of {keeper.budget}"
        )
        runtime.report_progress(
            runtime.TrialProgress(self.study.study_name, 0, keeper.budget, None)
        )
        while True:
            self._fill_slots()
            if not self.running:
                if self.asked >= keeper.budget or not self.stopper.may_launch():
                    break
                # The rest of the budget waits for crashed sweeps' trials to go stale and be
                # retried, so that their retries run in this sweep.
                time.sleep(keeper.seconds_to_check())
                self._maintain()
                continue
            finished = self._wait_some(timeout=keeper.seconds_to_check())
            for future in finished:
                self._tell(future)
            if keeper.due():
                self._maintain()
            if finished:
                # Refill the freed slots before the progress update (an API call), so the
                # next trial does not wait for it.
                self._fill_slots()
                self._report_progress()
        return sorted(self.results, key=lambda r: r.number)

    def _fill_slots(self) -> None:
        keeper = self.keeper
        left = keeper.budget - keeper.pending - self.asked
        free = min(self.config.parallel - len(self.running), left)
        may_launch = self.stopper.may_launch()
        if free > 0 and may_launch:
            self._launch(free)
            left -= free
        # The trials running now are the last: each fold may take every core (forest_threads).
        last_trials_launched(self.context.parent_run_id, left <= 0 or not may_launch)

    def _launch(self, count: int) -> None:
        """Ask ``count`` trials and map them as one wave of trial tasks."""
        wave = []
        for _ in range(count):
            trial = self.keeper.ask()
            params = suggest_params(
                trial, self.config.search_space, self.n_features, n_rows=self.n_rows
            )
            trial.set_user_attr(studies.ATTR_PARAMS, params)
            trial.set_user_attr(studies.ATTR_SWEEP_RUN, self.context.parent_run_id)
            trial.set_user_attr(studies.ATTR_FLOW_RUN, self.context.flow_run_id)
            wave.append((trial, params))
        self.asked += count
        parameters = {
            "number": [t.number for t, _ in wave],
            # Another process cannot use this process's trial object: it gets a handle.
            "trial": [
                t if self.runner is None else studies.handle_for(t, self.config) for t, _ in wave
            ],
            "params": [p for _, p in wave],
            "context": unmapped(self.context),
        }
        futures = (
            self.trial_task.map(**parameters)
            if self.runner is None
            else self.runner.map(self.trial_task, parameters)  # Task.map with a flow's runner
        )
        now = time.monotonic()
        for future in futures:
            future.add_done_callback(lambda _: self._finished_one.set())
            self._launched[future] = now
        self.running.update(zip(futures, wave, strict=True))

    def _wait_some(self, timeout: float) -> list[PrefectFuture]:
        """The trial futures that have finished, waiting up to ``timeout`` seconds for one.

        Not ``prefect.futures.wait``: it waits for every future (or the timeout), and ask/tell
        wants the first one that ends, to tell Optuna at once and refill its slot.
        """
        if not any(_is_done(future) for future in self.running):
            self._finished_one.wait(timeout)
        self._finished_one.clear()  # a future finishing from here on sets it again
        return [future for future in self.running if _is_done(future)]

    # ------------------------------------------------------------------ telling Optuna

    def _tell(self, future: PrefectFuture) -> None:
        """Tell Optuna how a trial ended; a trial failed as lost meanwhile is asked again."""
        future.wait()  # records the final state locally (the API may lag behind)
        trial, params = self.running.pop(future)
        seconds = time.monotonic() - self._launched.pop(future)
        self.keeper.release(trial)
        state = future.state
        if state.is_completed():
            result: TrialResult = future.result()
            counted = studies.tell_trial(
                self.study,
                trial,
                value=result.value if result.state == "COMPLETE" else None,
                state=None if result.state == "COMPLETE" else optuna.trial.TrialState.PRUNED,
            )
            if counted:
                self.logger.info(
                    "trial-%03d %s %s",
                    trial.number,
                    result.state,
                    f"CV AUC {result.value:.4f}" if result.value is not None else "",
                )
        else:
            error = state.result(raise_on_failure=False)
            message = (
                f"{type(error).__name__}: {error}"
                if isinstance(error, BaseException)
                else str(state.message)
            )
            counted = studies.tell_trial(
                self.study, trial, state=optuna.trial.TrialState.FAIL, fail_reason=message
            )
            if counted:
                close_lost_trial_run(self.context, trial.number, message)
                self.logger.warning("trial-%03d FAILED: %s", trial.number, message)
                result = TrialResult(
                    number=trial.number, state="FAIL", value=None, params=params, error=message
                )
        if not counted:
            reason = steps.close_late_trial_run(self.context, trial.number)
            self.logger.warning("trial-%03d not counted: %s", trial.number, reason)
            self.asked -= 1  # it was failed as lost and does not count: ask one more
            return
        self.results.append(result)
        self.stopper.record(result.state, result.value, seconds)

    # ------------------------------------------------------------------ between trials

    def _maintain(self) -> None:
        """Let the keeper recover crashed sweeps; close in MLflow what they left open."""
        recovery = self.keeper.maintain()
        changed = recovery.pending_trials != self._waiting_for
        self._waiting_for = recovery.pending_trials
        if not (recovery.dead_sweeps or recovery.lost_trials or changed):
            return
        self.logger.warning(
            "%s", recovery.describe() or "no more trials of crashed sweeps to wait for"
        )
        if recovery.dead_sweeps or recovery.lost_trials:
            steps.close_recovered(self.context, recovery, self.study)
            self._recovered.append(recovery.describe())
            steps.note_recovered(self.context, self._recovered)

    def _report_progress(self) -> None:
        done, budget = len(self.results), self.keeper.budget
        best = max((r.value for r in self.results if r.state == "COMPLETE"), default=None)
        update_progress_artifact(
            self._progress_id,
            100.0 * done / budget,
            description=f"{done}/{budget} trials done; best CV AUC "
            + (f"{best:.4f}" if best is not None else "n/a"),
        )
        runtime.report_progress(runtime.TrialProgress(self.study.study_name, done, budget, best))


def _is_done(future: PrefectFuture) -> bool:
    """True when a trial's task has finished (thread pool or Dask), without asking the API."""
    wrapped = getattr(future, "wrapped_future", None)
    return bool(wrapped is not None and wrapped.done())
