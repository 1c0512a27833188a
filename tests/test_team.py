"""Running as a team, on real engines: a Prefect server and an MLflow server on PostgreSQL, a
study on PostgreSQL, workers on one pool, a Dask LocalCluster, and a worker killed mid-trial.

One Prefect server and one MLflow server (each on a fresh PostgreSQL database) serve the whole
module; each test gets a fresh PostgreSQL database for its study. Every process a test starts,
it stops; every database, it drops.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

import studies
from tests.servers import (
    BIN,
    POSTGRES_PASSWORD,
    PostgresUnavailableError,
    launch_mlflow_server,
    launch_prefect_server,
    missing_service,
    postgres_database,
    postgres_url,
    running,
    start,
    stop,
)
from tests.study_checks import study_budget
from tests.test_deployments import Api as DeploymentsApi
from tests.test_deployments import prefect
from tracking import tags

pytestmark = pytest.mark.slow

DEPLOYMENT = "sweep/team-sweep"
POOL = "sweeps-team"


class Api(DeploymentsApi):
    """The deployment tests' reader of the Prefect server, plus a flow run's logs."""

    def log_text(self, flow_run_id: str) -> str:
        from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

        with self.client() as client:
            found = client.read_logs(
                LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200
            )
        return "\n".join(log.message for log in found)

    def failures(self, runs: list) -> str:
        """Each unfinished run's state and logs: what a red CI needs to say why."""
        return "\n\n".join(
            f"{run.name}: {run.state!r}\n{self.log_text(str(run.id))}"
            for run in runs
            if not run.state.is_completed()
        )

    def trigger(self, config: str) -> str:
        """Start a run of the team deployment with ``config`` (what ``make team-run`` does)."""
        with self.client() as client:
            deployment = client.read_deployment_by_name(DEPLOYMENT)
            run = client.create_flow_run_from_deployment(
                deployment.id, parameters={"config": json.loads(config)}
            )
        return str(run.id)


@dataclass(frozen=True)
class Services:
    """The module's servers: the env that talks to Prefect, and MLflow's tracking URI."""

    prefect_env: dict[str, str]
    mlflow_uri: str

    def worker_env(self, optuna_storage: str, mlruns: Path, **extra: str) -> dict[str, str]:
        """What a team worker is started with: the shared backends, from its environment."""
        env = {
            key: value
            for key, value in self.prefect_env.items()
            if key != "PREFECT_API_DATABASE_CONNECTION_URL"  # the server's, not the workers'
        }
        return env | {
            "OPTUNA_STORAGE": optuna_storage,
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            "SWEEPFLOW_MLRUNS": str(mlruns),
            "PREFECT_WORKER_QUERY_SECONDS": "1",
            **extra,
        }


@pytest.fixture(scope="module")
def services(tmp_path_factory) -> Iterator[Services]:
    home = tmp_path_factory.mktemp("team")
    with ExitStack() as stack:
        try:
            prefect_db = stack.enter_context(postgres_database("prefect"))
            mlflow_db = stack.enter_context(postgres_database("mlflow"))
        except PostgresUnavailableError as error:
            missing_service(str(error))
        prefect_server = launch_prefect_server(
            home / "prefect", database_url=postgres_url(prefect_db, driver="asyncpg")
        )
        mlflow_server = launch_mlflow_server(
            home / "mlflow", backend_store_uri=postgres_url(mlflow_db, password=False)
        )
        stack.enter_context(running(prefect_server, mlflow_server, timeout=180))
        env = prefect_server.env
        prefect(env, "work-pool", "create", POOL, "--type", "process", "--overwrite")
        prefect(env, "deploy", "--name", "team-sweep")
        yield Services(prefect_env=env, mlflow_uri=mlflow_server.url)


@contextmanager
def workers(env: dict[str, str], count: int, logs: Path) -> Iterator[list[subprocess.Popen]]:
    """``count`` workers on the team pool, one flow run at a time each."""
    started = [
        start(
            [str(BIN / "prefect"), "worker", "start", "--pool", POOL, "--limit", "1"],
            env=env,
            log=logs / f"worker-{number}.log",
        )
        for number in range(count)
    ]
    try:
        yield started
    finally:
        for process in started:
            stop(process)


