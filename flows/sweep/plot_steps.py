"""The sweep's plots, as plain functions: the best model's and the study's, logged on the
sweep's parent run, and the process that draws the study's apart (``churnml.plots.apart``)
when the trials leave a core free. Nothing here imports Prefect; the ``log-plots`` task wraps
:func:`log_plots`."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import optuna

from churnml import plots
from churnml.config import SweepConfig
from churnml.plots.apart import DrawingError, StudyDrawer
from churnml.prepare import PreparedData
from flows import runtime
from flows.sweep.trial_steps import TrialContext
from tracking import plots as plot_store
from tracking.store import client_for


class DrawerSlot:
    """The sweep's drawing process (``churnml.plots.apart``), started once the first trial has
    ended: the flow's start (imports, API calls, the first trial's set-up) is then over, and
    the process imports what drawing needs on the core the trials leave free."""

    def __init__(self) -> None:
        self.drawer: StudyDrawer | None = None
        self.failed = False
        self._lock = threading.Lock()

    def start(self) -> StudyDrawer | None:
        """The process, started now if it is not yet (None when it cannot be)."""
        with self._lock:
            if self.drawer is None and not self.failed:
                try:
                    self.drawer = StudyDrawer.start()
                except OSError:  # no process to be had: drawn here, as before
                    self.failed = True
            return self.drawer

    def close(self) -> None:
        with self._lock:
            if self.drawer is not None:
                self.drawer.close()


@contextmanager
def study_drawer(config: SweepConfig) -> Iterator[DrawerSlot | None]:
    """A slot for a process to draw the study's plots apart, when the trials leave a core free
    (on threads, ``parallel`` below the machine's cores); None otherwise, and the plots are
    drawn in this process. The process starts as the first trial ends, and is killed on
    leaving."""
    if config.task_runner != "threads" or config.parallel >= (os.cpu_count() or 1):
        yield None
        return
    slot = DrawerSlot()

    def on_progress(progress: runtime.TrialProgress) -> None:
        if progress.done >= 1:
            slot.start()

    try:
        with runtime.progress_listener(on_progress):
            yield slot
    finally:
        slot.close()


def study_title(study: optuna.Study) -> str:
    return f"Optuna study {study.study_name}"


def hand_over_study(
    slot: DrawerSlot | None, study: optuna.Study, context: TrialContext
) -> StudyDrawer | None:
    """Give the drawing process the finished study, to draw while the best point is refit and
    registered; None (the plots are drawn here) when there is none or it cannot take it."""
    drawer = slot.start() if slot is not None else None
    if drawer is None:
        return None
    try:
        drawer.submit(study, seed=context.seed, title=study_title(study))
    except DrawingError:
        return None
    return drawer


def log_plots(
    model: Any,
    study: optuna.Study,
    data: PreparedData,
    context: TrialContext,
    drawer: StudyDrawer | None = None,
) -> plot_store.PlotReport:
    """Draw the best model's plots (on the holdout) and the study's, and log them on the
    sweep's parent run, where the best model is logged too. The study's come from ``drawer``
    when it was handed the study (:func:`hand_over_study`), and are drawn here should it fail.

    A model plot that cannot be drawn (say, a holdout of one class) is reported as skipped,
    like a study plot with too few trials; errors of the tracking store propagate.
    """
    client = client_for(context.target)
    skipped: dict[str, str] = {}
    try:
        drawers = plots.model_figure_drawers(model, data.x_test, data.y_test)
    except ValueError as error:
        drawers = {}
        skipped |= {name: str(error) for name in plots.MODEL_PLOTS}
    paths: list[str] = []
    # One figure at a time: each is saved and let go before the next is drawn, so the five are
    # never alive together at the end of the run, where the sweep's memory peaks.
    for name, draw in drawers.items():
        try:
            figure = draw()
        except ValueError as error:
            skipped[name] = str(error)
            continue
        paths += plot_store.log_model_plots(client, context.parent_run_id, {name: figure})
        del figure
    drawn = None
    if drawer is not None:
        with suppress(DrawingError):
            drawn = drawer.result()
    if drawn is not None:
        skipped |= drawn.skipped
        paths += plot_store.log_study_files(client, context.parent_run_id, drawn)
    else:
        study_plots = plots.study_figures(study, seed=context.seed)
        skipped |= study_plots.skipped
        paths += plot_store.log_study_plots(
            client, context.parent_run_id, study_plots, title=study_title(study)
        )
    return plot_store.PlotReport(
        links=plot_store.plot_links(
            context.target, context.experiment_id, context.parent_run_id, paths
        ),
        skipped=skipped,
    )
