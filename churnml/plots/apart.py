"""The study's plots drawn in a process of their own, beside the end of a sweep.

After the last trial, the study's plots (matplotlib and plotly, 1.5-2.5 s) were the longest
step of a sweep's end; the refit, the registration and the skops file need the GIL as well, so
on threads of one process they only take turns. :class:`StudyDrawer` starts a drawing process
while the trials run, on a core they leave free, so its imports are done by the end; handed the
finished study's trials, it draws and writes the files while the sweep refits and registers, and
the sweep logs the files. Should it fail, the caller draws in its own process, as before.

The job goes to the process as a pickle on a pipe: one process of ours to a child of its own,
never a file that anyone else could write.

    python -m churnml.plots.apart FOLDER    # what StudyDrawer runs: one job read on stdin
"""

from __future__ import annotations

import importlib
import json
import pickle
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import optuna

from churnml.plots.study import StudyPlots, study_figures, study_html

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Dots per inch of the PNGs: sharp on a laptop screen, ~30-170 kB a plot.
PNG_DPI = 110

#: The one interactive page of the study's plots (plotly.js embedded once).
STUDY_PAGE_FILE = "study.html"

_RESULT = "result.json"

#: Imported by the drawing process while it waits for its job (Optuna's fANOVA fits
#: scikit-learn's forest).
_DRAWING_MODULES = (
    "matplotlib.pyplot",
    "optuna.visualization",
    "optuna.visualization.matplotlib",
    "sklearn.ensemble",
)


def save_png(figure: Figure, path: Path) -> None:
    """Write ``figure`` as a PNG; a "tight" box keeps Optuna's outside legends and long tick
    labels inside the picture."""
    figure.savefig(path, dpi=PNG_DPI, bbox_inches="tight")


def write_study_plots(plots: StudyPlots, folder: Path, *, title: str) -> list[str]:
    """Write the study's page (:data:`STUDY_PAGE_FILE`, even when every plot was skipped, so it
    says why) and each static figure as ``<name>.png`` into ``folder``.

    Each figure is cleared once saved: nothing draws it again, and the end of a sweep, where
    the plots are drawn, is where its memory peaks.

    Returns:
        The file names written, the page first.
    """
    (folder / STUDY_PAGE_FILE).write_text(study_html(plots, title=title), encoding="utf-8")
    names = [STUDY_PAGE_FILE]
    for name, plot in plots.plots.items():
        save_png(plot.static, folder / f"{name}.png")
        plot.static.clear()
        names.append(f"{name}.png")
    return names


@dataclass(frozen=True)
class DrawnStudy:
    """The study's plot files in ``folder`` (page first), and why each other plot was not
    drawn."""

    folder: Path
    files: list[str]
    skipped: dict[str, str] = field(default_factory=dict)


class DrawingError(RuntimeError):
    """The drawing process did not draw the study (it failed, or took too long)."""


class StudyDrawer:
    """A drawing process for one sweep: :meth:`start` it early, :meth:`submit` the study when
    its trials are done, take :meth:`result`, and :meth:`close` it (it is killed if still
    running, and its files removed)."""

    def __init__(self, process: subprocess.Popen[bytes], folder: Path) -> None:
        self._process = process
        self.folder = folder
        self._submitted = False

    @classmethod
    def start(cls) -> StudyDrawer:
        """Start the process; it imports what drawing needs, then waits for its job."""
        folder = Path(tempfile.mkdtemp(prefix="sweepflow-study-plots-"))
        try:
            # Its stderr (matplotlib's first-use notes, a traceback) goes to a file, not to the
            # console of the command that started it; a failure reports its end.
            with open(folder / "stderr.txt", "wb") as errors:
                process = subprocess.Popen(
                    [sys.executable, "-m", "churnml.plots.apart", str(folder)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.DEVNULL,
                    stderr=errors,
                )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        return cls(process, folder)

    def submit(self, study: optuna.Study, *, seed: int, title: str) -> None:
        """Hand the process the study's trials to draw (returns at once).

        Raises:
            DrawingError: the process is gone.
        """
        job = {
            "study_name": study.study_name,
            "directions": [d.name.lower() for d in study.directions],
            "trials": study.get_trials(deepcopy=False),
            "seed": seed,
            "title": title,
        }
        stdin = self._process.stdin
        if stdin is None:  # pragma: no cover - started with a pipe
            raise DrawingError("the drawing process has no input")
        try:
            stdin.write(pickle.dumps(job, protocol=pickle.HIGHEST_PROTOCOL))
            stdin.close()
        except OSError as error:  # it exited early: a broken pipe
            raise DrawingError(f"the drawing process is gone: {self._why()}") from error
        self._submitted = True

    def result(self, timeout: float = 300.0) -> DrawnStudy:
        """The files drawn for the submitted study.

        Raises:
            DrawingError: nothing was submitted, or the process failed or took longer than
                ``timeout`` seconds.
        """
        if not self._submitted:
            raise DrawingError("no study was handed to the drawing process")
        try:
            code = self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            raise DrawingError(f"the drawing process took over {timeout:.0f} s") from None
        if code != 0:
            raise DrawingError(f"the drawing process exited with {code}: {self._why()}")
        try:
            found = json.loads((self.folder / _RESULT).read_text(encoding="utf-8"))
            return DrawnStudy(self.folder, list(found["files"]), dict(found["skipped"]))
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise DrawingError(f"the drawing process left no result: {error}") from error

    def close(self) -> None:
        """Kill the process if it still runs; remove its files."""
        if self._process.poll() is None:
            self._process.kill()
        self._process.wait()
        if self._process.stdin is not None:
            self._process.stdin.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _why(self) -> str:
        try:
            lines = (self.folder / "stderr.txt").read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no error output"
        return lines[-1] if lines else "no error output"


def _draw_job(folder: Path) -> None:
    job = pickle.load(sys.stdin.buffer)  # from the sweep that started this process
    study = optuna.create_study(study_name=job["study_name"], directions=job["directions"])
    study.add_trials(job["trials"])
    plots = study_figures(study, seed=job["seed"])
    files = write_study_plots(plots, folder, title=job["title"])
    result = {"files": files, "skipped": plots.skipped}
    (folder / _RESULT).write_text(json.dumps(result), encoding="utf-8")


def main(argv: list[str]) -> int:
    folder = Path(argv[0])
    # What drawing imports, done before the job arrives (the trials are still running).
    import matplotlib

    matplotlib.use("Agg")
    for name in _DRAWING_MODULES:
        importlib.import_module(name)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    _draw_job(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
