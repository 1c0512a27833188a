"""The model card: built from what the sweep recorded, logged with the model, set as the
version's description; read back through ``MlflowClient``."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import mlflow
import pytest
from matplotlib.figure import Figure

from churnml.model import feature_importances
from tests.registered import fit_small_model, register
from tracking import model_card, runs, tags
from tracking.plots import log_model_plots
from tracking.store import connect

MODEL = "card-churn"


def test_render_says_what_was_recorded_and_what_is_missing():
    facts = model_card.CardFacts(
        name="m",
        version="3",
        params={
            "data_source": "x.csv",
            "data_rows": "100",
            "test_size": "0.2",
            "seed": "7",
            "n_trials": "5",
            "cv_folds": "3",
            "pruner": "median",
            "best_k": "4",
            "best_trial": "2",
            "search_space": json.dumps({"n_estimators": {"low": 10, "high": 40}, "k_min": 1}),
        },
        metrics={"best_cv_auc": 0.81234, "holdout_roc_auc": 0.8, "trials_complete": 5},
        data_digest="abc",
        selected_features={"Age": 0.6, "Balance": 0.4},
    )
    card = model_card.render_model_card(facts)
    assert card.startswith("## m v3: model card")
    for words in (
        "x.csv (100 rows",
        "`abc`",
        "0.2 of the rows",
        "seed 7",
        "5 trials",
        "3-fold CV",
        "n_estimators 10-40",
        "`k=4`",
        "0.8123",
        "roc_auc 0.8000",
        "Age (0.60), Balance (0.40)",
        "**Intended use.**",
        "**Limits.**",
    ):
        assert words in card
    assert "| skops sha256 (standalone file) | `-` |" in card
    assert len(model_card.render_model_card(facts)) <= model_card.MAX_DESCRIPTION


def test_card_from_a_recorded_sweep_run_is_the_version_description(tmp_path):
    client = connect()
    model = fit_small_model(seed=3)
    version = register(client, MODEL, model, standalone=tmp_path / "m.skops")
    run_id = client.get_model_version(MODEL, version.version).run_id
    # What the sweep records on its parent run by the time it registers and finishes.
    client.log_batch(
        run_id,
        params=[
            mlflow.entities.Param(k, v)
            for k, v in {
                "data_source": "churn_modelling.csv",
                "data_rows": "10000",
                "test_size": "0.2",
                "seed": "42",
                "n_trials": "12",
                "cv_folds": "5",
                "pruner": "median",
                "search_space": json.dumps({"max_depth": {"low": 3, "high": 12}}),
            }.items()
        ],
        tags=[mlflow.entities.RunTag(tags.TAG_DATA_DIGEST, "d1g35t")],
    )
    figure = Figure()
    figure.add_subplot().plot([0, 1], [0, 1])
    log_model_plots(client, run_id, {"roc_curve": figure})
    runs.finish_sweep_run(
        client,
        run_id,
        status="FINISHED",
        metrics={
            "best_cv_auc": 0.85,
            "holdout_roc_auc": 0.84,
            "holdout_accuracy": 0.86,
            "trials_complete": 11,
            "trials_pruned": 1,
            "trials_failed": 0,
        },
        params={"best_k": 8, "best_n_estimators": 8, "best_trial": 4},
    )

    card = model_card.write_model_card(client, MODEL, version.version, model=model)

    found = client.get_model_version(MODEL, version.version)
    assert found.description == card
    assert "churn_modelling.csv (10000 rows" in card and "`d1g35t`" in card
    assert "12 trials (11 complete, 1 pruned, 0 failed), 5-fold CV" in card
    assert "`k=8`" in card and "(trial 4)" in card and "0.8500" in card
    assert "accuracy 0.8600, roc_auc 0.8400" in card
    assert found.tags[tags.TAG_SKOPS_SHA256] in card
    assert found.tags[tags.TAG_ARTIFACT_SHA256] in card
    assert "artifactPath/model/roc_curve.png" in card
    for feature in feature_importances(model):
        assert feature in card
    base = client.get_model_version_download_uri(MODEL, version.version)
    logged = mlflow.artifacts.download_artifacts(
        f"{base}/{model_card.CARD_FILE}", dst_path=str(tmp_path / "dl")
    )
    assert Path(logged).read_text(encoding="utf-8").strip() == card
    on_run = client.list_artifacts(run_id, f"model_card/v{version.version}")
    assert [a.path.rsplit("/", 1)[-1] for a in on_run] == [model_card.CARD_FILE]


def test_an_unknown_version_is_refused_by_the_registry():
    from mlflow.exceptions import MlflowException

    client = connect()
    with pytest.raises(MlflowException):
        model_card.write_model_card(client, "no-such-model", "1")


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_card_of_a_real_sweep_and_its_pyfunc(tmp_path):
    """After a real (tiny) sweep, the one call fills the card from what the sweep recorded."""
    import mlflow.pyfunc

    from churnml.config import SweepConfig
    from churnml.synthetic import generate_bank_churn
    from flows.sweep.flow import sweep
    from tracking.model_files import load_model_file

    config = SweepConfig.model_validate(
        {
            "data": {"synthetic_rows": 900, "synthetic_seed": 2},
            "n_trials": 3,
            "parallel": 1,
            "cv_folds": 3,
            "experiment_name": "card-sweep",
            "model_name": "card-sweep-model",
            "search_space": {"n_estimators": {"low": 10, "high": 20}},
        }
    )
    summary = sweep(config=config)
    client = connect()
    model = load_model_file(summary.skops_path, expected_sha256=summary.skops_sha256)
    card = model_card.write_model_card(
        client, config.model_name, summary.model_version, model=model
    )
    assert client.get_model_version(config.model_name, summary.model_version).description == card
    assert "synthetic" in card and "(900 rows" in card
    assert f"`{summary.data_digest}`" in card and summary.skops_sha256 in card
    assert "3 trials (" in card and "3-fold CV" in card and "n_estimators 10-20" in card
    assert (
        f"{summary.best_cv_auc:.4f}" in card and f"roc_auc {summary.holdout['roc_auc']:.4f}" in card
    )
    assert "artifactPath/model/" in card and "**Limits.**" in card
    for feature in summary.selected_features:
        assert feature in card

    rows = generate_bank_churn(50, seed=9)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{config.model_name}@champion")
    probabilities = pyfunc.predict(rows)
    assert probabilities.shape == (50,)
    from churnml.schema import to_features
    from churnml.scoring import predict_churn

    expected = predict_churn(model, to_features(rows, source="t"))
    assert probabilities.tolist() == pytest.approx(expected.tolist(), abs=1e-12)
