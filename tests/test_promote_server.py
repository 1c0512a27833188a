"""Promotion, rollback, history and scoring against a real ``mlflow server`` over HTTP.

The server runs on 127.0.0.1 on a free port with a SQLite store and an artifact folder in a temp
dir, and is stopped at the end of the module. Two tiny sweeps register a weak v1 (champion) and
a strong v2 (challenger) on the same built-in data, so both are scored on the same holdout.
Each test starts from a known registry state (:func:`fresh`: aliases, decision tags and history
put back), so the tests hold in any order and alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import skops.io as sio
from rich.console import Console
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer
from typer.testing import CliRunner

from churnml.config import SweepConfig
from churnml.data import validate_frame
from churnml.digests import file_sha256
from churnml.model import build_pipeline, fit_quietly
from churnml.promotion import KEPT, PROMOTED, REFUSED, PromoteConfig
from churnml.scoring import PROBABILITY_COLUMN, VERSION_COLUMN
from churnml.synthetic import generate_bank_churn
from cli import common as cli
from cli.main import app
from flows.promote.flow import promote
from flows.promote.steps import read_history
from tests.servers import BIN, free_port, start, stop, wait_for_http
from tracking import promotion, registry, runs, versions
from tracking import tags as tags_
from tracking.model_files import save_model_file
from tracking.store import connect, ensure_experiment, resolve_target

pytestmark = pytest.mark.slow

MODEL = "served-churn"
EXPERIMENT = "served"
DATA = {"synthetic_rows": 900, "synthetic_seed": 3}
runner = CliRunner()


def sweep_config(n_trials: int, search_space: dict) -> SweepConfig:
    return SweepConfig.model_validate(
        {
            "data": DATA,
            "n_trials": n_trials,
            "parallel": 1,
            "cv_folds": 2,
            "pruner": "none",
            "experiment_name": EXPERIMENT,
            "model_name": MODEL,
            "search_space": search_space,
        }
    )


WEAK = {  # one stump on one feature
    "k_min": 1,
    "k_max": 1,
    "n_estimators": {"low": 1, "high": 1},
    "max_depth": {"low": 1, "high": 1},
    "allow_unlimited_depth": False,
    "max_features": [1.0],
    "max_samples": [None],
}
STRONG = {
    "k_min": 8,
    "n_estimators": {"low": 30, "high": 50},
    "max_depth": {"low": 6, "high": 10},
    "allow_unlimited_depth": False,
    "class_weight": [None],
}


@pytest.fixture(scope="module")
def server_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """Start ``mlflow server`` now (it takes ~20 s) so it boots while the Prefect harness does."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    command = [
        str(BIN / "mlflow"),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        str(folder / "artifacts"),
        "--workers",
        "1",
    ]
    process = start(command, env=env, log=folder / "server.log", cwd=folder)
    try:
        yield process, f"http://127.0.0.1:{port}", folder
    finally:
        stop(process)


@pytest.fixture(scope="module")
def server(server_process, prefect_harness) -> Iterator[tuple[str, Path]]:
    """The server's URL and folder, with MLflow pointed at it for this module only."""
    process, url, folder = server_process
    wait_for_http(f"{url}/health", timeout=120, process=process)
    # Set both, so both are restored: mlflow.set_*_uri also write these variables.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", url)
        patch.setenv("MLFLOW_REGISTRY_URI", url)
        yield url, folder
    connect()  # MLflow's global URIs back to the local test store


@pytest.fixture(scope="module")
def two_versions(server):
    from flows.sweep.flow import sweep

    weak = sweep(config=sweep_config(1, WEAK))
    strong = sweep(config=sweep_config(2, STRONG))
    return weak, strong


@pytest.fixture
def wide_console(monkeypatch):
    monkeypatch.setattr(cli, "console", Console(width=250))


