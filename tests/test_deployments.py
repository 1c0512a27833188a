"""Scheduled sweeps for real: `prefect server start`, a process pool, `prefect deploy --all` from
the repo's prefect.yaml, workers, resumed studies, overlap protection and webhooks.

Every process the test starts is stopped by it; the server and the receiver bind 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import yaml

from tests.servers import BIN, REPO, prefect_server, start, stop, webhook_receiver
from tracking import tags
from tracking.store import connect

pytestmark = pytest.mark.slow

DEPLOYMENT = "sweep/nightly-sweep"
EXPERIMENT = "deployed"


def small(n_trials: int, **data) -> str:
    config = {
        "data": {"synthetic_rows": 700, **data},
        "n_trials": n_trials,
        "parallel": 2,
        "cv_folds": 2,
        "experiment_name": EXPERIMENT,
        "model_name": "deployed-model",
        "search_space": {"n_estimators": {"low": 10, "high": 30}},
    }
    return json.dumps(config)


def prefect(env: dict[str, str], *args: str, check: bool = True) -> str:
    result = subprocess.run(
        [str(BIN / "prefect"), "--no-prompt", *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"prefect {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def trigger(env: dict[str, str], config: str) -> str:
    output = prefect(env, "deployment", "run", DEPLOYMENT, "--param", f"config={config}")
    return output.split("UUID:")[1].split()[0]


class Api:
    """Reads the test server through Prefect's client."""

    def __init__(self, env: dict[str, str]) -> None:
        self.url = env["PREFECT_API_URL"]

    def client(self):
        from prefect.client.orchestration import get_client
        from prefect.settings import PREFECT_API_URL, temporary_settings

        class _Scoped:
            def __enter__(inner):
                inner.settings = temporary_settings({PREFECT_API_URL: self.url})
                inner.settings.__enter__()
                inner.client = get_client(sync_client=True)
                return inner.client.__enter__()

            def __exit__(inner, *exc):
                inner.client.__exit__(*exc)
                inner.settings.__exit__(*exc)

        return _Scoped()

    def flow_run(self, run_id: str):
        with self.client() as client:
            return client.read_flow_run(run_id)

    def wait_final(self, run_ids: list[str], timeout: float) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [self.flow_run(run_id) for run_id in run_ids]
            if all(run.state and run.state.is_final() for run in found):
                return found
            time.sleep(1)
        raise TimeoutError(f"runs not final after {timeout} s: {[r.state for r in found]}")

    def artifacts(self, run_id: str) -> dict[str, object]:
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

        with self.client() as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
        return {artifact.key: artifact for artifact in found}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[dict[str, str]]:
    with prefect_server(tmp_path_factory.mktemp("prefect-home")) as env:
        prefect(env, "work-pool", "create", "sweeps", "--type", "process", "--overwrite")
        # prefect.yaml's team-sweep deployment has its own pool (tests/test_team.py runs it).
        prefect(env, "work-pool", "create", "sweeps-team", "--type", "process", "--overwrite")
        prefect(env, "deploy", "--all")
        yield env


@pytest.fixture
def worker(server, tmp_path) -> Iterator[None]:
    process = start(
        [str(BIN / "prefect"), "worker", "start", "--pool", "sweeps", "--limit", "4"],
        env=server,
        log=tmp_path / "worker.log",
    )
    yield
    stop(process)


def sweep_children(experiment_parent_run: str) -> list[int]:
    client = connect()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    found = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{experiment_parent_run}'",
    )
    return sorted(int(run.data.tags[tags.TAG_TRIAL]) for run in found)


def parent_run_of(flow_run_id: str):
    client = connect()
    experiment = client.get_experiment_by_name(EXPERIMENT)
    (parent,) = client.search_runs(
        [experiment.experiment_id],
        filter_string=(
            f"tags.`{tags.TAG_FLOW_RUN}` = '{flow_run_id}' and tags.`{tags.TAG_KIND}` = 'sweep'"
        ),
    )
    return parent


