"""Faults, crashes and concurrency lose nothing: kill -9 and re-run, two sweeps at once,
retried trials, NaN scores.

The crash and concurrency tests run the real `sweepflow` command in subprocesses against the
session's Prefect test server and the session's temporary MLflow store and Optuna journal.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import yaml

import studies
from churnml.config import DataConfig, SweepConfig
from churnml.evaluate import CVResult
from flows.sweep import steps, trial_steps
from flows.sweep.flow import sweep
from tests.servers import BIN, REPO
from tests.study_checks import study_budget
from tracking import runs, tags
from tracking.store import connect, mlruns_dir

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def study_of(name: str) -> optuna.Study:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(mlruns_dir() / "optuna.journal"))
    )
    return optuna.load_study(study_name=name, storage=storage)


def child_runs(experiment: str) -> list:
    client = connect()
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return client.search_runs(
        [found.experiment_id], filter_string=f"tags.`{tags.TAG_KIND}` = 'trial'"
    )


def sweep_command(tmp_path: Path, experiment: str, trials: int, slow: bool) -> list[str]:
    settings = {"search_space": {"n_estimators": {"low": 150, "high": 250}}} if slow else {}
    config = tmp_path / f"{experiment}.yaml"
    config.write_text(yaml.safe_dump(settings))
    return [
        str(BIN / "sweepflow"),
        "sweep",
        "--rows",
        "2500",
        "--trials",
        str(trials),
        "--parallel",
        "2",
        "--folds",
        "3",
        "--pruner",
        "none",
        "--experiment",
        experiment,
        "--model-name",
        f"{experiment}-model",
        "--config",
        str(config),
    ]


@pytest.fixture
def cli_env() -> dict[str, str]:
    """The environment of a sweep subprocess: this session's Prefect server and stores."""
    from prefect.settings import PREFECT_API_URL

    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}


def study_name(experiment: str) -> str:
    (parent,) = {run.data.tags[tags.TAG_STUDY] for run in child_runs(experiment)}
    return parent


def test_kill_9_mid_trial_then_rerun_finishes_the_budget_exactly(tmp_path, cli_env):
    experiment, trials = "crash", 4
    command = sweep_command(tmp_path, experiment, trials, slow=True)
    victim = subprocess.Popen(
        command,
        env=cli_env,
        cwd=REPO,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        statuses = [run.info.status for run in child_runs(experiment)]
        if "FINISHED" in statuses and "RUNNING" in statuses:
            break
        assert victim.poll() is None, "the sweep ended before it could be killed"
        time.sleep(0.3)
    else:
        pytest.fail("never saw a finished and a running trial at once")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)

    name = study_name(experiment)
    zombies = [t.number for t in study_of(name).trials if t.state.name == "RUNNING"]
    assert zombies, "the kill left no running trial to recover"

    rerun = subprocess.run(
        command, env=cli_env, cwd=REPO, capture_output=True, text=True, timeout=600, check=False
    )
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr

    study = study_of(name)
    states = {t.number: t for t in study.trials}
    assert not [t for t in study.trials if t.state.name in {"RUNNING", "WAITING"}]
    for number in zombies:
        assert states[number].state.name == "FAIL"
        assert states[number].user_attrs[studies.ATTR_REAPED] is True
    retries = [t for t in study.trials if studies.ATTR_RETRY_OF in t.user_attrs]
    assert sorted(t.user_attrs[studies.ATTR_RETRY_OF] for t in retries) == sorted(zombies)
    asked, consumed = study_budget(study)
    assert asked == consumed == 2 * trials

    children = child_runs(experiment)
    numbers = [int(run.data.tags[tags.TAG_TRIAL]) for run in children]
    assert len(numbers) == len(set(numbers)), "a trial got two child runs"
    assert not [run for run in children if run.info.status == "RUNNING"]
    for run in children:
        if int(run.data.tags[tags.TAG_TRIAL]) in zombies:
            assert run.info.status == "KILLED"
    client = connect()
    assert len(client.search_model_versions(f"name = '{experiment}-model'")) == 1
    parents = client.search_runs(
        [client.get_experiment_by_name(experiment).experiment_id],
        filter_string=f"tags.`{tags.TAG_KIND}` = 'sweep'",
    )
    assert sorted(run.info.status for run in parents) == ["FINISHED", "KILLED"]
    (finished,) = [run for run in parents if run.info.status == "FINISHED"]
    assert "recovered 1 crashed sweep" in finished.data.tags["sweepflow.study_note"]


