"""Pictures of a sweep: the best model's curves and the Optuna study's plots.

Pure functions that return figures; saving them anywhere is the caller's business
(``tracking/plots.py`` logs them to MLflow). The model plots are drawn on matplotlib ``Figure``
objects made directly, never through pyplot, so they hold no global state and are safe off the
main thread. Optuna's matplotlib plots draw through pyplot: they are made under the Agg backend,
one at a time, and released from pyplot at once, so no window opens and nothing piles up.

The study plots come twice: interactive (plotly, for an HTML page) and static (matplotlib, for
PNG). Plotly's own PNG export would need kaleido and a browser, which a sweep should not need.
"""

from __future__ import annotations

import html
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd
from matplotlib.figure import Figure
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

#: File stem -> title of the best model's plots.
MODEL_PLOTS: dict[str, str] = {
    "roc_curve": "ROC curve (holdout)",
    "precision_recall_curve": "Precision-recall curve (holdout)",
    "confusion_matrix": "Confusion matrix (holdout)",
    "calibration_curve": "Calibration curve (holdout)",
    "feature_importances": "Importances of the selected features",
}

#: File stem -> title of the Optuna study's plots.
STUDY_PLOTS: dict[str, str] = {
    "optimization_history": "Optimisation history",
    "param_importances": "Parameter importances (fANOVA)",
    "parallel_coordinate": "Parallel coordinates",
    "slice": "Slice plot",
}

#: fANOVA fits a forest to (params -> value) over completed trials; below this it has nothing
#: to split on and every importance would be noise.
MIN_TRIALS_FOR_IMPORTANCES = 3

#: What the study's objective is, for axis labels.
OBJECTIVE_NAME = "CV ROC AUC"

# Optuna's matplotlib plots use pyplot, whose figure registry is process-global.
_PYPLOT_LOCK = threading.Lock()


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


def _figure(width: float = 5.5, height: float = 4.5) -> tuple[Figure, Any]:
    figure = Figure(figsize=(width, height), layout="constrained")
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
    figure = Figure(figsize=(5.5, 5.5), layout="constrained")
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
    probabilities = pipeline.predict_proba(features)[:, 1]
    return {
        "roc_curve": roc_curve_figure(target, probabilities),
        "precision_recall_curve": precision_recall_figure(target, probabilities),
        "confusion_matrix": confusion_matrix_figure(target, probabilities),
        "calibration_curve": calibration_figure(target, probabilities),
        "feature_importances": feature_importance_figure(feature_importances(pipeline)),
    }


# --------------------------------------------------------------------------- the study


@dataclass(frozen=True)
class StudyPlot:
    """One Optuna plot, interactive (a plotly figure) and static (a matplotlib figure)."""

    name: str
    title: str
    interactive: Any
    static: Figure


@dataclass(frozen=True)
class StudyPlots:
    """The study's plots that could be drawn, and why each other one was not."""

    plots: dict[str, StudyPlot] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def _complete(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))


def varied_params(study: optuna.Study) -> list[str]:
    """Parameters that took more than one value over the completed trials, in sorted order.

    A parameter held constant carries no information, and Optuna's plots warn on its empty axis.
    """
    values: dict[str, set[str]] = {}
    for trial in _complete(study):
        for name, value in trial.params.items():
            values.setdefault(name, set()).add(repr(value))
    return sorted(name for name, seen in values.items() if len(seen) > 1)


def study_plot_problem(study: optuna.Study, name: str) -> str | None:
    """Why the plot ``name`` cannot be drawn for ``study``, or None when it can.

    Raises:
        ValueError: ``name`` is not one of :data:`STUDY_PLOTS`.
    """
    if name not in STUDY_PLOTS:
        raise ValueError(f"unknown study plot {name!r}; known: {', '.join(STUDY_PLOTS)}")
    complete = len(_complete(study))
    if complete == 0:
        return "no trial completed"
    if name == "optimization_history":
        return None
    if not varied_params(study):
        return "no parameter took more than one value in the completed trials"
    if name == "param_importances" and complete < MIN_TRIALS_FOR_IMPORTANCES:
        return (
            f"fANOVA needs at least {MIN_TRIALS_FOR_IMPORTANCES} completed trials "
            f"(this study has {complete})"
        )
    return None


