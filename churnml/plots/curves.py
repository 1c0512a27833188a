"""Pictures of the best model on its holdout: ROC, precision-recall, confusion, calibration,
feature importances.

Drawn on matplotlib ``Figure`` objects made directly, never through pyplot, so they hold no
global state and are safe off the main thread.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    confusion_matrix,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from sklearn.pipeline import Pipeline

from churnml.model import feature_importances

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: File stem -> title of the best model's plots.
MODEL_PLOTS: dict[str, str] = {
    "roc_curve": "ROC curve (holdout)",
    "precision_recall_curve": "Precision-recall curve (holdout)",
    "confusion_matrix": "Confusion matrix (holdout)",
    "calibration_curve": "Calibration curve (holdout)",
    "feature_importances": "Importances of the selected features",
}


def _labels(target: pd.Series | np.ndarray, what: str) -> np.ndarray:
    labels = np.asarray(target).astype(int)
    if len(np.unique(labels)) < 2:
        raise ValueError(f"{what} needs rows of both classes (0 and 1); got only {labels[:1]}")
    return labels


def _probabilities(probabilities: Sequence[float] | np.ndarray, n_rows: int) -> np.ndarray:
    values = np.asarray(probabilities, dtype=float)
    if values.shape != (n_rows,):
        raise ValueError(f"expected {n_rows} probabilities, got an array of shape {values.shape}")
    return values


def _new_figure(width: float, height: float) -> Figure:
    # matplotlib is imported when a plot is first drawn, not by every importer of this module.
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _figure(width: float = 5.5, height: float = 4.5) -> tuple[Figure, Any]:
    figure = _new_figure(width, height)
    return figure, figure.subplots()


def roc_curve_figure(target: pd.Series | np.ndarray, probabilities: np.ndarray) -> Figure:
    """ROC curve with its AUC and the chance diagonal.

    Args:
        target: true 0/1 labels.
        probabilities: predicted probability of class 1, one per row.

    Raises:
        ValueError: the labels hold one class only, or the lengths differ.
    """
    labels = _labels(target, "a ROC curve")
    scores = _probabilities(probabilities, len(labels))
    fpr, tpr, _ = roc_curve(labels, scores)
    figure, axes = _figure()
    axes.plot(fpr, tpr, lw=2, label=f"model (AUC {roc_auc_score(labels, scores):.3f})")
    axes.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="chance (AUC 0.5)")
    axes.set(
        xlabel="False positive rate",
        ylabel="True positive rate",
        title=MODEL_PLOTS["roc_curve"],
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    axes.legend(loc="lower right")
    axes.grid(alpha=0.3)
    return figure


def precision_recall_figure(target: pd.Series | np.ndarray, probabilities: np.ndarray) -> Figure:
    """Precision against recall, with average precision and the churn rate as baseline.

    Raises:
        ValueError: the labels hold one class only, or the lengths differ.
    """
    labels = _labels(target, "a precision-recall curve")
    scores = _probabilities(probabilities, len(labels))
    precision, recall, _ = precision_recall_curve(labels, scores)
    rate = float(labels.mean())
    figure, axes = _figure()
    axes.step(
        recall,
        precision,
        where="post",
        lw=2,
        label=f"model (AP {average_precision_score(labels, scores):.3f})",
    )
    axes.axhline(rate, ls="--", color="grey", lw=1, label=f"churn rate ({rate:.3f})")
    axes.set(
        xlabel="Recall",
        ylabel="Precision",
        title=MODEL_PLOTS["precision_recall_curve"],
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    axes.legend(loc="upper right")
    axes.grid(alpha=0.3)
    return figure


def confusion_matrix_figure(
    target: pd.Series | np.ndarray, probabilities: np.ndarray, *, threshold: float = 0.5
) -> Figure:
    """Counts of true/predicted classes at ``threshold``, with each cell's share of its row.

    Raises:
        ValueError: the lengths differ or the threshold is outside (0, 1).
    """
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    labels = np.asarray(target).astype(int)
    scores = _probabilities(probabilities, len(labels))
    counts = confusion_matrix(labels, (scores >= threshold).astype(int), labels=[0, 1])
    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros(counts.shape), where=row_totals > 0)
    figure, axes = _figure(5.0, 4.2)
    image = axes.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (row, column), count in np.ndenumerate(counts):
        # White text on the dark cells, so every number stays readable.
        colour = "white" if shares[row, column] > 0.6 else "black"
        axes.text(
            column,
            row,
            f"{count}\n({shares[row, column]:.1%})",
            ha="center",
            va="center",
            color=colour,
        )
    names = ["stays (0)", "churns (1)"]
    axes.set_xticks([0, 1], labels=names)
    axes.set_yticks([0, 1], labels=names)
    axes.set(
        xlabel=f"Predicted (churns when p >= {threshold:g})",
        ylabel="True",
        title=MODEL_PLOTS["confusion_matrix"],
    )
    figure.colorbar(image, ax=axes, label="share of the true class")
    return figure


def calibration_figure(
    target: pd.Series | np.ndarray, probabilities: np.ndarray, *, n_bins: int = 10
) -> Figure:
    """Observed churn rate against mean predicted probability (quantile bins), and a histogram.

    Raises:
        ValueError: the labels hold one class only, or the lengths differ.
    """
    labels = _labels(target, "a calibration curve")
    scores = _probabilities(probabilities, len(labels))
    # Quantile bins hold equal numbers of rows, so no point rests on a handful of them.
    observed, predicted = calibration_curve(labels, scores, n_bins=n_bins, strategy="quantile")
    figure = _new_figure(5.5, 5.5)
    curve, histogram = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    curve.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    curve.plot(predicted, observed, marker="o", lw=2, label="model")
    curve.set(
        ylabel="Observed churn rate",
        title=MODEL_PLOTS["calibration_curve"],
        xlim=(0, 1),
        ylim=(0, 1.01),
    )
    curve.legend(loc="upper left")
    curve.grid(alpha=0.3)
    histogram.hist(scores, bins=20, range=(0, 1), color="tab:blue", alpha=0.7)
    histogram.set(xlabel="Predicted churn probability", ylabel="Rows")
    return figure


def feature_importance_figure(importances: Mapping[str, float], *, top: int = 20) -> Figure:
    """Horizontal bars of the largest importances, labelled with the real column names.

    Args:
        importances: feature name -> importance (e.g. :func:`churnml.model.feature_importances`).
        top: most bars to draw.

    Raises:
        ValueError: ``importances`` is empty.
    """
    if not importances:
        raise ValueError("no feature importances to plot")
    ranked = sorted(importances.items(), key=lambda pair: -pair[1])[:top]
    names = [name for name, _ in reversed(ranked)]
    values = [value for _, value in reversed(ranked)]
    figure, axes = _figure(6.0, max(2.5, 0.35 * len(ranked) + 1.2))
    axes.barh(names, values, color="tab:green")
    axes.set(xlabel="Mean decrease in impurity", title=MODEL_PLOTS["feature_importances"])
    axes.grid(axis="x", alpha=0.3)
    return figure


def model_figures(
    pipeline: Pipeline, features: pd.DataFrame, target: pd.Series
) -> dict[str, Figure]:
    """Every model plot of :data:`MODEL_PLOTS` for a fitted pipeline on rows it never saw.

    Args:
        pipeline: the fitted churn pipeline (preprocess -> select -> forest).
        features: raw holdout rows.
        target: their true labels.

    Raises:
        ValueError: the rows hold one class only.
    """
    return {name: draw() for name, draw in model_figure_drawers(pipeline, features, target).items()}


def model_figure_drawers(
    pipeline: Pipeline, features: pd.DataFrame, target: pd.Series
) -> dict[str, Callable[[], Figure]]:
    """The figures of :func:`model_figures`, each drawn when called (the holdout is scored
    once, here): a caller that saves each before drawing the next holds one figure at a time.

    A drawer raises ValueError when its plot cannot be drawn (rows of one class only).
    """
    probabilities = pipeline.predict_proba(features)[:, 1]
    return {
        "roc_curve": lambda: roc_curve_figure(target, probabilities),
        "precision_recall_curve": lambda: precision_recall_figure(target, probabilities),
        "confusion_matrix": lambda: confusion_matrix_figure(target, probabilities),
        "calibration_curve": lambda: calibration_figure(target, probabilities),
        "feature_importances": lambda: feature_importance_figure(feature_importances(pipeline)),
    }