def test_two_sweeps_on_one_study_at_once_lose_nothing(tmp_path, cli_env):
    experiment, trials = "together", 3
    command = sweep_command(tmp_path, experiment, trials, slow=True)
    processes = [
        subprocess.Popen(
            command,
            env=cli_env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    for process in processes:
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output

    study = study_of(study_name(experiment))
    numbers = [t.number for t in study.trials]
    assert len(numbers) == len(set(numbers)) == 2 * trials
    assert all(t.state.name in {"COMPLETE", "PRUNED"} for t in study.trials)
    children = child_runs(experiment)
    assert sorted(int(run.data.tags[tags.TAG_TRIAL]) for run in children) == sorted(numbers)
    assert all(run.info.status == "FINISHED" for run in children)
    # They ran at once: each sweep's trials ran while the other's did.
    windows: dict[str, list[int]] = {}
    for run in children:
        window = windows.setdefault(run.data.tags["mlflow.parentRunId"], [2**63, 0])
        window[0] = min(window[0], run.info.start_time)
        window[1] = max(window[1], run.info.end_time)
    (first, second) = windows.values()
    assert max(first[0], second[0]) < min(first[1], second[1]), f"no overlap: {windows}"


def small(experiment: str, **overrides) -> SweepConfig:
    return SweepConfig.model_validate(
        {
            "data": DataConfig(synthetic_rows=700, synthetic_seed=4),
            "n_trials": 3,
            "parallel": 2,
            "cv_folds": 2,
            "pruner": "none",
            "experiment_name": experiment,
            "model_name": f"{experiment}-model",
            "search_space": {"n_estimators": {"low": 10, "high": 30}},
            **overrides,
        }
    )


def test_a_retried_trial_reuses_its_mlflow_run(monkeypatch):
    real = trial_steps.score_trial
    attempts: dict[int, int] = {}

    def flaky(trial, *args, **kwargs):
        attempts[trial.number] = attempts.get(trial.number, 0) + 1
        if trial.number == 1 and attempts[1] == 1:
            raise ConnectionError("tracking server hiccup")
        return real(trial, *args, **kwargs)

    monkeypatch.setattr(trial_steps, "score_trial", flaky)
    summary = sweep(config=small("retried"))
    assert attempts[1] == 2
    assert summary.trials_complete == 3 and summary.trials_failed == 0
    children = child_runs("retried")
    assert sorted(int(run.data.tags[tags.TAG_TRIAL]) for run in children) == [0, 1, 2]
    assert all(run.info.status == "FINISHED" for run in children)


def test_a_nan_score_is_a_failed_trial(monkeypatch):
    real = trial_steps.score_trial

    def nan_for_trial_2(trial, *args, **kwargs):
        result = real(trial, *args, **kwargs)
        if trial.number == 2:
            return CVResult(fold_scores=result.fold_scores, mean_auc=float("nan"), fit_seconds=0.1)
        return result

    monkeypatch.setattr(trial_steps, "score_trial", nan_for_trial_2)
    state = sweep(config=small("nan-score"), return_state=True)
    assert state.is_completed() and "1 of 3 trials failed" in state.message
    summary = state.result()
    assert summary.trials_failed == 1
    study = study_of(summary.study_name)
    assert study.trials[2].state.name == "FAIL"
    (failed,) = [r for r in child_runs("nan-score") if r.data.tags[tags.TAG_TRIAL] == "2"]
    assert failed.info.status == "FAILED"
    assert "not finite" in failed.data.tags[tags.TAG_ERROR]


def test_a_trial_lost_before_its_run_was_made_gets_a_killed_child_run():
    from tracking.store import ensure_experiment, resolve_target

    target = resolve_target()
    client = connect(target)
    experiment_id = ensure_experiment(client, "lost-before-run", target)
    dead_sweep = runs.start_sweep_run(
        client, experiment_id, run_name="dead", params={}, tags={tags.TAG_STUDY: "lost"}
    )
    ours = runs.start_sweep_run(
        client, experiment_id, run_name="ours", params={}, tags={tags.TAG_STUDY: "lost"}
    )
    study = optuna.create_study(study_name="lost", direction="maximize")
    trial = study.ask()  # asked by the dead sweep, which died before making the child run
    trial.suggest_int("k", 1, 10)
    trial.set_user_attr(studies.ATTR_PARAMS, {"k": trial.params["k"], "max_depth": None})
    trial.set_user_attr(studies.ATTR_SWEEP_RUN, dead_sweep)
    context = steps.TrialContext(
        data_key="unused",
        target=target,
        experiment_id=experiment_id,
        parent_run_id=ours,
        study_name="lost",
        cv_folds=3,
        seed=0,
    )
    recovery = studies.Recovery(dead_sweeps=(dead_sweep,), reaped_trials=(trial.number,))
    steps.close_recovered(context, recovery, study)
    steps.close_recovered(context, recovery, study)  # noticed twice: still one run

    (child,) = client.search_runs(
        [experiment_id], filter_string=f"tags.`{tags.TAG_KIND}` = 'trial'"
    )
    assert child.info.status == "KILLED"
    assert child.data.tags["mlflow.parentRunId"] == dead_sweep
    assert child.data.tags[tags.TAG_TRIAL] == str(trial.number)
    assert child.data.params == {"k": str(trial.params["k"]), "max_depth": "None"}
    assert "lost before its run was made" in child.data.tags[tags.TAG_ERROR]
    assert client.get_run(dead_sweep).info.status == "KILLED"
