"""Scoring: cross-validated ROC AUC for the search, and holdout metrics for the best model.

Metrics are return values (plain dicts and dataclasses); logging them is the caller's business.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from churnml.model import build_pipeline, fit_quietly

#: Called after each fold with (fold index, fold AUC); may raise to stop the trial (pruning).
FoldCallback = Callable[[int, float], None]
#: How many threads the next fold's forest may use (asked before each fold).
ThreadsFor = Callable[[], int]


class TrialScoreError(RuntimeError):
    """A trial produced no usable score (NaN or infinite AUC)."""


@dataclass(frozen=True)
class CVResult:
    """Per-fold and mean ROC AUC of one hyperparameter point, and the time spent fitting."""

    fold_scores: list[float]
    mean_auc: float
    fit_seconds: float


def cross_validate_auc(
    params: dict[str, Any],
    features: pd.DataFrame,
    target: pd.Series,
    *,
    folds: int,
    seed: int,
    on_fold: FoldCallback | None = None,
    threads: ThreadsFor | None = None,
) -> CVResult:
    """Stratified K-fold ROC AUC; every fold fits a fresh pipeline on its training rows only.

    ``threads``, asked before each fold, gives the forest's threads (default one): a trial left
    running alone at the end of a sweep takes the cores the finished ones freed. The scores do
    not depend on it (the forest's trees are seeded the same on any number of threads).

    Raises:
        TrialScoreError: when a fold's AUC is not finite.
    """
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores: list[float] = []
    started = time.perf_counter()
    for fold, (train_idx, valid_idx) in enumerate(splitter.split(features, target)):
        pipeline = fit_quietly(
            build_pipeline(params, seed=seed, n_jobs=threads() if threads else 1),
            features.iloc[train_idx],
            target.iloc[train_idx],
        )
        probabilities = pipeline.predict_proba(features.iloc[valid_idx])[:, 1]
        score = float(roc_auc_score(target.iloc[valid_idx], probabilities))
        if not math.isfinite(score):
            raise TrialScoreError(f"fold {fold} gave a non-finite ROC AUC ({score})")
        scores.append(score)
        if on_fold is not None:
            on_fold(fold, score)
    return CVResult(
        fold_scores=scores,
        mean_auc=float(np.mean(scores)),
        fit_seconds=time.perf_counter() - started,
    )


def screen_fold_auc(
    params: dict[str, Any],
    features: pd.DataFrame,
    target: pd.Series,
    *,
    folds: int,
    seed: int,
    rows: int,
    max_trees: int,
) -> float:
    """A cheap first look at a point: the first CV fold's AUC, fit on a sample of its rows.

    The model is fit on a random ``rows`` of the first fold's training rows, with at most
    ``max_trees`` trees, and scored on the whole validation fold (the same rows
    :func:`cross_validate_auc` scores first). ``min_samples_leaf`` and ``min_samples_split``
    shrink with the square root of the sampled share: on this kind of data the best leaf size
    grows about that fast with the rows, so a point good on all rows also looks good here.

    Raises:
        TrialScoreError: when the AUC is not finite.
    """
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    train_idx, valid_idx = next(splitter.split(features, target))
    rows = min(rows, len(train_idx))
    sample = np.sort(np.random.default_rng(seed).choice(train_idx, size=rows, replace=False))
    shrink = math.sqrt(rows / len(train_idx))
    screened = dict(params)
    for name, least in (("min_samples_leaf", 1), ("min_samples_split", 2)):
        if name in screened:
            screened[name] = max(least, round(screened[name] * shrink))
    if "n_estimators" in screened:
        screened["n_estimators"] = min(int(screened["n_estimators"]), max_trees)
    pipeline = fit_quietly(
        build_pipeline(screened, seed=seed), features.iloc[sample], target.iloc[sample]
    )
    probabilities = pipeline.predict_proba(features.iloc[valid_idx])[:, 1]
    score = float(roc_auc_score(target.iloc[valid_idx], probabilities))
    if not math.isfinite(score):
        raise TrialScoreError(f"the screening fit gave a non-finite ROC AUC ({score})")
    return score


def holdout_metrics(
    pipeline: Pipeline, features: pd.DataFrame, target: pd.Series
) -> dict[str, float]:
    """Metrics of a fitted pipeline on rows it never saw (threshold 0.5 for the label metrics)."""
    probabilities = pipeline.predict_proba(features)[:, 1]
    predicted = (probabilities >= 0.5).astype(int)
    tn, fp, fn, tp = confusion_matrix(target, predicted, labels=[0, 1]).ravel()
    return {
        "roc_auc": float(roc_auc_score(target, probabilities)),
        "accuracy": float(accuracy_score(target, predicted)),
        "f1": float(f1_score(target, predicted, zero_division=0)),
        "precision": float(precision_score(target, predicted, zero_division=0)),
        "recall": float(recall_score(target, predicted, zero_division=0)),
        "log_loss": float(log_loss(target, probabilities, labels=[0, 1])),
        "true_negatives": float(tn),
        "false_positives": float(fp),
        "false_negatives": float(fn),
        "true_positives": float(tp),
    }
