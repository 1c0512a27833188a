"""The champion over a real ``mlflow server``: ``mlflow models serve`` and ``sweepflow serve``.

An ``mlflow server`` (SQLite store, artifacts in a temp folder) holds two versions registered by
our registration code over HTTP. ``mlflow models serve --env-manager local`` answers JSON
records of both real files with the probabilities our own scoring gives; ``sweepflow serve``
follows ``champion`` while promotion's own recording code (``tracking.promotion``) promotes
and rolls back, with requests running throughout.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator

import httpx
import numpy as np
import pandas as pd
import pytest

from churnml.promotion import PROMOTED, ROLLED_BACK, Decision
from churnml.schema import to_features
from churnml.scoring import predict_churn
from tests.registered import Traffic, fit_small_model, register, sweepflow_serve
from tests.servers import BIN, free_port, launch_mlflow_server, running, start, stop, wait_for_http
from tracking import promotion, versions
from tracking.store import connect, resolve_target

pytestmark = pytest.mark.slow

MODEL = "served-over-http"


@pytest.fixture(scope="module")
def registry_server(tmp_path_factory) -> Iterator[tuple[str, dict]]:
    """An ``mlflow server`` with v1 (champion) and v2 of MODEL; MLflow pointed at it."""
    home = tmp_path_factory.mktemp("registry-server")
    server = launch_mlflow_server(home, backend_store_uri=f"sqlite:///{home / 'mlflow.db'}")
    with running(server), pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", server.url)
        patch.setenv("MLFLOW_REGISTRY_URI", server.url)
        client = connect()
        models = {}
        for number in ("1", "2"):
            models[number] = fit_small_model(seed=int(number))
            assert register(client, MODEL, models[number]).version == number
        yield server.url, models
    connect()  # MLflow's global URIs back to the local test store


def decide(action: str, before: str, after: str) -> Decision:
    return Decision(
        action=action,
        outcome=PROMOTED if action == "promote" else ROLLED_BACK,
        model_name=MODEL,
        candidate=after,
        champion_before=before,
        champion_after=after,
        metric="roc_auc",
        reason=f"test {action}",
        time=promotion.utc_now(),
    )


@contextlib.contextmanager
def mlflow_models_serve(url: str, log) -> Iterator[str]:
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": url,
        "MLFLOW_REGISTRY_URI": url,
    }
    command = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{MODEL}@champion",
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "-w", "1"]  # fmt: skip
    process = start(command, env=env, log=log)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/ping", timeout=120, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def test_mlflow_models_serve_answers_probabilities_on_both_real_files(
    registry_server, shared_data, tmp_path
):
    _, models = registry_server
    with mlflow_models_serve(registry_server[0], tmp_path / "models-serve.log") as url:
        for name in ("bank_churn_train.csv", "churn_modelling.csv"):
            frame = pd.read_csv(shared_data / name, nrows=500)
            body = {"dataframe_records": json.loads(frame.to_json(orient="records"))}
            answer = httpx.post(f"{url}/invocations", json=body, timeout=60)
            assert answer.status_code == 200, answer.text
            got = np.asarray(answer.json()["predictions"], dtype=float)
            expected = predict_churn(models["1"], to_features(frame, source=name))
            np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
        bad = httpx.post(
            f"{url}/invocations",
            json={"dataframe_records": [{**body["dataframe_records"][0], "Age": "old"}]},
        )
        assert bad.status_code == 400 and "'Age' must be numeric" in bad.text


def test_sweepflow_serve_follows_promote_and_rollback_on_the_server(registry_server, tmp_path):
    url, _ = registry_server
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_REGISTRY_URI": url}
    client = connect()
    target = resolve_target()
    log = tmp_path / "serve.log"
    with sweepflow_serve(log, "--model-name", MODEL, "--poll-seconds", "0.5", env=env) as served:
        assert httpx.get(f"{served}/health").json()["live_version"] == "1"
        with Traffic(served) as traffic:
            promotion.record_decision(client, target, decide("promote", "1", "2"))
            traffic.wait_for_version("2", timeout=30)
            promotion.record_decision(client, target, decide("rollback", "2", "1"))
            traffic.wait_for_version("1", timeout=30)
    assert {status for _, status, _ in traffic.seen} == {200}
    order = [v for _, _, v in sorted(traffic.seen)]
    assert [v for i, v in enumerate(order) if i == 0 or v != order[i - 1]] == ["1", "2", "1"]
    assert versions.require_alias(client, MODEL, "champion").version == "1"
