"""Stopping rules in a real sweep: it stops early, still registers its best, and says why on
the MLflow run, in the Prefect summary and on the console."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from cli.main import app
from flows.sweep import trial_steps
from flows.sweep.flow import sweep
from tests.test_sweep_flow import read_artifacts, small_config
from tracking import tags
from tracking.store import connect

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def test_a_target_reached_stops_the_sweep_and_the_console_says_so():
    result = CliRunner().invoke(
        app,
        [
            "sweep", "--rows", "900", "--trials", "8", "--parallel", "1", "--folds", "2",
            "--pruner", "none", "--target-auc", "0.5", "--experiment", "target",
            "--model-name", "target-model",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "target reached" in result.output
    client = connect()
    (parent,) = client.search_runs(
        [client.get_experiment_by_name("target").experiment_id],
        filter_string=f"tags.`{tags.TAG_KIND}` = 'sweep'",
    )
    assert parent.data.tags[tags.TAG_STOP_REASON].startswith("target reached")
    assert parent.data.metrics["trials_complete"] == 1  # the first trial beat 0.5
    assert "champion" in client.get_model_version("target-model", "1").aliases


def test_a_time_budget_starts_no_trial_it_cannot_hold(monkeypatch):
    real = trial_steps.score_trial

    def slow(*args, **kwargs):
        time.sleep(1.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(trial_steps, "score_trial", slow)
    config = small_config("timed", n_trials=40, parallel=1, pruner="none", timeout=12)
    started = time.monotonic()
    summary = sweep(config=config)
    elapsed = time.monotonic() - started
    done = summary.trials_complete + summary.trials_pruned + summary.trials_failed
    assert 1 <= done < 40
    assert summary.stop_reason.startswith("time budget: 12 s")
    assert summary.model_version == "1"  # the best is still refit and registered
    markdown = read_artifacts(summary.flow_run_id)["sweep-summary"].data
    assert f"Stopped: {summary.stop_reason}" in markdown
    assert elapsed < 12 + 60  # trials stopped in time; refit, register and plots follow


def test_a_resumed_sweep_counts_only_its_own_trials_for_patience():
    first = sweep(config=small_config("patient", n_trials=4, study_name="patient"))
    second = sweep(
        config=small_config(
            "patient",
            n_trials=10,
            study_name="patient",
            parallel=1,  # exact: with 2 at once, the trial running when the rule fires ends too
            patience=2,
            min_improvement=0.5,
        )
    )
    assert first.study_name == second.study_name
    # The earlier sweep's 4 trials do not use up the patience: this sweep runs 2 of its own.
    assert second.trials_complete + second.trials_pruned == 2
    assert second.stop_reason.startswith("no improvement: 2 trials in a row")
