"""What every command shares: the consoles, one-line errors and exit codes, process defaults
and a quiet console."""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console

from sweepflow import memory, settings

console = Console()
errors = Console(stderr=True)

EXIT_BAD_INPUT = 2
EXIT_SWEEP_FAILED = 1
#: A promotion refused because a model file failed its checks (the refusal is recorded).
EXIT_REFUSED = 1


#: Seconds the temporary Prefect server may take to start. Prefect's own limit (20 s) is shorter
#: than the first start on a fresh Prefect home takes on 2 cores (it creates and migrates its
#: database first), and the flow died on a newcomer's first sweep.
LOCAL_SERVER_START_SECONDS = "180"


def process_defaults() -> None:
    """Prefect settings for this process and the temporary server it starts, set before
    Prefect is imported; a value the user exported wins.

    - the server ``sweepflow server start`` keeps running is used when there is one and no
      ``PREFECT_API_URL`` is set (``cli/server.py``): no temporary server, the UI already up;
    - the temporary server gets the time its first start takes (see above);
    - its anonymous usage report is off: with no internet it only printed "database is locked"
      tracebacks and "Failed to send telemetry" errors on the console;
    - and what every process of ours runs with (``sweepflow.settings.FORCED_ENVIRONMENT``: no
      pickle loading through MLflow), whatever the user exported;
    - the allocator's settings (few arenas, large blocks given back when freed), before the
      first thread starts (``sweepflow.memory``).
    """
    memory.configure_allocator()
    if not os.environ.get("PREFECT_API_URL"):
        from cli.server import recorded_server_url  # here: it imports this module

        running = recorded_server_url()
        if running:
            os.environ["PREFECT_API_URL"] = running
    if not os.environ.get("PREFECT_API_URL"):
        os.environ.setdefault(
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", LOCAL_SERVER_START_SECONDS
        )
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    settings.force_process_environment()


class ServerStart:
    """Prefect's temporary server, started in the background while this command does other work.

    The flow would start the same server (Prefect keeps one per process) when it first needs the
    API and wait for it; started here, its boot (5 s on a quiet 2-core machine, far more on a
    fresh Prefect home) runs on the other core while this process imports the flow.
    """

    def __init__(self) -> None:
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        from prefect.settings import PREFECT_API_URL

        if PREFECT_API_URL.value():  # a server to use already: the environment, a profile, ours
            return
        from prefect.server.api.server import SubprocessASGIServer

        self._server = SubprocessASGIServer()
        # A daemon: a command that stops early never waits for the server's health check.
        self._thread = threading.Thread(
            target=self._start, args=(self._server,), name="prefect-server-start", daemon=True
        )
        self._thread.start()

    def _start(self, server: Any) -> None:
        try:
            server.start()
        except BaseException as error:  # raised in wait(), on the command's own thread
            self._error = error

    def wait(self) -> None:
        """Until the server answers; raise what stopped it from starting."""
        if self._thread is not None:
            self._thread.join()
        if self._error is not None:
            raise self._error

    def abandon(self) -> None:
        """Stop the server being started (the command found bad input meanwhile): its process
        ends now, not at the command's exit. It may have made Prefect's own database, nothing
        of sweepflow's."""
        if self._thread is None:
            return
        while self._thread.is_alive() and self._server.server_process is None:
            time.sleep(0.01)  # spawned a moment after the thread starts: stop that process
        with suppress(Exception):
            self._server.stop()
        self._thread.join(timeout=5)


def is_console_script() -> bool:
    """This process is the ``sweepflow`` command itself (or ``python -m cli``), not a test
    runner or another program that called into the command line."""
    started_as = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path()
    here = Path(__file__).resolve().parent
    return started_as.name == "sweepflow" or started_as.resolve() == here / "__main__.py"


def end_process(code: int = 0) -> NoReturn:
    """End the ``sweepflow`` process now: what a normal exit does, less the teardown.

    A normal exit first runs threading's exit hooks and joins the non-daemon threads (Prefect's
    log and event workers drain there), then the ``atexit`` handlers (the temporary Prefect
    server is stopped, logging flushed). Those run here, in that order, and the output streams
    are flushed. What is skipped is the interpreter's teardown of every module and object, which
    took 3-5 s after a sweep on a busy 2-core machine (Prefect, MLflow, scikit-learn, plotly)
    and does no work a sweep needs: every store commits as it goes.
    """
    import atexit
    import threading

    threading._shutdown()  # type: ignore[attr-defined] # what Py_FinalizeEx calls first
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):  # a closed or broken pipe: nothing more to write
            stream.flush()
    os._exit(code)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print one line to stderr and return the exit to raise."""
    errors.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def one_line(error: BaseException) -> str:
    """An error's message on one line."""
    return " ".join(str(error).split())


#: Loggers whose INFO lines are for --verbose: Prefect's task-run chatter, MLflow's store set-up.
CHATTY_LOGGERS = ("mlflow", "alembic")


class _DropReported(logging.Filter):
    """Drops log records carrying an error the command line reports itself, in one line."""

    def __init__(self, reported: tuple[type[BaseException], ...]) -> None:
        super().__init__()
        self.reported = reported

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not isinstance(error, self.reported)


def quiet_console_logs(reported: tuple[type[BaseException], ...] = ()) -> None:
    """Keep Prefect's and MLflow's INFO logs off the console for the rest of this process.

    Only the console is quietened: Prefect's loggers keep their level, so every flow and task
    log still reaches the Prefect API and its UI. Warnings and errors always show, except the
    traceback of an error in ``reported``, which the caller prints as one line. Not undone at
    the end of the sweep: the temporary Prefect server is stopped (and says so) at exit.
    """
    from prefect.logging.handlers import PrefectConsoleHandler

    # Prefect attaches its console handler to the root logger and to uvicorn/fastapi.
    for name in (None, "uvicorn", "fastapi"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, PrefectConsoleHandler):
                handler.setLevel(logging.WARNING)
                handler.addFilter(_DropReported(reported))
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
