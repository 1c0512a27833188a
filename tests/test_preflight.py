"""The preflight refuses unsafe combinations of backends, one test per refusal, and shows the
backends it lets through with their credentials masked."""

from __future__ import annotations

from pathlib import Path

import pytest

import studies
from churnml.config import ConfigError, SweepConfig
from flows import preflight, runners
from tests.cli_checks import run
from tracking.store import TrackingTarget

SECRET = "pa55word"
POSTGRES = f"postgresql+psycopg://alice:{SECRET}@db.example:5432/optuna"
MLFLOW_SERVER = "http://mlflow.example:5000"
JOURNAL = Path("/work/mlruns/optuna.journal")


def target(tracking: str = MLFLOW_SERVER, registry: str | None = None) -> TrackingTarget:
    return TrackingTarget(
        tracking_uri=tracking, registry_uri=registry or tracking, artifact_root=None
    )


def check(
    config: SweepConfig,
    *,
    optuna: str | None = POSTGRES,
    tracking=None,
    prefect: str | None = "http://prefect.example:4200/api",
):
    return preflight.check(
        config,
        optuna_url=optuna,
        journal=JOURNAL,
        target=tracking or target(),
        prefect_api=prefect,
    )


DASK = SweepConfig(task_runner="dask", dask_workers=2)
DASK_REMOTE = SweepConfig(task_runner="dask", dask_address="tcp://scheduler.example:8786")
TEAM = SweepConfig(team=True)


def test_dask_with_a_sqlite_study_is_refused():
    with pytest.raises(preflight.UnsafeSetupError, match=r"SQLite.*Dask workers are other"):
        check(DASK, optuna="sqlite:///optuna.db")


def test_a_team_sweep_with_a_sqlite_study_is_refused():
    with pytest.raises(preflight.UnsafeSetupError, match=r"SQLite.*several sweep processes"):
        check(TEAM, optuna="sqlite:////shared/optuna.db")


def test_a_study_in_memory_is_refused():
    with pytest.raises(preflight.UnsafeSetupError, match="one process's memory"):
        check(SweepConfig(), optuna="sqlite:///:memory:")


def test_a_remote_dask_cluster_with_the_local_journal_is_refused():
    with pytest.raises(preflight.UnsafeSetupError, match=r"journal file.*Dask cluster at tcp://"):
        check(DASK_REMOTE, optuna=None)


def test_a_team_sweep_with_the_local_journal_is_refused():
    with pytest.raises(preflight.UnsafeSetupError, match="other machines cannot see"):
        check(TEAM, optuna=None)


def test_a_remote_dask_cluster_with_a_local_sqlite_mlflow_store_is_refused():
    local = target("sqlite:////work/mlruns/mlflow.db")
    with pytest.raises(preflight.UnsafeSetupError, match=r"MLFLOW_TRACKING_URI.*SQLite file"):
        check(DASK_REMOTE, tracking=local)


def test_a_team_sweep_with_a_local_sqlite_model_registry_is_refused():
    local = target(MLFLOW_SERVER, registry="sqlite:////work/mlruns/registry.db")
    with pytest.raises(preflight.UnsafeSetupError, match=r"MLFLOW_REGISTRY_URI.*SQLite file"):
        check(TEAM, tracking=local)


def test_a_team_sweep_tracking_straight_into_a_database_is_refused():
    database = target(f"postgresql+psycopg://bob:{SECRET}@db.example/mlflow")
    # Refusals are config errors: the command line prints them as one line, exit code 2.
    with pytest.raises(ConfigError, match="its own disk") as refused:
        check(TEAM, tracking=database)
    assert SECRET not in str(refused.value)


@pytest.mark.parametrize(
    ("name", "optuna", "tracking", "prefect"),
    [
        ("OPTUNA_STORAGE", "postgresql+psycopg://u@127.0.0.1/optuna", MLFLOW_SERVER, None),
        ("MLFLOW_TRACKING_URI", POSTGRES, "http://localhost:5000", None),
        ("PREFECT_API_URL", POSTGRES, MLFLOW_SERVER, "http://127.0.0.1:4200/api"),
        ("PREFECT_API_URL", POSTGRES, MLFLOW_SERVER, "unset"),  # a temporary local server
    ],
)
def test_a_remote_dask_cluster_with_a_backend_on_loopback_is_refused(
    name, optuna, tracking, prefect
):
    with pytest.raises(preflight.UnsafeSetupError, match=f"{name} is .*workers cannot reach"):
        check(
            DASK_REMOTE,
            optuna=optuna,
            tracking=target(tracking),
            prefect=None if prefect == "unset" else prefect or "http://prefect.example/api",
        )


def test_dask_without_the_dask_packages_is_refused(monkeypatch):
    monkeypatch.setattr(preflight, "dask_available", lambda: False)
    with pytest.raises(preflight.UnsafeSetupError, match=r"sweepflow\[dask\]"):
        check(DASK)