def _draw(study: optuna.Study, name: str, module: Any, seed: int) -> Any:
    arguments: dict[str, Any] = {"target_name": OBJECTIVE_NAME}
    if name == "param_importances":
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        arguments |= {"evaluator": evaluator, "params": varied_params(study)}
    elif name in ("parallel_coordinate", "slice"):
        arguments["params"] = varied_params(study)
    return getattr(module, f"plot_{name}")(study, **arguments)


def _static(study: optuna.Study, name: str, seed: int) -> Figure:
    import matplotlib

    # Files only, from whatever thread runs the task: never a GUI toolkit.
    matplotlib.use("Agg")
    from matplotlib import pyplot

    with _PYPLOT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        drawn = _draw(study, name, optuna.visualization.matplotlib, seed)
        every_axes = np.ravel(drawn)  # plot_slice returns one Axes per parameter
        figure = every_axes[0].get_figure()
        width, height = figure.get_figwidth(), figure.get_figheight()
        if name == "parallel_coordinate":
            # Optuna places one vertical axis per parameter in a fixed-width figure; give each
            # room so its tick labels do not run into the next one's.
            width = max(width, 1.4 * (len(varied_params(study)) + 1))
        if name == "slice":
            for axes in every_axes:
                axes.tick_params(axis="x", labelrotation=30)
        figure.set_size_inches(max(7.0, width), max(4.5, height))
        # The figure outlives pyplot's registry; savefig works on it all the same.
        pyplot.close(figure)
    return figure


def study_plot(study: optuna.Study, name: str, *, seed: int = 0) -> StudyPlot | None:
    """One of :data:`STUDY_PLOTS`, or None when :func:`study_plot_problem` says it cannot be.

    Args:
        study: the sweep's study (maximising CV ROC AUC).
        name: a key of :data:`STUDY_PLOTS`.
        seed: seed of the fANOVA forest, so importances repeat for the same trials.
    """
    if study_plot_problem(study, name) is not None:
        return None
    interactive = _draw(study, name, optuna.visualization, seed)
    interactive.update_layout(title=STUDY_PLOTS[name])
    return StudyPlot(
        name=name,
        title=STUDY_PLOTS[name],
        interactive=interactive,
        static=_static(study, name, seed),
    )


def study_figures(study: optuna.Study, *, seed: int = 0) -> StudyPlots:
    """Every plot of :data:`STUDY_PLOTS` that the study's trials allow; reasons for the rest.

    A plot that fails to draw is skipped with the error as its reason: a picture is never worth
    failing a sweep over.
    """
    result = StudyPlots()
    for name in STUDY_PLOTS:
        problem = study_plot_problem(study, name)
        if problem is not None:
            result.skipped[name] = problem
            continue
        try:
            plot = study_plot(study, name, seed=seed)
        except Exception as error:  # e.g. fANOVA on values that do not vary
            result.skipped[name] = f"{type(error).__name__}: {error}"
            continue
        if plot is not None:
            result.plots[name] = plot
    return result


def study_html(plots: StudyPlots, *, title: str) -> str:
    """One self-contained HTML page of the interactive plots, plotly.js embedded once.

    Embedding the script (about 5 MB) keeps the page working offline and inside the MLflow UI's
    artifact viewer; one page for all plots pays that once instead of once a plot.
    """
    sections = []
    script_included = False
    for plot in plots.plots.values():
        body = plot.interactive.to_html(
            full_html=False, include_plotlyjs=not script_included, default_height="520px"
        )
        script_included = True
        sections.append(f"<h2>{html.escape(plot.title)}</h2>\n{body}")
    for name, reason in plots.skipped.items():
        sections.append(
            f"<h2>{html.escape(STUDY_PLOTS[name])}</h2>\n<p>Not drawn: {html.escape(reason)}</p>"
        )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        "<style>body{font-family:sans-serif;margin:1.5em}h2{margin-top:1.5em}</style>\n"
        f"</head>\n<body>\n<h1>{html.escape(title)}</h1>\n"
        + "\n".join(sections)
        + "\n</body>\n</html>\n"
    )
