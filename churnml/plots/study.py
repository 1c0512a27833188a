"""Pictures of the Optuna study: optimisation history, parameter importances, parallel
coordinates, slices.

Each comes twice: interactive (plotly, for an HTML page) and static (matplotlib, for PNG).
Plotly's own PNG export would need kaleido and a browser, which a sweep should not need. Optuna's
matplotlib plots draw through pyplot: they are made under the Agg backend, one at a time, and
released from pyplot at once, so no window opens and nothing piles up.
"""

from __future__ import annotations

import html
import threading
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import optuna

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


class _ImportancesOnce(optuna.importance.BaseImportanceEvaluator):
    """fANOVA (a forest fit on the trials) computed once for both pictures of the importances."""

    def __init__(self, seed: int) -> None:
        self._fanova = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        self._found: dict[tuple[Any, ...], dict[str, float]] = {}

    def evaluate(
        self, study: optuna.Study, params: list[str] | None = None, *, target: Any = None
    ) -> dict[str, float]:
        key = (id(study), tuple(params or ()), target)
        if key not in self._found:
            self._found[key] = self._fanova.evaluate(study, params=params, target=target)
        return self._found[key]


def _draw(study: optuna.Study, name: str, module: Any, seed: int, importances: Any = None) -> Any:
    arguments: dict[str, Any] = {"target_name": OBJECTIVE_NAME}
    if name == "param_importances":
        evaluator = importances or optuna.importance.FanovaImportanceEvaluator(seed=seed)
        arguments |= {"evaluator": evaluator, "params": varied_params(study)}
    elif name in ("parallel_coordinate", "slice"):
        arguments["params"] = varied_params(study)
    return getattr(module, f"plot_{name}")(study, **arguments)


def _static(study: optuna.Study, name: str, seed: int, importances: Any = None) -> Figure:
    import matplotlib

    # Files only, from whatever thread runs the task: never a GUI toolkit.
    matplotlib.use("Agg")
    from matplotlib import pyplot

    with _PYPLOT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        drawn = _draw(study, name, optuna.visualization.matplotlib, seed, importances)
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
    importances = _ImportancesOnce(seed)
    interactive = _draw(study, name, optuna.visualization, seed, importances)
    interactive.update_layout(title=STUDY_PLOTS[name])
    return StudyPlot(
        name=name,
        title=STUDY_PLOTS[name],
        interactive=interactive,
        static=_static(study, name, seed, importances),
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