@pytest.mark.parametrize(
    ("config", "optuna", "tracking"),
    [
        (SweepConfig(), None, "sqlite:////work/mlruns/mlflow.db"),  # the local default
        (SweepConfig(), "sqlite:///optuna.db", "sqlite:////work/mlruns/mlflow.db"),
        (DASK, None, "sqlite:////work/mlruns/mlflow.db"),  # one machine: file locks hold
        (DASK, POSTGRES, MLFLOW_SERVER),
        (DASK_REMOTE, POSTGRES, f"postgresql+psycopg://bob:{SECRET}@db.example/mlflow"),
        (TEAM, POSTGRES, MLFLOW_SERVER),
        # A cluster on this machine reaches this machine's loopback addresses.
        (
            SweepConfig(task_runner="dask", dask_address="tcp://127.0.0.1:8786"),
            POSTGRES,
            "http://127.0.0.1:5000",
        ),
    ],
)
def test_safe_combinations_pass(config, optuna, tracking):
    assert check(config, optuna=optuna, tracking=target(tracking)).lines()


def test_the_backends_are_described_with_credentials_masked():
    backends = check(
        DASK_REMOTE,
        tracking=target(f"https://carol:{SECRET}@mlflow.example/"),
        prefect="http://prefect.example:4200/api",
    )
    text = "\n".join(backends.lines())
    assert SECRET not in text
    assert "postgresql+psycopg://alice:***@db.example:5432/optuna" in text
    assert "https://carol:***@mlflow.example/" in text
    assert "Prefect API: http://prefect.example:4200/api" in text
    assert "Dask cluster at tcp://scheduler.example:8786" in text
    local = check(SweepConfig(), optuna=None, prefect=None).lines()
    assert f"journal file {JOURNAL}" in local[0]
    assert "temporary local server" in local[3] and "thread pool" in local[4]


def test_dask_settings_need_the_dask_runner():
    with pytest.raises(ValueError, match="dask_address needs task_runner: dask"):
        SweepConfig(dask_address="tcp://x:8786")
    with pytest.raises(ValueError, match="is yours to size"):
        SweepConfig(task_runner="dask", dask_address="tcp://x:8786", dask_workers=2)


def test_the_trial_runner_follows_the_config():
    assert runners.trial_runner(SweepConfig()) is None
    remote = runners.trial_runner(DASK_REMOTE)
    assert remote.address == "tcp://scheduler.example:8786"
    local = runners.trial_runner(DASK)
    assert local.cluster_kwargs["n_workers"] == 2
    assert local.cluster_kwargs["processes"] is True


def test_heartbeat_settings_must_be_whole_seconds(monkeypatch):
    monkeypatch.setenv("SWEEPFLOW_HEARTBEAT_SECONDS", "0.5")
    with pytest.raises(ConfigError, match="SWEEPFLOW_HEARTBEAT_SECONDS"):
        studies.heartbeat_seconds()
    monkeypatch.delenv("SWEEPFLOW_HEARTBEAT_SECONDS")  # the environment is read as a whole
    monkeypatch.setenv("SWEEPFLOW_GRACE_SECONDS", "7")
    assert studies.grace_seconds() == 7


def test_the_command_line_refuses_before_prefect_starts_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path / 'optuna.db'}")
    result = run("sweep", "--task-runner", "dask", "--rows", "300", "--trials", "2")
    assert result.exit_code == 2
    (line,) = result.output.strip().splitlines()
    assert line.startswith("error: OPTUNA_STORAGE=sqlite:///") and "not safe" in line


def test_the_command_line_checks_the_backends_before_it_reads_any_data(tmp_path, monkeypatch):
    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path / 'optuna.db'}")
    data = tmp_path / "customers.csv"
    data.write_text("not even a header\n")  # read first, this would be the error
    result = run("sweep", "--task-runner", "dask", "--data", str(data), "--trials", "2")
    assert result.exit_code == 2, result.output
    assert "OPTUNA_STORAGE=sqlite:///" in result.output and "customers.csv" not in result.output


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_the_flow_refuses_at_its_start_before_any_run_exists(tmp_path, monkeypatch):
    from flows.sweep.flow import sweep
    from tracking.store import connect

    monkeypatch.setenv("OPTUNA_STORAGE", f"sqlite:///{tmp_path / 'optuna.db'}")
    config = SweepConfig(
        task_runner="dask", experiment_name="refused-at-start", data={"synthetic_rows": 300}
    )
    with pytest.raises(preflight.UnsafeSetupError, match="not safe for several writer"):
        sweep(config=config)
    assert connect().get_experiment_by_name("refused-at-start") is None
    assert not (tmp_path / "optuna.db").exists()
