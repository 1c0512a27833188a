"""Figures on the sweep's parent run: Optuna's study plots under ``optuna/``, the best model's
under ``model/``.

Every call names its run (``MlflowClient.log_artifact`` with an explicit run id),
never the fluent "active run". The figures come from ``churnml.plots``; this module only stores
them and says where they can be seen.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import quote, urlencode

from mlflow import MlflowClient

from churnml.plots import MODEL_PLOTS, STUDY_PLOTS, StudyPlots
from churnml.plots.apart import STUDY_PAGE_FILE, DrawnStudy, save_png, write_study_plots
from tracking.store import TrackingTarget

if TYPE_CHECKING:
    from matplotlib.figure import Figure

OPTUNA_DIR = "optuna"
MODEL_DIR = "model"
#: The one interactive page of the study's plots (plotly.js embedded once).
STUDY_PAGE = f"{OPTUNA_DIR}/{STUDY_PAGE_FILE}"


@dataclass(frozen=True)
class PlotLink:
    """One logged plot and where a person can look at it."""

    title: str
    artifact_path: str
    #: The plot in the MLflow UI's artifact view of the run.
    page_url: str
    #: The file itself as the tracking server serves it (an image to embed), when a PNG.
    image_url: str | None = None


@dataclass(frozen=True)
class PlotReport:
    """What a sweep's plotting logged, and what it left out and why."""

    links: list[PlotLink] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)

    def link(self, artifact_path: str) -> PlotLink | None:
        """The link of ``artifact_path``, if it was logged."""
        return next((link for link in self.links if link.artifact_path == artifact_path), None)


def artifact_page_url(target: TrackingTarget, experiment_id: str, run_id: str, path: str) -> str:
    """The MLflow UI page that shows artifact ``path`` of a run."""
    return target.run_url(experiment_id, run_id, page=f"artifactPath/{quote(path)}")


def artifact_file_url(target: TrackingTarget, run_id: str, path: str) -> str:
    """The artifact's bytes as served by the MLflow server (or ``mlflow ui``) at ``ui_base``."""
    return f"{target.ui_base}/get-artifact?{urlencode({'path': path, 'run_uuid': run_id})}"


def _save(client: MlflowClient, run_id: str, figure: Figure, path: str) -> None:
    # Drawn here, then logged as a file: a local store's client holds its lock for each call
    # (tracking.store.SerializedClient), and drawing (~0.3 s a plot) must not hold it while the
    # model is being registered beside the plots.
    with tempfile.TemporaryDirectory(prefix="sweepflow-plot-") as folder:
        local = Path(folder) / PurePosixPath(path).name
        save_png(figure, local)
        client.log_artifact(run_id, str(local), artifact_path=str(PurePosixPath(path).parent))


def log_model_plots(client: MlflowClient, run_id: str, figures: Mapping[str, Figure]) -> list[str]:
    """Log the best model's figures as ``model/<name>.png``; returns the artifact paths.

    Args:
        client: a client of the tracking store.
        run_id: the run the model is logged on (the sweep's parent run).
        figures: name -> figure, e.g. from :func:`churnml.plots.model_figures`.
    """
    paths = []
    for name, figure in figures.items():
        path = f"{MODEL_DIR}/{name}.png"
        _save(client, run_id, figure, path)
        paths.append(path)
    return paths


def log_study_plots(
    client: MlflowClient, run_id: str, plots: StudyPlots, *, title: str
) -> list[str]:
    """Log each study plot as ``optuna/<name>.png`` and all of them as one interactive page
    (:data:`STUDY_PAGE`, logged even when every plot was skipped, so it says why).

    Returns:
        The artifact paths logged, the page first.
    """
    with tempfile.TemporaryDirectory(prefix="sweepflow-plot-") as folder:
        files = write_study_plots(plots, Path(folder), title=title)
        return log_study_files(client, run_id, DrawnStudy(Path(folder), files))


def log_study_files(client: MlflowClient, run_id: str, drawn: DrawnStudy) -> list[str]:
    """Log the study's plot files (drawn by ``churnml.plots.apart``) under ``optuna/``.

    Returns:
        The artifact paths logged, in the files' order (the page first).
    """
    for name in drawn.files:
        client.log_artifact(run_id, str(drawn.folder / name), artifact_path=OPTUNA_DIR)
    return [f"{OPTUNA_DIR}/{name}" for name in drawn.files]


def plot_links(
    target: TrackingTarget, experiment_id: str, run_id: str, paths: list[str]
) -> list[PlotLink]:
    """Links into the MLflow UI for logged plot artifacts, titled for people."""
    titles = {f"{MODEL_DIR}/{name}.png": title for name, title in MODEL_PLOTS.items()}
    titles |= {f"{OPTUNA_DIR}/{name}.png": title for name, title in STUDY_PLOTS.items()}
    titles[STUDY_PAGE] = "Optuna study plots (interactive)"
    return [
        PlotLink(
            title=titles.get(path, path),
            artifact_path=path,
            page_url=artifact_page_url(target, experiment_id, run_id, path),
            image_url=artifact_file_url(target, run_id, path) if path.endswith(".png") else None,
        )
        for path in paths
    ]
