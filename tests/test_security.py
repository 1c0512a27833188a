"""Security promises: no pickle on our load path, refused SQLite sharing, no secrets shown."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import mlflow.sklearn
import optuna
import pytest
from mlflow.exceptions import MlflowException
from sklearn.linear_model import LogisticRegression

import studies
from churnml.config import ConfigError, DataConfig, SweepConfig
from churnml.data import validate_frame
from churnml.model import build_pipeline, fit_quietly
from churnml.synthetic import generate_bank_churn
from tracking.model_files import load_model_file, save_model_file
from tracking.store import connect, mask_uri

SECRET = "s3cretpw"


def test_mlflow_pickle_deserialization_is_off_for_our_processes(tmp_path):
    connect()  # what every command and task does before it talks to MLflow
    assert os.environ["MLFLOW_ALLOW_PICKLE_DESERIALIZATION"] == "false"
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    mlflow.sklearn.save_model(model, tmp_path / "pickled", serialization_format="cloudpickle")
    with pytest.raises(MlflowException, match="MLFLOW_ALLOW_PICKLE_DESERIALIZATION"):
        mlflow.sklearn.load_model(str(tmp_path / "pickled"))


#: Run in a fresh interpreter whose environment allows pickles: our process start, then a
#: pickled MLflow model. Prints what happened.
UNPICKLE_ATTEMPT = """
import sys
{start}
import mlflow.sklearn
try:
    mlflow.sklearn.load_model(sys.argv[1])
except Exception as error:
    print("refused:", type(error).__name__, error)
else:
    print("UNPICKLED")
"""

PROCESS_STARTS = {
    # The command line's start, as any `sweepflow` command runs it.
    "command line": "from cli.common import process_defaults; process_defaults()",
    # A flow run in a Prefect worker: its tasks make a tracking client first.
    "flow run in a worker": "from tracking.store import connect; connect()",
}


@pytest.fixture
def pickled_model(tmp_path):
    model = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    mlflow.sklearn.save_model(model, tmp_path / "pickled", serialization_format="cloudpickle")
    return tmp_path / "pickled"


@pytest.mark.parametrize("start", PROCESS_STARTS.values(), ids=PROCESS_STARTS.keys())
def test_no_unpickling_even_when_the_environment_allows_it(pickled_model, tmp_path, start):
    env = {
        **os.environ,
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",
        "SWEEPFLOW_MLRUNS": str(tmp_path / "mlruns"),
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    done = subprocess.run(
        [sys.executable, "-c", UNPICKLE_ATTEMPT.format(start=start), str(pickled_model)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parents[1],
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "refused: MlflowException" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "MLFLOW_ALLOW_PICKLE_DESERIALIZATION" in done.stdout


def _trial_in_a_dask_worker(path: str) -> str:
    """What a Dask worker does for a trial (a tracking client first), then a pickled model."""
    import mlflow.sklearn

    from tracking.store import client_for, resolve_target

    client_for(resolve_target())
    try:
        mlflow.sklearn.load_model(path)
    except Exception as error:
        return f"refused: {type(error).__name__} {error}"
    return "UNPICKLED"


@pytest.mark.slow
def test_no_unpickling_in_dask_worker_processes(pickled_model, monkeypatch):
    from distributed import Client, LocalCluster

    # Worker processes inherit the environment: it allows pickles.
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    with (
        LocalCluster(
            n_workers=1, processes=True, threads_per_worker=1, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        outcome = client.submit(_trial_in_a_dask_worker, str(pickled_model)).result(timeout=120)
    assert outcome.startswith("refused: MlflowException"), outcome


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
