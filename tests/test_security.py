"""Security promises: no pickle on our load path, refused SQLite sharing, no secrets shown."""

from __future__ import annotations

import os
import pickle

import mlflow.sklearn
import optuna
import pytest
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LogisticRegression

import studies
import tracking.store  # noqa: F401 - importing it switches MLflow's pickle loading off
from churnml.config import ConfigError, DataConfig, SweepConfig
from churnml.data import validate_frame
from churnml.model import build_pipeline, fit_quietly
from churnml.synthetic import generate_bank_churn
from tracking.model_files import load_model_file, save_model_file
from tracking.store import connect, mask_uri

SECRET = "s3cretpw"


def test_mlflow_pickle_deserialization_is_off_for_our_processes(tmp_path):
    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    mlflow.sklearn.save_model(model, tmp_path / "pickled", serialization_format="cloudpickle")
    with pytest.raises(MlflowException, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        mlflow.sklearn.load_model(str(tmp_path / "pickled"))


def test_our_model_loader_never_unpickles(tmp_path, monkeypatch):
    clean = validate_frame(generate_bank_churn(300, seed=2), source="test", cv_folds=3)
    params = {"k": 4, "n_estimators": 5, "max_depth": 3}
    model = fit_quietly(
        build_pipeline(params, seed=0), clean.drop(columns="Exited"), clean["Exited"]
    )
    path = tmp_path / "model.skops"
    digest = save_model_file(model, path)

    def forbidden(*args, **kwargs):
        raise AssertionError("pickle was used to load a model file")

    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    assert load_model_file(path, expected_sha256=digest).predict(clean.head(3)).shape == (3,)


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        (
            f"postgresql+psycopg://alice:{SECRET}@db:5432/optuna",
            "postgresql+psycopg://alice:***@db:5432/optuna",
        ),
        (f"https://bob:{SECRET}@mlflow.example.com/", "https://bob:***@mlflow.example.com/"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
        ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ],
)
def test_uris_are_shown_with_credentials_masked(uri, shown):
    assert mask_uri(uri) == shown


def test_a_second_writer_process_on_a_sqlite_study_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path / 'optuna.db'}")
    config = SweepConfig(experiment_name="sqlite-shared")
    study, _ = studies.open_sweep_study(
        config, "digest", sweep_id="first", previous_study=None, champion=None
    )
    # Pretend "first" belongs to another live process (our parent is alive).
    record = dict(study.user_attrs[studies.ATTR_SWEEP_PREFIX + "first"], pid=os.getppid())
    study.set_user_attr(studies.ATTR_SWEEP_PREFIX + "first", record)
    with pytest.raises(ConfigError, match="not safe for several writer processes"):
        studies.open_sweep_study(
            config, "digest", sweep_id="second", previous_study=None, champion=None
        )


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_no_secret_reaches_logs_mlflow_or_prefect(postgres_storage, monkeypatch, caplog):
    from flows.sweep.flow import sweep
    from tests.test_sweep_flow import read_artifacts

    monkeypatch.setenv("OPTUNA_STORAGE", postgres_storage)
    config = SweepConfig.model_validate(
        {
            "data": DataConfig(synthetic_rows=600),
            "n_trials": 2,
            "cv_folds": 2,
            "experiment_name": "secrets",
            "model_name": "secrets-model",
            "search_space": {"n_estimators": {"low": 10, "high": 20}},
        }
    )
    with caplog.at_level("DEBUG"):
        summary = sweep(config=config)
    storage = optuna.storages.RDBStorage(postgres_storage)
    assert optuna.load_study(study_name=summary.study_name, storage=storage).trials

    assert SECRET not in caplog.text
    assert SECRET not in summary.model_dump_json()
    client = connect()
    for run in client.search_runs([summary.experiment_id]):
        assert SECRET not in str(run.data.params) + str(run.data.tags)
    for artifact in read_artifacts(summary.flow_run_id).values():
        assert SECRET not in str(artifact.data) + str(artifact.description)
