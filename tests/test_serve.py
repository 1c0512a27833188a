"""``sweepflow serve`` as a real uvicorn process on 127.0.0.1, over the test's SQLite registry.

Three versions are registered by our registration code; the service is started with
``python -m serving`` (the same function as ``sweepflow serve``) and called over HTTP while the
champion alias is moved by ``tracking.registry.set_alias``, the call promotion makes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from churnml.scoring import predict_churn
from tests.registered import Traffic, fit_small_model, records, register, sweepflow_serve
from tracking import registry, versions
from tracking.store import connect

MODEL = "serve-churn"
MAX_ROWS = 50
MAX_BODY = 64 * 1024


def artifact_file(name: str, version: str) -> Path:
    uri = connect().get_model_version_download_uri(name, version)
    return Path(uri.removeprefix("file://")) / "model.skops"


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Iterator[tuple[str, Path, dict[str, object]]]:
    """v1 (champion), v2 and v3 of MODEL, and the service following @champion."""
    client = connect()
    models = {str(seed + 1): fit_small_model(seed=seed) for seed in range(3)}
    for number, model in models.items():
        assert register(client, MODEL, model).version == number
    registry.set_alias(client, MODEL, "champion", "1")
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    args = ["--model-name", MODEL, "--poll-seconds", "0.3", "--max-rows", str(MAX_ROWS)]
    with sweepflow_serve(log, *args, "--max-body-bytes", str(MAX_BODY)) as url:
        yield url, log, models
    registry.set_alias(client, MODEL, "champion", "1")


def test_json_records_get_one_probability_each_with_the_version(service):
    url, _, models = service
    rows = records(7)
    answer = httpx.post(f"{url}/predict", json=rows).json()
    assert answer["model_version"] == "1" and answer["rows"] == 7
    frame = pd.DataFrame(rows)
    from churnml.schema import to_features

    expected = predict_churn(models["1"], to_features(frame, source="t"))
    np.testing.assert_allclose(answer["churn_probability"], expected, rtol=0, atol=1e-12)
    wrapped = httpx.post(f"{url}/predict", json={"records": rows}).json()
    assert wrapped["churn_probability"] == answer["churn_probability"]


def test_csv_body_scores_like_json(service, shared_data):
    url, *_ = service
    text = (shared_data / "churn_modelling.csv").read_text().splitlines()[:21]
    body = "\n".join(text) + "\n"
    by_csv = httpx.post(f"{url}/predict", content=body, headers={"content-type": "text/csv"})
    assert by_csv.status_code == 200, by_csv.text
    frame = pd.read_csv(shared_data / "churn_modelling.csv", nrows=20)
    by_json = httpx.post(f"{url}/predict", json=json.loads(frame.to_json(orient="records")))
    assert by_csv.json()["churn_probability"] == by_json.json()["churn_probability"]
    assert by_csv.json()["rows"] == 20


def test_an_unseen_category_is_scored_and_counted(service):
    url, *_ = service
    rows = records(3)
    rows[1]["Geography"] = "Atlantis"
    answer = httpx.post(f"{url}/predict", json=rows)
    assert answer.status_code == 200
    assert answer.json()["unseen_categories"] == {"Geography": 1}
    assert 0 <= answer.json()["churn_probability"][1] <= 1


def _without(column: str) -> list[dict]:
    return [{k: v for k, v in row.items() if k != column} for row in records(2)]


def _text_in(column: str, value: str) -> list[dict]:
    rows = records(3)
    rows[2][column] = value
    return rows


BAD_REQUESTS = {
    "missing column": (dict(json=_without("Age")), 422, "missing feature column(s) 'Age'"),
    "text in a number": (
        dict(json=_text_in("Balance", "lots")),
        422,
        "column 'Balance' must be numeric but data row 3 has 'lots'",
    ),
    "empty body": (dict(content=b"", headers={"content-type": "application/json"}), 400, "empty"),
    "too many rows": (dict(json=records(MAX_ROWS + 1)), 413, f"over the limit of {MAX_ROWS}"),
    "oversized body": (
        dict(content=b"[" + b" " * MAX_BODY + b"]", headers={"content-type": "application/json"}),
        413,
        "bytes",
    ),
    "not JSON": (
        dict(content=b"{oops", headers={"content-type": "application/json"}),
        400,
        "not valid JSON",
    ),
    "other content type": (
        dict(content=b"x", headers={"content-type": "application/xml"}),
        415,
        "application/xml",
    ),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
def test_a_bad_request_gets_a_4xx_naming_the_problem(service, case):
    url, *_ = service
    kwargs, status, words = BAD_REQUESTS[case]
    answer = httpx.post(f"{url}/predict", **kwargs)
    assert answer.status_code == status, answer.text
    detail = answer.json()["detail"]
    assert words in detail
    assert "Traceback" not in answer.text and "\n" not in detail


def test_health_and_openapi(service):
    url, *_ = service
    health = httpx.get(f"{url}/health").json()
    assert health["model_name"] == MODEL and health["following"] == "champion"
    assert health["live_version"] == "1" and health["since"]
    assert "sha256 matches" in health["checks"]
    assert health["poll_seconds"] == 0.3
    schema = httpx.get(f"{url}/openapi.json").json()
    assert {"/predict", "/health"} <= set(schema["paths"])
    assert "text/csv" in schema["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert httpx.get(f"{url}/docs").status_code == 200


def test_follows_champion_through_promotion_and_rollback_without_a_failed_request(service):
    url, log, _ = service
    client = connect()
    with Traffic(url) as traffic:
        time.sleep(0.5)
        registry.set_alias(client, MODEL, "champion", "2")  # promoted
        assert traffic.wait_for_version("2", timeout=20) < 20
        registry.set_alias(client, MODEL, "champion", "1")  # rolled back
        traffic.wait_for_version("1", timeout=20)
        time.sleep(0.3)
    statuses = {status for _, status, _ in traffic.seen}
    assert statuses == {200}, [s for s in traffic.seen if s[1] != 200][:3]
    # Each client's requests run one after another, so each sees the swaps in order, never
    # back to an older model (answers of two clients may finish in either order around a swap);
    # at least one of them answered between the two moves, so saw both swaps.
    changes = traffic.version_changes()
    assert all(seen in "121" for seen in changes) and "121" in changes, changes
    assert "now serving serve-churn v2" in log.read_text()


def test_a_tampered_version_is_refused_and_the_old_one_keeps_serving(service):
    url, log, _ = service
    client = connect()
    path = artifact_file(MODEL, "3")
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\0")
        with Traffic(url, clients=1) as traffic:
            registry.set_alias(client, MODEL, "champion", "3")
            deadline = time.monotonic() + 20
            health = httpx.get(f"{url}/health").json()
            while health["last_refusal"] is None and time.monotonic() < deadline:
                time.sleep(0.1)
                health = httpx.get(f"{url}/health").json()
            time.sleep(1)  # several more polls: v3 is never swapped in
        assert health["last_refusal"]["version"] == "3"
        assert "does not match the recorded" in health["last_refusal"]["reason"]
        assert httpx.get(f"{url}/health").json()["live_version"] == "1"
        assert {(status, version) for _, status, version in traffic.seen} == {(200, "1")}
        assert "refused serve-churn v3, still serving v1" in log.read_text()
    finally:
        path.write_bytes(original)
        registry.set_alias(client, MODEL, "champion", "1")


def test_an_unknown_model_or_bad_option_fails_before_binding():
    import typer
    from typer.testing import CliRunner

    from serving.cli import serve

    app = typer.Typer()
    app.command()(serve)
    result = CliRunner().invoke(app, ["--model-name", "no-such-model", "--port", "1"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines()[-1] == (
        "error: no registered model 'no-such-model'; run a sweep first or check --model-name"
    )
    result = CliRunner().invoke(app, ["--model-name", MODEL, "--poll-seconds", "0"])
    assert result.exit_code == 2 and "poll_seconds" in result.output


def test_version_checks_refuse_what_load_served_is_given(service):
    """The service's loader is tracking.versions.load_version: a tampered file never loads."""
    from serving.live import load_served
    from tracking.model_files import ModelFileError

    client = connect()
    path = artifact_file(MODEL, "2")
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-10])
        with pytest.raises(ModelFileError):
            load_served(client, versions.get_version(client, MODEL, "2"))
    finally:
        path.write_bytes(original)