def test_schedule_matches_the_cron_in_prefect_yaml(server):
    declared = yaml.safe_load((REPO / "prefect.yaml").read_text())["definitions"]["schedules"]
    cron, zone = declared["nightly"]["cron"], declared["nightly"]["timezone"]
    api = Api(server)
    with api.client() as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
    (schedule,) = deployment.schedules
    assert schedule.active and schedule.schedule.cron == cron
    assert schedule.schedule.timezone == zone
    assert deployment.concurrency_options.collision_strategy == "ENQUEUE"
    assert deployment.global_concurrency_limit.limit == 1

    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterId,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
    )

    deadline = time.monotonic() + 60
    scheduled = []
    while time.monotonic() < deadline and len(scheduled) < 2:
        with api.client() as client:
            scheduled = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id])),
                flow_run_filter=FlowRunFilter(
                    state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Scheduled"]))
                ),
            )
        time.sleep(1)
    assert len(scheduled) >= 2, "the server scheduled no nightly runs"
    hour, minute = int(cron.split()[1]), int(cron.split()[0])
    for run in scheduled:
        local = run.expected_start_time.astimezone(ZoneInfo(zone))
        assert (local.hour, local.minute) == (hour, minute)
        assert run.expected_start_time > dt.datetime.now(dt.UTC)


def test_bad_parameters_are_refused_naming_the_key(server):
    output = prefect(
        server, "deployment", "run", DEPLOYMENT, "--param", 'config={"paralel": 2}', check=False
    )
    assert "paralel" in output


def test_triggered_runs_complete_resume_the_study_never_overlap_and_notify(server, worker):
    api = Api(server)
    with webhook_receiver() as receiver:
        subprocess.run(
            [str(BIN / "sweepflow"), "notifications", "--webhook-url", receiver.url],
            env=server,
            check=True,
            capture_output=True,
            timeout=120,
        )
        first_id = trigger(server, small(3))
        (first,) = api.wait_final([first_id], timeout=240)
        assert first.state.is_completed(), first.state
        parent = parent_run_of(first_id)
        assert parent.info.status == "FINISHED"
        assert sweep_children(parent.info.run_id) == [0, 1, 2]
        version = connect().get_model_version("deployed-model", "1")
        assert set(version.aliases) == {"champion", "challenger"}
        artifacts = api.artifacts(first_id)
        assert {"sweep-summary", "sweep-leaderboard", "study-history", "mlflow-sweep-run"} <= set(
            artifacts
        )
        # The history names the deployment's active schedule.
        assert "0 2 * * * (Europe/London)" in artifacts["study-history"].data
        receiver.wait_for(lambda p: p.get("subject") == "new champion", timeout=90)

        # Two runs of the same sweep triggered together, plus one that must fail.
        second_id, third_id = trigger(server, small(2)), trigger(server, small(2))
        broken_id = trigger(server, small(1, path=str(Path("/nonexistent/data.csv"))))
        second, third, broken = api.wait_final([second_id, third_id, broken_id], timeout=400)
        assert second.state.is_completed() and third.state.is_completed()
        assert broken.state.is_failed()
        receiver.wait_for(
            lambda p: p.get("subject") == "sweep failed" and broken.name in p.get("body", ""),
            timeout=90,
        )

    # The concurrency limit kept them apart: one ended before the other started.
    earlier, later = sorted([second, third], key=lambda run: run.start_time)
    assert earlier.end_time <= later.start_time
    # Both resumed the first run's study: trial numbers continue, none repeats.
    numbers = sweep_children(parent_run_of(str(earlier.id)).info.run_id)
    numbers += sweep_children(parent_run_of(str(later.id)).info.run_id)
    assert sorted(numbers) == [3, 4, 5, 6]
    study_tags = {parent_run_of(str(r.id)).data.tags[tags.TAG_STUDY] for r in (second, third)}
    assert study_tags == {parent.data.tags[tags.TAG_STUDY]}
