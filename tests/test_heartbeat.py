"""Lost trials on a storage with heartbeats: Optuna's heartbeat and our recovery of dead sweeps
fail each lost trial once, retry it once, and keep the study's budget exact.

A SQLite file stands in for PostgreSQL here (Optuna's heartbeat works the same on both); the
end-to-end proof on PostgreSQL with killed workers is in tests/test_team.py.
"""

from __future__ import annotations

import subprocess
import time

import optuna
import pytest

import studies
from churnml.config import SweepConfig
from tests.study_checks import study_budget

CONFIG = SweepConfig(experiment_name="heartbeat", n_trials=2)


@pytest.fixture
def heartbeat_storage(tmp_path, monkeypatch) -> str:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    monkeypatch.setenv("OPTUNA_STORAGE", url)
    monkeypatch.setenv("SWEEPFLOW_HEARTBEAT_SECONDS", "1")
    monkeypatch.setenv("SWEEPFLOW_GRACE_SECONDS", "1")
    return url


def open_as(sweep_id: str, config: SweepConfig = CONFIG):
    study, plan = studies.open_sweep_study(
        config, "digest", sweep_id=sweep_id, previous_study=None, champion=None
    )
    return study, plan.keeper


def run_one(keeper: studies.SweepKeeper, sweep_id: str) -> optuna.Trial:
    """Ask a trial as the sweep loop does (heartbeat first, then its owner)."""
    trial = keeper.ask()
    trial.suggest_int("k", 1, 10)
    trial.set_user_attr(studies.ATTR_SWEEP_RUN, sweep_id)
    return trial


def dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def play_dead(study: optuna.Study, sweep_id: str) -> None:
    """Make ``sweep_id``'s record look like a process that died."""
    key = studies.ATTR_SWEEP_PREFIX + sweep_id
    study.set_user_attr(key, {**study.user_attrs[key], "pid": dead_pid()})


def wait_stale() -> None:
    time.sleep(2.5)  # past the 1 s grace period, without heartbeats


def test_a_trial_whose_heartbeat_goes_stale_is_failed_retried_once_and_uses_no_budget(
    heartbeat_storage,
):
    study, first = open_as("first")
    lost = run_one(first, "first")
    wait_stale()
    assert studies.fail_stale_trials(study) == (lost.number,)
    _, second = open_as("second")
    failed = study.trials[lost.number]
    assert failed.state.name == "FAIL"
    assert studies.ATTR_FAIL_REASON not in failed.user_attrs

    retry = run_one(second, "second")  # the next ask takes the retry, with the same params
    assert retry.user_attrs[studies.ATTR_RETRY_OF] == lost.number
    assert study.trials[retry.number].system_attrs[studies.OPTUNA_FAILED_TRIAL] == lost.number
    assert retry.params == failed.params
    assert study.trials[retry.number].user_attrs[studies.ATTR_SWEEP_RUN] == "second"

    wait_stale()  # the retry is lost too: it is failed, and not retried again
    assert studies.fail_stale_trials(study) == (retry.number,)
    assert not [t for t in study.trials if t.state.name == "WAITING"]
    asked, consumed = study_budget(study)
    assert (asked, consumed) == (4, 0)


def test_the_heartbeat_and_the_reaper_never_retry_one_trial_twice(heartbeat_storage):
    study, first = open_as("first")
    lost = run_one(first, "first")
    play_dead(study, "first")
    wait_stale()
    # The reaper of a dead sweep waits for the heartbeat (it would fail it first) ...
    _, second = open_as("second")
    assert study.trials[lost.number].state.name == "FAIL"
    # ... and whichever comes second finds the trial finished and retries nothing.
    assert studies.fail_stale_trials(study) == ()
    assert studies.recover_dead_sweeps(study, "second").reaped_trials == ()
    retries = [t for t in study.trials if t.user_attrs.get(studies.ATTR_RETRY_OF) is not None]
    assert [t.user_attrs[studies.ATTR_RETRY_OF] for t in retries] == [lost.number]
    assert second.budget == CONFIG.n_trials * 2  # it took over the dead sweep's budget


def test_a_trial_without_a_heartbeat_is_reaped_after_the_grace_period(heartbeat_storage):
    study, _ = open_as("first")
    trial = study.ask()  # asked, but no heartbeat ever recorded (say, an older sweep)
    trial.set_user_attr(studies.ATTR_SWEEP_RUN, "first")
    play_dead(study, "first")
    _, second = open_as("second")
    assert second.pending == 1  # left to the heartbeat first
    time.sleep(3.2)  # grace (1 s) + two heartbeats (2 s): the heartbeat had its chance
    recovery = second.maintain()
    assert recovery.reaped_trials == (trial.number,)
    assert recovery.retried_trials == (trial.number,)
    assert study.trials[trial.number].user_attrs[studies.ATTR_REAPED] is True
    assert second.pending == 0


def test_a_sweep_takes_over_the_budget_of_a_sweep_that_died_once(heartbeat_storage):
    config = SweepConfig(experiment_name="heartbeat", n_trials=3)
    study, first = open_as("first", config)
    done = run_one(first, "first")
    assert studies.tell_trial(study, done, value=0.8)
    play_dead(study, "first")
    _, second = open_as("second", config)
    _, third = open_as("third", config)
    assert second.budget == 3 + 2  # its own, and what the dead sweep still owed
    assert third.budget == 3  # adopted already: never twice
    assert study.user_attrs[studies.ATTR_SWEEP_PREFIX + "first"]["adopted_by"] == "second"
    assert study_budget(study) == (9, 1)


def test_a_finished_sweep_is_not_recovered(heartbeat_storage):
    study, first = open_as("first")
    trial = run_one(first, "first")
    assert studies.tell_trial(study, trial, state=optuna.trial.TrialState.FAIL, fail_reason="x")
    assert first.finish() == 1  # a failed trial with a reason used budget
    play_dead(study, "first")
    _, second = open_as("second")
    recovery = second.maintain()
    assert not recovery.describe()
    assert second.budget == CONFIG.n_trials
    assert study_budget(study) == (1 + CONFIG.n_trials, 1)


def test_telling_a_trial_that_was_failed_as_lost_says_so(heartbeat_storage):
    study, first = open_as("first")
    trial = run_one(first, "first")
    wait_stale()
    studies.fail_stale_trials(study)
    assert not studies.tell_trial(study, trial, value=0.9)
    assert not studies.tell_trial(
        study, trial, state=optuna.trial.TrialState.FAIL, fail_reason="late"
    )
    assert study.trials[trial.number].state.name == "FAIL"
