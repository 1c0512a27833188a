"""The command line while a sweep runs: a progress bar, quiet logs, one line on failure."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

import flows.sweep.flow  # noqa: F401 - sets Prefect's logging up now, not inside CliRunner's streams
from cli.common import _DropReported, quiet_console_logs
from cli.main import app
from flows import runtime
from flows.sweep import trial_steps as steps

runner = CliRunner()
SMALL = ("--rows", "600", "--trials", "3", "--folds", "2", "--pruner", "none")


def test_progress_listeners_hear_each_report_inside_their_block_only():
    heard: list[runtime.TrialProgress] = []

    def broken(progress: runtime.TrialProgress) -> None:
        raise RuntimeError("a display bug")

    with runtime.progress_listener(broken), runtime.progress_listener(heard.append):
        runtime.report_progress(runtime.TrialProgress("s", 1, 3, 0.8))
        runtime.report_progress(runtime.TrialProgress("s", 2, 3, None))
    runtime.report_progress(runtime.TrialProgress("s", 3, 3, 0.9))
    assert [(p.done, p.best) for p in heard] == [(1, 0.8), (2, None)]


def test_quiet_logs_keep_info_off_the_console_and_drop_reported_tracebacks():
    from prefect.logging.handlers import PrefectConsoleHandler

    handler = PrefectConsoleHandler()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        quiet_console_logs(reported=(KeyError,))
        assert handler.level == logging.WARNING
        assert logging.getLogger("mlflow").level == logging.WARNING
    finally:
        root.removeHandler(handler)
    drop = _DropReported((KeyError,))

    def record(error: BaseException | None) -> logging.LogRecord:
        info = (type(error), error, None) if error else None
        return logging.LogRecord("prefect", logging.ERROR, "f", 1, "failed", (), info)

    assert not drop.filter(record(KeyError("reported by the CLI")))
    assert drop.filter(record(ValueError("a real surprise")))
    assert drop.filter(record(None))


def test_help_offers_verbose():
    result = runner.invoke(app, ["sweep", "--help"])
    assert result.exit_code == 0
    assert "--verbose" in result.output


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_sweep_shows_progress_and_a_summary_without_log_noise():
    # A real process: its stderr is what a person sees, with Prefect's own console handler.
    from prefect.settings import PREFECT_API_URL

    done = subprocess.run(
        [sys.executable, "-m", "cli", "sweep", *SMALL, "--experiment", "cli-progress"],
        env=os.environ | {"PREFECT_API_URL": str(PREFECT_API_URL.value()), "COLUMNS": "120"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "3/3" in done.stderr and "sweep done" in done.stderr and "best CV AUC 0." in done.stderr
    assert "best trial" in done.stdout and "plots" in done.stdout
    for noise in ("Traceback", "Warning", "| INFO", "Finished in state", "Creating initial"):
        assert noise not in done.stdout + done.stderr, noise


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_a_failed_sweep_is_one_line_and_exit_code_1(monkeypatch, capfd):
    def broken(*args, **kwargs):
        raise ValueError("every trial breaks")

    monkeypatch.setattr(steps, "score_trial", broken)
    result = runner.invoke(app, ["sweep", *SMALL, "--experiment", "cli-broken"])
    assert result.exit_code == 1
    out = result.output + "".join(capfd.readouterr())
    assert "error: no trial completed" in out
    assert "Traceback" not in out