def prefect_artifact(flow_run_id: str, key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as prefect:
        found = prefect.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return next(a.data for a in found if a.key == key)


def invoke(*args: str):
    return runner.invoke(app, list(args))


def client():
    return connect()


def champion() -> str:
    return str(client().get_model_version_by_alias(MODEL, "champion").version)


#: Each version's tags as first seen, before any test decided about it.
_BASELINE: dict[str, dict[str, str]] = {}


def fresh(champion: str = "1", challenger: str = "2") -> None:
    """Put the registry back to a known state: these aliases, no decision recorded, every
    version's tags as registered."""
    mlflow_client = client()
    for version in mlflow_client.search_model_versions(f"name = '{MODEL}'"):
        tags = _BASELINE.setdefault(
            version.version,
            {k: v for k, v in version.tags.items() if not k.startswith(tags_.VERSION_PREFIX)},
        )
        for key in set(version.tags) - set(tags):
            mlflow_client.delete_model_version_tag(MODEL, version.version, key)
        for key, value in tags.items():
            if version.tags.get(key) != value:
                mlflow_client.set_model_version_tag(MODEL, version.version, key, value)
    model = mlflow_client.get_registered_model(MODEL)
    for key in model.tags:
        if key.startswith(tags_.HISTORY_PREFIX):
            mlflow_client.delete_registered_model_tag(MODEL, key)
    mlflow_client.set_registered_model_alias(MODEL, "champion", champion)
    mlflow_client.set_registered_model_alias(MODEL, "challenger", challenger)


@pytest.fixture
def registered(two_versions):
    """v1 champion, v2 challenger, nothing decided yet."""
    fresh()
    return two_versions


def test_two_versions_registered_over_http(server, registered):
    url, _ = server
    weak, strong = registered
    assert resolve_target().tracking_uri == url
    assert (weak.model_version, strong.model_version) == ("1", "2")
    assert champion() == "1"
    for summary in registered:
        version = client().get_model_version(MODEL, summary.model_version)
        assert len(version.tags[versions.TAG_ARTIFACT_SHA256]) == 64
        spec = client().get_run(summary.parent_run_id).data.params[promotion.PARAM_HOLDOUT_SPEC]
        assert '"synthetic_seed":3' in spec
    assert strong.holdout["roc_auc"] > weak.holdout["roc_auc"]


def test_a_challenger_short_of_the_margin_is_kept(registered):
    weak, strong = registered
    decision = promote(config=PromoteConfig(model_name=MODEL, margin=0.5))
    assert decision.outcome == KEPT
    assert "does not win by more than the margin" in decision.reason
    assert champion() == "1"
    # Both were scored on the same rows: the challenger's sweep holdout, exactly.
    assert decision.data_digest == strong.data_digest == weak.data_digest
    assert decision.data_rows == 180
    assert decision.candidate_metrics["roc_auc"] == pytest.approx(strong.holdout["roc_auc"])
    assert decision.champion_metrics["roc_auc"] == pytest.approx(weak.holdout["roc_auc"])
    assert "standalone skops file: recorded sha256 matches" in decision.checks["2"]

    tags = client().get_model_version(MODEL, "2").tags
    assert tags["promotion.outcome"] == KEPT
    assert tags["promotion.champion_version"] == "1"
    assert float(tags["promotion.value"]) == pytest.approx(strong.holdout["roc_auc"])
    assert tags["promotion.margin"] == "0.5"
    assert tags["promotion.data_digest"] == strong.data_digest
    assert tags["promotion.flow_run_id"] == decision.flow_run_id

    run = client().get_run(decision.mlflow_run_id)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["candidate_roc_auc"] == pytest.approx(strong.holdout["roc_auc"])
    assert run.data.metrics["champion_roc_auc"] == pytest.approx(weak.holdout["roc_auc"])
    assert run.data.tags["sweepflow.outcome"] == KEPT
    experiment = client().get_experiment(run.info.experiment_id)
    assert experiment.name == promotion.promotions_experiment(MODEL)

    markdown = prefect_artifact(decision.flow_run_id, "promotion-decision")
    assert "**kept**" in markdown and strong.data_digest in markdown


def test_a_better_challenger_is_promoted(registered, wide_console, monkeypatch):
    import prefect.events

    from flows.events import CHAMPION_EVENT

    emitted = []
    monkeypatch.setattr(prefect.events, "emit_event", lambda **event: emitted.append(event))
    result = invoke("promote", "--model-name", MODEL)
    assert result.exit_code == 0, result.output
    assert "promoted" in result.output and "challenger wins" in result.output
    assert champion() == "2"
    assert client().get_model_version(MODEL, "1").tags["promotion.replaced_by"] == "2"
    (event,) = emitted
    assert event["event"] == CHAMPION_EVENT
    assert event["payload"]["version"] == "2" and event["payload"]["previous_version"] == "1"
    assert event["payload"]["holdout_roc_auc"] == pytest.approx(registered[1].holdout["roc_auc"])


def test_a_worse_challenger_is_refused(registered):
    fresh(champion="2", challenger="1")  # the strong v2 holds champion; the weak v1 challenges
    decision = promote(config=PromoteConfig(model_name=MODEL))
    assert decision.outcome == KEPT
    assert champion() == "2"
    assert decision.candidate_metrics["roc_auc"] < decision.champion_metrics["roc_auc"]


def quieted(monkeypatch) -> list[bool]:
    """Records each time a command keeps Prefect's INFO logs off the console."""
    calls: list[bool] = []
    monkeypatch.setattr(cli, "quiet_console_logs", lambda **_: calls.append(True))
    return calls


def test_rollback_moves_the_champion_back(registered, wide_console, monkeypatch):
    fresh(champion="2")  # v2 was promoted; roll back to v1
    quiet = quieted(monkeypatch)
    result = invoke("promote", "--model-name", MODEL, "--to-version", "1")
    assert result.exit_code == 0, result.output
    assert quiet == [True], "promote printed Prefect's INFO logs"
    assert "rolled_back" in result.output
    assert champion() == "1"
    assert client().get_model_version(MODEL, "1").tags["promotion.action"] == "rollback"


def test_rollback_to_a_missing_version_is_one_line():
    result = invoke("rollback", "--model-name", MODEL, "--to-version", "99")
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {MODEL} has no version 99"


def make_history() -> None:
    """Four decisions: kept short of the margin, promoted, a worse challenger kept, rollback."""
    promote(config=PromoteConfig(model_name=MODEL, margin=0.5))
    promote(config=PromoteConfig(model_name=MODEL))
    client().set_registered_model_alias(MODEL, "challenger", "1")
    promote(config=PromoteConfig(model_name=MODEL))
    promote(config=PromoteConfig(model_name=MODEL, to_version=1))


def test_history_says_who_was_champion_when_and_why(registered, wide_console):
    make_history()
    found = read_history(MODEL, resolve_target())
    assert [p.version for p in found.periods] == ["1", "2", "1"]
    assert [p.end is None for p in found.periods] == [False, False, True]
    assert found.periods[0].end == found.periods[1].start
    assert found.periods[1].reason.startswith("promote: v2 roc_auc")
    assert found.periods[2].reason.startswith("rollback: rolled back to v1")
    assert [d.outcome for d in found.decisions] == [KEPT, PROMOTED, KEPT, "rolled_back"]

    result = invoke("history", "--model-name", MODEL)
    assert result.exit_code == 0, result.output
    assert "first registered version: the sweep made it champion" in result.output
    assert "challenger does not win by more than the margin" in result.output
    assert "now" in result.output


def test_score_a_csv_with_the_champion(registered, tmp_path, wide_console, monkeypatch):
    quiet = quieted(monkeypatch)
    frame = generate_bank_churn(250, seed=11).drop(columns="Exited")
    frame["Comment"] = "ignored"
    frame.loc[0, "Geography"] = "Atlantis"
    source, out = tmp_path / "customers.csv", tmp_path / "scored" / "churn.csv"
    frame.to_csv(source, index=False)

    result = invoke(
        "score", "--data", str(source), "--out", str(out), "--model-name", MODEL,
        "--chunk-rows", "100",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"with {MODEL} v1 (@champion) in 3 chunk(s)" in result.output
    assert "Geography in 1 rows" in result.output
    champion_scores = pd.read_csv(out)
    assert list(champion_scores.columns) == ["id", "CustomerId", PROBABILITY_COLUMN, VERSION_COLUMN]
    assert len(champion_scores) == 250 and champion_scores[VERSION_COLUMN].eq(1).all()
    assert champion_scores[PROBABILITY_COLUMN].between(0, 1).all()

    assert quiet == [True], "score printed Prefect's INFO logs"

    result = invoke("score", "--data", str(source), "--out", str(out), "--model-name", MODEL,
                    "--version", "2", "--verbose")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert quiet == [True], "--verbose keeps the logs"
    v2_scores = pd.read_csv(out)
    assert v2_scores[VERSION_COLUMN].eq(2).all()
    assert not v2_scores[PROBABILITY_COLUMN].equals(champion_scores[PROBABILITY_COLUMN])


def test_score_refuses_a_file_without_a_feature_column(tmp_path):
    source, out = tmp_path / "customers.csv", tmp_path / "churn.csv"
    generate_bank_churn(20, seed=1).drop(columns="Age").to_csv(source, index=False)
    result = invoke("score", "--data", str(source), "--out", str(out), "--model-name", MODEL)
    assert result.exit_code == 2
    assert result.output.strip().startswith("error:")
    assert "missing column(s) 'Age'" in result.output and "\n" not in result.output.strip()
    assert not out.exists()


# --------------------------------------------------------------------------- refused files


@pytest.fixture(scope="module")
def registered_third(server, two_versions, tmp_path_factory):
    """v3, registered without a standalone file (as on a machine that never had it)."""
    clean = validate_frame(generate_bank_churn(400, seed=4), source="t", cv_folds=2)
    features = clean.drop(columns="Exited")
    model = fit_quietly(
        build_pipeline({"k": 6, "n_estimators": 5, "max_depth": 4}, seed=0),
        features,
        clean.Exited,
    )
    target = resolve_target()
    experiment_id = ensure_experiment(client(), EXPERIMENT, target)
    run_id = runs.start_sweep_run(client(), experiment_id, run_name="ad-hoc", params={}, tags={})
    registered = registry.register_best_model(
        client(),
        run_id=run_id,
        model=model,
        model_name=MODEL,
        input_example=features.head(3),
        tags={},
    )
    folder = tmp_path_factory.mktemp("third")
    evaluation = folder / "eval.csv"
    generate_bank_churn(300, seed=21).to_csv(evaluation, index=False)
    return registered.version, model, evaluation, folder


@pytest.fixture
def third_version(registered_third):
    """v3 challenger (no standalone file), v1 champion, nothing decided yet."""
    fresh(challenger=registered_third[0])
    return registered_third


def artifact_file(server_folder: Path, version: str) -> Path:
    model_id = client().get_model_version(MODEL, version).source.removeprefix("models:/")
    (found,) = (server_folder / "artifacts").glob(f"**/{model_id}/artifacts/model.skops")
    return found


def test_without_the_standalone_file_the_artifact_is_verified(third_version):
    version, *_, evaluation, _ = third_version
    assert version == "3"
    decision = promote(config=PromoteConfig(model_name=MODEL, data=evaluation, margin=1.0))
    assert decision.outcome == KEPT
    assert decision.checks["3"].startswith("MLflow artifact: recorded artifact sha256 matches")
    assert decision.data_source == str(evaluation) and decision.data_rows == 300


def test_a_tampered_artifact_is_never_promoted(server, third_version, wide_console):
    _, folder = server
    version, _, evaluation, _ = third_version
    path = artifact_file(folder, version)
    original = path.read_bytes()
    try:
        path.write_bytes(original + b"\0")
        result = invoke("promote", "--model-name", MODEL, "--data", str(evaluation))
        assert result.exit_code == 1, result.output
        assert "refused" in result.output and "does not match the recorded" in result.output
    finally:
        path.write_bytes(original)
    assert champion() == "1"
    assert client().get_model_version(MODEL, version).tags["promotion.outcome"] == REFUSED


def test_a_tampered_standalone_file_is_never_promoted_or_scored(third_version, tmp_path):
    version, model, evaluation, folder = third_version
    standalone = folder / "v3.skops"
    sha256 = save_model_file(model, standalone)
    with standalone.open("ab") as handle:
        handle.write(b"tampered")
    registry.tag_version(
        client(), MODEL, version, {"skops_path": standalone, "skops_sha256": sha256}
    )
    decision = promote(config=PromoteConfig(model_name=MODEL, data=evaluation))
    assert decision.outcome == REFUSED and "does not match the recorded" in decision.reason
    assert champion() == "1"

    result = invoke(
        "score", "--data", str(evaluation), "--out", str(tmp_path / "o.csv"),
        "--model-name", MODEL, "--version", version,
    )  # fmt: skip
    assert result.exit_code == 1
    assert "does not match the recorded" in result.output
    assert not (tmp_path / "o.csv").exists()


def test_a_file_with_untrusted_types_is_never_promoted(third_version):
    version, _, evaluation, folder = third_version
    crafted = folder / "crafted.skops"
    sio.dump(Pipeline([("run", FunctionTransformer(func=os.system))]), crafted)
    registry.tag_version(
        client(), MODEL, version, {"skops_path": crafted, "skops_sha256": file_sha256(crafted)}
    )
    before = read_history(MODEL, resolve_target())
    decision = promote(config=PromoteConfig(model_name=MODEL, data=evaluation))
    assert decision.outcome == REFUSED
    assert "outside our allowlist" in decision.reason and "posix.system" in decision.reason
    assert champion() == "1"
    history = read_history(MODEL, resolve_target())
    assert [d.outcome for d in history.decisions][len(before.decisions) :] == [REFUSED]
    assert [p.version for p in history.periods] == [p.version for p in before.periods]


def test_mlflow_never_unpickles_in_our_process(server):
    client()  # what every command does first
    assert os.environ.get("MLFLOW_ALLOW_PICKLE_DESERIALIZATION") == "false"
    assert mlflow.get_tracking_uri() == server[0]
