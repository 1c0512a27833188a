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
) -> CVResult:
    """Stratified K-fold ROC AUC; every fold fits a fresh pipeline on its training rows only.

    Raises:
        TrialScoreError: when a fold's AUC is not finite.
    """
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    scores: list[float] = []
    started = time.perf_counter()
    for fold, (train_idx, valid_idx) in enumerate(splitter.split(features, target)):
        pipeline = fit_quietly(
            build_pipeline(params, seed=seed), features.iloc[train_idx], target.iloc[train_idx]
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
