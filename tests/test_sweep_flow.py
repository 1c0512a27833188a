"""End-to-end: the sweep flow under a Prefect test harness, read back through MlflowClient."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from mlflow import MlflowClient

from churnml import prepare
from churnml.config import DataConfig, SweepConfig
from churnml.digests import file_sha256, frame_digest
from churnml.model import build_pipeline, fit_quietly
from flows.sweep import plot_steps, trial_steps
from flows.sweep.flow import SweepFailedError, SweepSummary, sweep
from tracking import registry, tags
from tracking.model_files import load_model_file
from tracking.store import client_for, connect, mlruns_dir, resolve_target

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def small_config(experiment: str, **overrides) -> SweepConfig:
    settings = {
        "data": DataConfig(synthetic_rows=900, synthetic_seed=1),
        "n_trials": 5,
        "parallel": 2,
        "cv_folds": 3,
        "experiment_name": experiment,
        "model_name": f"{experiment}-model",
        "search_space": {"n_estimators": {"low": 10, "high": 40}},
    }
    settings.update(overrides)
    return SweepConfig.model_validate(settings)


def children_of(client: MlflowClient, summary: SweepSummary):
    return client.search_runs(
        [summary.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{summary.parent_run_id}'",
    )


def read_artifacts(flow_run_id: str) -> dict[str, object]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {artifact.key: artifact for artifact in found}


@pytest.fixture(scope="module")
def first_sweep() -> tuple[SweepConfig, SweepSummary]:
    config = small_config("e2e")
    return config, sweep(config=config)


def test_parent_and_child_runs(first_sweep):
    config, summary = first_sweep
    client = connect()
    parent = client.get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[tags.TAG_FLOW_RUN] == summary.flow_run_id
    # A link is a working URL or absent (the temporary server has no UI: no "None/flow-runs").
    link = parent.data.tags.get(tags.TAG_FLOW_RUN_URL)
    assert link is None or link.startswith(("http://", "https://")), link
    assert parent.data.metrics["best_cv_auc"] == pytest.approx(summary.best_cv_auc)
    assert "holdout_roc_auc" in parent.data.metrics
    assert parent.data.params["best_k"] == str(summary.best_params["k"])
    dataset_inputs = parent.inputs.dataset_inputs
    assert len(dataset_inputs) == 1
    assert dataset_inputs[0].dataset.digest == summary.data_digest

    children = children_of(client, summary)
    assert len(children) == config.n_trials
    assert sorted(r.info.run_name for r in children) == [
        f"trial-{n:03d}" for n in range(config.n_trials)
    ]
    for child in children:
        assert child.info.status in {"FINISHED", "KILLED"}
        child_tags = child.data.tags
        assert child_tags[tags.TAG_STUDY] == summary.study_name
        assert child_tags[tags.TAG_FLOW_RUN] == summary.flow_run_id
        assert child_tags[tags.TAG_TASK_RUN]
        assert 1 <= int(child.data.params["k"]) <= 13
        history = client.get_metric_history(child.info.run_id, "fold_auc")
        assert [m.step for m in history] == list(range(len(history)))
        if child.info.status == "FINISHED":
            assert len(history) == config.cv_folds
            mean = np.mean([m.value for m in history])
            assert child.data.metrics["cv_auc_mean"] == pytest.approx(mean)
            assert child.data.metrics["fit_seconds"] > 0
    assert summary.trials_complete + summary.trials_pruned == config.n_trials
    assert summary.trials_failed == 0


def test_registered_version_and_aliases(first_sweep):
    config, summary = first_sweep
    client = connect()
    version = client.get_model_version(config.model_name, summary.model_version)
    assert version.run_id == summary.parent_run_id
    assert set(version.aliases) == {"champion", "challenger"}
    assert version.tags["skops_sha256"] == summary.skops_sha256
    # Every sweep's version carries its model card as its description in the registry.
    assert f"v{summary.model_version}: model card" in version.description
    assert summary.skops_sha256 in version.description and "Intended use" in version.description


def test_skops_file_predicts_like_the_in_memory_model(first_sweep):
    config, summary = first_sweep
    assert file_sha256(summary.skops_path) == summary.skops_sha256
    loaded = load_model_file(summary.skops_path, expected_sha256=summary.skops_sha256)

    clean = prepare.validate(prepare.load_raw(config.data), config)
    data = prepare.split(clean, config, digest=frame_digest(clean))
    in_memory = fit_quietly(
        build_pipeline(summary.best_params, seed=config.seed), data.x_train, data.y_train
    )
    raw_rows = data.test.drop(columns=config.data.target)
    np.testing.assert_array_equal(loaded.predict_proba(raw_rows), in_memory.predict_proba(raw_rows))
    assert summary.holdout["roc_auc"] > 0.6


def test_registration_is_idempotent(first_sweep):
    config, summary = first_sweep
    client = connect()
    loaded = load_model_file(summary.skops_path)
    again = registry.register_best_model(
        client,
        run_id=summary.parent_run_id,
        model=loaded,
        model_name=config.model_name,
        input_example=prepare.load_raw(config.data).head(3),
        tags={},
    )
    assert again.created is False
    assert again.version == summary.model_version
    assert len(client.search_model_versions(f"name = '{config.model_name}'")) == 1


def test_prefect_artifacts(first_sweep):
    _, summary = first_sweep
    artifacts = read_artifacts(summary.flow_run_id)
    assert {
        "sweep-summary",
        "sweep-leaderboard",
        "mlflow-sweep-run",
        "mlflow-model-version",
        "sweep-progress",
    } <= set(artifacts)
    markdown = artifacts["sweep-summary"].data
    assert summary.skops_sha256 in markdown
    assert f"version {summary.model_version}" in markdown
    assert summary.parent_run_id in artifacts["mlflow-sweep-run"].data
    assert artifacts["sweep-progress"].data == pytest.approx(100.0)


@pytest.fixture(scope="module")
def second_sweep(first_sweep) -> SweepSummary:
    config, _ = first_sweep
    return sweep(config=config.model_copy(update={"n_trials": 2}))


def test_second_sweep_becomes_challenger_only(first_sweep, second_sweep):
    config, first = first_sweep
    assert second_sweep.model_version != first.model_version
    assert second_sweep.model_aliases == ["challenger"]
    client = connect()
    champion = client.get_model_version_by_alias(config.model_name, "champion")
    assert str(champion.version) == first.model_version


def test_second_sweep_resumes_the_study(first_sweep, second_sweep):
    config, first = first_sweep
    assert second_sweep.study_name == first.study_name
    assert second_sweep.study_note.startswith("resumed study")
    assert second_sweep.study_trials == config.n_trials + 2
    client = connect()
    numbers = sorted(int(r.data.tags[tags.TAG_TRIAL]) for r in children_of(client, second_sweep))
    assert numbers == [config.n_trials, config.n_trials + 1]
    # The best model considers every trial of the study, the first sweep's included.
    assert second_sweep.best_cv_auc >= first.best_cv_auc
    history = read_artifacts(second_sweep.flow_run_id)["study-history"].data
    assert first.parent_run_id[:12] in history and second_sweep.parent_run_id[:12] in history


def test_changed_data_starts_a_new_study_warm_started_from_the_champion(first_sweep, second_sweep):
    config, first = first_sweep
    changed = config.model_copy(
        update={"data": DataConfig(synthetic_rows=900, synthetic_seed=2), "n_trials": 2}
    )
    third = sweep(config=changed)
    assert third.study_name != first.study_name
    assert "changed since study " + first.study_name in third.study_note
    assert f"warm-started with the champion's params (v{first.model_version})" in third.study_note
    client = connect()
    by_number = {int(r.data.tags[tags.TAG_TRIAL]): r for r in children_of(client, third)}
    seeded = by_number[0].data.params
    for key, value in first.best_params.items():
        assert seeded[key] == str(value)


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(monkeypatch):
    real = trial_steps.score_trial

    def flaky(trial, *args, **kwargs):
        if trial.number == 1:
            raise ValueError("boom in trial 1")
        return real(trial, *args, **kwargs)

    monkeypatch.setattr(trial_steps, "score_trial", flaky)
    config = small_config("e2e-failing", n_trials=4, pruner="none")
    state = sweep(config=config, return_state=True)
    assert state.is_completed()
    assert "1 of 4 trials failed" in state.message
    summary = state.result()
    assert summary.trials_failed == 1 and summary.trials_complete == 3

    client = client_for(resolve_target())
    by_name = {r.info.run_name: r for r in children_of(client, summary)}
    assert by_name["trial-001"].info.status == "FAILED"
    assert "boom in trial 1" in by_name["trial-001"].data.tags[tags.TAG_ERROR]
    study = optuna.load_study(
        study_name=summary.study_name,
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(mlruns_dir() / "optuna.journal"))
        ),
    )
    states = {t.number: t.state for t in study.trials}
    assert states[1] == optuna.trial.TrialState.FAIL
    assert sum(s == optuna.trial.TrialState.COMPLETE for s in states.values()) == 3


def test_the_flow_fails_when_no_trial_completes(monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("every trial breaks")

    monkeypatch.setattr(trial_steps, "score_trial", broken)
    config = small_config("e2e-broken", n_trials=2)
    state = sweep(config=config, return_state=True)
    assert state.is_failed()
    with pytest.raises(SweepFailedError, match=r"no trial completed.*every trial breaks"):
        state.result()
    client = connect()
    experiment = client.get_experiment_by_name("e2e-broken")
    parents = client.search_runs(
        [experiment.experiment_id], filter_string=f"tags.`{tags.TAG_KIND}` = 'sweep'"
    )
    assert [p.info.status for p in parents] == ["FAILED"]


def test_sweep_on_a_sample_of_churn_modelling(shared_data):
    config = small_config(
        "e2e-churn-modelling",
        data=DataConfig(path=shared_data / "churn_modelling.csv", sample_rows=1500),
        n_trials=3,
    )
    summary = sweep(config=config)
    assert summary.data_rows == 1500
    assert summary.trials_complete >= 1
    assert summary.holdout["roc_auc"] > 0.7


def test_plots_on_the_parent_run_and_in_the_summary(first_sweep):
    _, summary = first_sweep
    client = connect()
    logged = {
        item.path
        for folder in ("model", "optuna")
        for item in client.list_artifacts(summary.parent_run_id, folder)
    }
    assert {
        "model/roc_curve.png",
        "model/precision_recall_curve.png",
        "model/confusion_matrix.png",
        "model/calibration_curve.png",
        "model/feature_importances.png",
        "optuna/study.html",
        "optuna/optimization_history.png",
    } <= logged
    assert {link.artifact_path for link in summary.plots.links} == logged
    markdown = read_artifacts(summary.flow_run_id)["sweep-summary"].data
    assert "## Plots" in markdown
    assert summary.plots.link("model/roc_curve.png").image_url in markdown


def test_with_a_core_to_spare_the_study_is_drawn_apart(monkeypatch):
    """One trial at a time on a machine with cores to spare: the study's plots come from the
    drawing process, handed the finished study, and it does not outlive the sweep."""
    from churnml.plots.apart import StudyDrawer

    monkeypatch.setattr("os.cpu_count", lambda: 4)
    drawers, results = [], []
    start, result = StudyDrawer.start.__func__, StudyDrawer.result

    def started(cls):
        drawers.append(start(cls))
        return drawers[-1]

    def taken(self, timeout=300.0):
        results.append(result(self, timeout))
        return results[-1]

    monkeypatch.setattr(StudyDrawer, "start", classmethod(started))
    monkeypatch.setattr(StudyDrawer, "result", taken)
    summary = sweep(config=small_config("e2e-drawn-apart", n_trials=4, parallel=1))
    assert len(drawers) == 1 and len(results) == 1
    assert drawers[0]._process.poll() == 0  # it drew, and ended
    assert not drawers[0].folder.exists()
    logged = {item.path for item in connect().list_artifacts(summary.parent_run_id, "optuna")}
    assert logged == {f"optuna/{name}" for name in results[0].files}
    assert "optuna/optimization_history.png" in logged


def test_a_plotting_failure_only_warns(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no pictures today")

    monkeypatch.setattr(plot_steps, "log_plots", broken)
    state = sweep(config=small_config("e2e-no-plots", n_trials=2), return_state=True)
    assert state.is_completed()
    assert state.result().plots is None
    assert "plots not logged: RuntimeError: no pictures today" in caplog.text