def team_config(experiment: str, n_trials: int, *, estimators: tuple[int, int] = (10, 30)):
    """One run's config: tiny built-in data; runs with equal settings share one study."""
    return json.dumps(
        {
            "data": {"synthetic_rows": 600, "synthetic_seed": 3},
            "n_trials": n_trials,
            "parallel": 2,
            "cv_folds": 2,
            "pruner": "none",
            "experiment_name": experiment,
            "model_name": f"{experiment}-model",
            "search_space": {"n_estimators": {"low": estimators[0], "high": estimators[1]}},
            "team": True,
        }
    )


def runs_of(client: MlflowClient, experiment: str, kind: str, flow_run: str | None = None):
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    query = f"tags.`{tags.TAG_KIND}` = '{kind}'"
    if flow_run:
        query += f" and tags.`{tags.TAG_FLOW_RUN}` = '{flow_run}'"
    return client.search_runs([found.experiment_id], filter_string=query)


def study_of(client: MlflowClient, experiment: str, storage: str) -> optuna.Study:
    (name,) = {run.data.tags[tags.TAG_STUDY] for run in runs_of(client, experiment, "sweep")}
    return optuna.load_study(study_name=name, storage=storage)


def test_two_workers_on_one_pool_share_a_postgres_study_and_meet_its_budget(
    services, postgres_storage, tmp_path
):
    api = Api(services.prefect_env)
    env = services.worker_env(postgres_storage, tmp_path / "mlruns")
    with workers(env, 2, tmp_path):
        ids = [
            api.trigger(team_config("team", 3)),
            api.trigger(team_config("team", 2)),
        ]
        finished = api.wait_final(ids, timeout=360)
    assert all(run.state.is_completed() for run in finished), api.failures(finished)
    earlier, later = sorted(finished, key=lambda run: run.start_time)
    assert later.start_time < earlier.end_time, "the two runs did not run at once"

    client = MlflowClient(services.mlflow_uri)
    parents = runs_of(client, "team", "sweep")
    assert sorted(run.info.status for run in parents) == ["FINISHED", "FINISHED"]
    study = study_of(client, "team", postgres_storage)
    assert study_budget(study) == (5, 5)
    numbers = [t.number for t in study.trials]
    assert sorted(numbers) == [0, 1, 2, 3, 4]
    assert all(t.state.name == "COMPLETE" for t in study.trials)

    children = runs_of(client, "team", "trial")
    assert sorted(int(run.data.tags[tags.TAG_TRIAL]) for run in children) == numbers
    assert all(run.info.status == "FINISHED" for run in children)
    per_sweep = sorted(
        sum(1 for c in children if c.data.tags["mlflow.parentRunId"] == p.info.run_id)
        for p in parents
    )
    assert per_sweep == [2, 3]


