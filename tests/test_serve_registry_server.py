"""The champion over a real ``mlflow server``: ``mlflow models serve`` and ``sweepflow serve``.

An ``mlflow server`` (SQLite store, artifacts in a temp folder) holds two versions registered by
our registration code over HTTP. ``mlflow models serve --env-manager local`` answers JSON
records of both real files with the probabilities our own scoring gives; ``sweepflow serve``
follows ``champion`` while the promotion flow behind ``sweepflow promote`` and ``rollback``
promotes v2 and rolls back to v1, with requests running throughout.
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

from churnml.promotion import PROMOTED, ROLLED_BACK, PromoteConfig
from churnml.schema import DEFAULT_TARGET, to_features
from churnml.scoring import predict_churn
from churnml.synthetic import generate_bank_churn
from tests.registered import Traffic, fit_small_model, register, sweepflow_serve
from tests.servers import BIN, free_port, launch_mlflow_server, running, start, stop, wait_for_http
from tracking import versions
from tracking.store import connect

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
        # v1 learns from shuffled labels, so the promotion of v2 is certain on any seed.
        noise = generate_bank_churn(600, seed=1)
        noise[DEFAULT_TARGET] = noise[DEFAULT_TARGET].sample(frac=1, random_state=0).to_numpy()
        models = {"1": fit_small_model(noise, seed=1), "2": fit_small_model(seed=2)}
        for number, model in models.items():
            assert register(client, MODEL, model).version == number
        yield server.url, models
    connect()  # MLflow's global URIs back to the local test store


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


@pytest.mark.usefixtures("prefect_harness")
def test_sweepflow_serve_follows_promote_and_rollback_on_the_server(registry_server, tmp_path):
    from flows.promote.flow import promote

    url, _ = registry_server
    evaluation = tmp_path / "evaluation.csv"
    generate_bank_churn(400, seed=30).to_csv(evaluation, index=False)
    env = {**os.environ, "MLFLOW_TRACKING_URI": url, "MLFLOW_REGISTRY_URI": url}
    log = tmp_path / "serve.log"
    with sweepflow_serve(log, "--model-name", MODEL, "--poll-seconds", "0.5", env=env) as served:
        assert httpx.get(f"{served}/health").json()["live_version"] == "1"
        with Traffic(served) as traffic:
            promoted = promote(config=PromoteConfig(model_name=MODEL, data=evaluation))
            assert promoted.outcome == PROMOTED, promoted.reason
            traffic.wait_for_version("2", timeout=30)
            back = promote(config=PromoteConfig(model_name=MODEL, to_version=1, data=evaluation))
            assert back.outcome == ROLLED_BACK, back.reason
            traffic.wait_for_version("1", timeout=30)
    assert {status for _, status, _ in traffic.seen} == {200}
    # Each client sees the swaps in order (see test_serve.py: clients' answers interleave).
    changes = traffic.version_changes()
    assert all(seen in "121" for seen in changes) and "121" in changes, changes
    assert versions.require_alias(connect(), MODEL, "champion").version == "1"
