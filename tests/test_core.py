"""The pure ML core: configuration, search space, pipeline and scoring (no Prefect, no MLflow)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest

from churnml.config import ConfigError, SearchSpace, SweepConfig, parse_config
from churnml.data import validate_frame
from churnml.evaluate import cross_validate_auc, holdout_metrics
from churnml.model import build_pipeline, encoded_feature_names, fit_quietly, selected_feature_names
from churnml.prepare import split
from churnml.search import score_trial, suggest_params
from churnml.synthetic import generate_bank_churn

CORE = Path(__file__).resolve().parents[1] / "churnml"
PARAMS = {
    "k": 5,
    "n_estimators": 20,
    "max_depth": 6,
    "min_samples_split": 2,
    "min_samples_leaf": 2,
    "max_features": "sqrt",
    "class_weight": None,
    "criterion": "gini",
    "max_samples": None,
}


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return validate_frame(generate_bank_churn(800, seed=11), source="test", cv_folds=3)


def imported_packages(module: Path) -> set[str]:
    packages = set()
    for node in ast.walk(ast.parse(module.read_text())):
        if isinstance(node, ast.Import):
            packages |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            packages.add(node.module.split(".")[0])
    return packages


def test_core_imports_neither_prefect_nor_mlflow():
    for module in CORE.glob("*.py"):
        assert not imported_packages(module) & {"prefect", "mlflow", "tracking", "flows"}, module


def test_config_rejects_unknown_keys_with_their_name():
    with pytest.raises(ConfigError, match=r"config\.search_space\.n_estimator: unknown key"):
        parse_config({"search_space": {"n_estimator": {"low": 1, "high": 2}}})


def test_config_rejects_negative_trials():
    with pytest.raises(ConfigError, match=r"config\.n_trials"):
        parse_config({"n_trials": -1})


def test_config_rejects_inverted_bounds():
    with pytest.raises(ConfigError, match="must not exceed"):
        parse_config({"search_space": {"max_depth": {"low": 9, "high": 3}}})


def test_k_above_the_feature_count_is_refused(clean):
    config = SweepConfig(search_space=SearchSpace(k_max=50))
    with pytest.raises(ConfigError, match=r"search_space\.k_max: 50 is above the 13"):
        split(clean, config, digest="x")


def test_encoded_features_are_named_after_real_columns(clean):
    names = encoded_feature_names(clean.drop(columns="Exited"))
    assert len(names) == 13
    assert {"Age", "Balance", "Geography_Germany", "Gender_Male"} <= set(names)


def test_suggested_params_stay_in_bounds():
    space = SearchSpace(k_min=2, k_max=8)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(30):
        params = suggest_params(study.ask(), space, n_features=13)
        assert 2 <= params["k"] <= 8
        assert params["max_depth"] is None or 3 <= params["max_depth"] <= 24
        assert params["min_samples_split"] >= 2
        assert params["max_features"] in space.max_features


def test_k_never_exceeds_the_features_present():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    for _ in range(10):
        assert suggest_params(study.ask(), SearchSpace(), n_features=4)["k"] <= 4


def test_pipeline_takes_raw_rows_with_ids_and_unseen_categories(clean):
    features = clean.drop(columns="Exited")
    model = fit_quietly(build_pipeline(PARAMS, seed=0), features, clean["Exited"])
    raw = generate_bank_churn(20, seed=5).drop(columns="Exited")
    raw.loc[0, "Geography"] = "Atlantis"
    shuffled = raw[list(reversed(raw.columns))]
    probabilities = model.predict_proba(raw)[:, 1]
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    np.testing.assert_array_equal(model.predict_proba(shuffled)[:, 1], probabilities)
    assert len(selected_feature_names(model)) == PARAMS["k"]


def test_missing_column_at_predict_time_is_named(clean):
    features = clean.drop(columns="Exited")
    model = fit_quietly(build_pipeline(PARAMS, seed=0), features, clean["Exited"])
    with pytest.raises(ValueError, match="Balance"):
        model.predict_proba(features.drop(columns="Balance"))


def test_cross_validation_reports_every_fold(clean):
    seen: list[tuple[int, float]] = []
    result = cross_validate_auc(
        PARAMS,
        clean.drop(columns="Exited"),
        clean["Exited"],
        folds=3,
        seed=0,
        on_fold=lambda fold, score: seen.append((fold, score)),
    )
    assert [fold for fold, _ in seen] == [0, 1, 2]
    assert result.mean_auc == pytest.approx(np.mean(result.fold_scores))
    assert 0.5 < result.mean_auc <= 1.0


def test_each_fold_asks_for_its_threads_and_scores_do_not_depend_on_them(clean, monkeypatch):
    import churnml.evaluate

    asked: list[int] = []
    forests: list[int] = []
    real = churnml.evaluate.build_pipeline

    def recording(params, *, seed, n_jobs=1):
        forests.append(n_jobs)
        return real(params, seed=seed, n_jobs=n_jobs)

    def threads() -> int:
        asked.append(len(asked))
        return 1 + len(asked) % 2  # 2, 1, 2

    features, target = clean.drop(columns="Exited"), clean["Exited"]
    monkeypatch.setattr(churnml.evaluate, "build_pipeline", recording)
    varied = cross_validate_auc(PARAMS, features, target, folds=3, seed=0, threads=threads)
    one = cross_validate_auc(PARAMS, features, target, folds=3, seed=0)
    assert len(asked) == 3
    assert forests == [2, 1, 2, 1, 1, 1]  # the threads asked for, then the default
    assert varied.fold_scores == one.fold_scores


def test_pruned_trial_keeps_its_partial_scores(clean):
    # Without screening (small data) the pruner is first asked after the second fold.
    study = optuna.create_study(
        direction="maximize",
        pruner=optuna.pruners.ThresholdPruner(lower=0.999),
    )
    with pytest.raises(optuna.TrialPruned) as pruned:
        score_trial(
            study.ask(), PARAMS, clean.drop(columns="Exited"), clean["Exited"], folds=3, seed=0
        )
    assert len(pruned.value.partial_scores) == 2


def test_holdout_metrics_are_consistent(clean):
    features = clean.drop(columns="Exited")
    model = fit_quietly(build_pipeline(PARAMS, seed=0), features, clean["Exited"])
    metrics = holdout_metrics(model, features, clean["Exited"])
    counts = sum(
        metrics[k]
        for k in ("true_negatives", "false_positives", "false_negatives", "true_positives")
    )
    assert counts == len(clean)
    assert set(metrics) >= {"roc_auc", "accuracy", "f1", "precision", "recall", "log_loss"}