def test_a_sweep_on_a_dask_local_cluster_runs_its_trials_on_the_workers(
    services, postgres_storage, tmp_path
):
    # The command a user types (README: "Trials on a Dask cluster"), in its own process: a flow
    # run in the test process would leave Prefect's log and event workers bound to this
    # module's server, and the session's test harness would hang draining them.
    config_file = tmp_path / "team-dask.yaml"
    config_file.write_text(team_config("team-dask", 4))  # JSON is YAML
    env = services.worker_env(postgres_storage, tmp_path / "mlruns")
    command = [str(BIN / "sweepflow"), "sweep", "--config", str(config_file)]
    command += ["--task-runner", "dask", "--dask-workers", "2"]
    process = subprocess.Popen(
        command, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    output, _ = process.communicate(timeout=300)
    assert process.returncode == 0, output.decode()

    client = MlflowClient(services.mlflow_uri)
    children = runs_of(client, "team-dask", "trial")
    assert len(children) == 4
    assert all(run.info.status == "FINISHED" for run in children)
    workers_seen = {run.data.tags[tags.TAG_WORKER] for run in children}
    assert all(" dask tcp://" in worker for worker in workers_seen), workers_seen
    pids = {int(worker.split()[0].rsplit(":", 1)[1]) for worker in workers_seen}
    assert process.pid not in pids, "a trial ran in the flow's own process"
    assert len(pids) == 2, f"expected both Dask workers to run trials: {workers_seen}"
    assert study_budget(study_of(client, "team-dask", postgres_storage)) == (4, 4)
    # The preflight said where everything is, without the database password.
    (parent,) = runs_of(client, "team-dask", "sweep")
    logs = Api(services.prefect_env).log_text(parent.data.tags[tags.TAG_FLOW_RUN])
    assert "trials run on: Dask LocalCluster started for this sweep (2 workers)" in logs
    assert "Optuna study storage: postgresql+psycopg://postgres:***@127.0.0.1" in logs
    assert f"MLflow tracking: {services.mlflow_uri}" in logs
    assert POSTGRES_PASSWORD not in logs


def test_a_worker_killed_mid_trial_its_trials_are_failed_by_the_heartbeat_and_retried(
    services, postgres_storage, tmp_path
):
    experiment = "team-crash"
    api = Api(services.prefect_env)
    client = MlflowClient(services.mlflow_uri)
    # Heartbeats every second, stale after 5 s: the test need not wait the default 90 s.
    env = services.worker_env(
        postgres_storage,
        tmp_path / "mlruns",
        SWEEPFLOW_HEARTBEAT_SECONDS="1",
        SWEEPFLOW_GRACE_SECONDS="5",
    )
    slower = (80, 120)
    with workers(env, 2, tmp_path) as started:
        victim_id = api.trigger(team_config(experiment, 3, estimators=slower))
        survivor_id = api.trigger(team_config(experiment, 8, estimators=slower))
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            trials = runs_of(client, experiment, "trial", flow_run=victim_id)
            statuses = [run.info.status for run in trials]
            if "FINISHED" in statuses and "RUNNING" in statuses:
                break
            time.sleep(0.2)
        else:
            pytest.fail("never saw the victim with a finished and a running trial at once")
        host_pid = trials[0].data.tags[tags.TAG_WORKER].split()[0]
        flow_pid = int(host_pid.rsplit(":", 1)[1])
        stat = Path(f"/proc/{flow_pid}/stat").read_text()
        worker_pid = int(stat.rpartition(")")[2].split()[1])
        assert worker_pid in {process.pid for process in started}, "not one of our workers"
        # The machine goes down: the flow run (its own process group) and its worker, mid-trial.
        os.killpg(os.getpgid(flow_pid), signal.SIGKILL)
        os.killpg(worker_pid, signal.SIGKILL)

        study = study_of(client, experiment, postgres_storage)
        zombies = [
            t.number
            for t in study.trials
            if t.state.name == "RUNNING" and t.user_attrs.get(studies.ATTR_FLOW_RUN) == victim_id
        ]
        assert zombies, "the kill left no running trial"
        (survivor,) = api.wait_final([survivor_id], timeout=360)
    assert survivor.state.is_completed(), survivor.state

    study = study_of(client, experiment, postgres_storage)
    trials = {t.number: t for t in study.trials}
    assert not [t for t in study.trials if t.state.name in {"RUNNING", "WAITING"}]
    for number in zombies:
        failed = trials[number]
        assert failed.state.name == "FAIL"
        # Failed by the heartbeat, not by our reaper (which marks what it fails).
        assert studies.ATTR_REAPED not in failed.user_attrs
        (retry,) = [t for t in study.trials if t.user_attrs.get(studies.ATTR_RETRY_OF) == number]
        assert retry.system_attrs[studies.OPTUNA_FAILED_TRIAL] == number
        assert retry.state.name == "COMPLETE"
        assert retry.params == failed.params
    assert study_budget(study) == (11, 11)

    children = runs_of(client, experiment, "trial")
    numbers = [int(run.data.tags[tags.TAG_TRIAL]) for run in children]
    assert sorted(numbers) == sorted(trials), "every trial has exactly one child run"
    assert not [run for run in children if run.info.status == "RUNNING"]
    for run in children:
        if int(run.data.tags[tags.TAG_TRIAL]) in zombies:
            assert run.info.status == "KILLED"
    parents = {
        run.data.tags[tags.TAG_FLOW_RUN]: run for run in runs_of(client, experiment, "sweep")
    }
    assert parents[victim_id].info.status == "KILLED"
    story = " ".join(
        parents[survivor_id].data.tags.get(tag, "")
        for tag in ("sweepflow.study_note", "sweepflow.recovered")
    )
    assert "recovered 1 crashed sweep" in story
    assert "heartbeat went stale" in story
