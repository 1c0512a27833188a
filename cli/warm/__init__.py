"""A warm sweep process kept beside the server of ``sweepflow server start``: later sweeps start
without their imports.

Before its first trial a ``sweepflow sweep`` spends ~4-5 s importing Prefect, MLflow,
scikit-learn, skops and the flow (docs/benchmarks.md), every time. ``sweepflow server start``
therefore also starts this runner (``python -m cli.warm SOCKET``): one process that has imported
all of that once, and then waits on a Unix socket private to the user. The ``sweepflow sweep``
console script, before importing anything heavy, hands its command to the runner
(:func:`hand_over`): its arguments, environment, working folder and its three standard streams
(passed as file descriptors, so the progress bar and colours reach the same terminal). The
runner forks; the child becomes that command (its streams, folder and environment; Prefect's
console logging and the consoles set up again) and runs it as the command would have run it;
the runner reports the child's exit status, which the console script exits with. Ctrl-C and
termination signals the console script gets are passed on to the child.

A fork is only as good as what it inherits, so the runner refuses (and the command runs as
usual, in its own process) whenever what it imported could differ from what the command would
import: another Python or checkout, a different environment (variables read at import:
Prefect's, MLflow's, Python's, the allocator's and thread pools', the locale, ``HOME``),
different Prefect settings files in the working folder (``.env``, ``prefect.toml``,
``pyproject.toml``), or code changed on disk since it started (sweepflow's modules, an
installed or removed package: it then exits, and the next ``sweepflow server start`` starts a
fresh one); and when its server does not answer. Only the ``sweep`` command is handed over.
``SWEEPFLOW_WARM_SWEEPS=false`` turns the hand-over off (``SWEEPFLOW_USE_RUNNING_SERVER=false``
too, with the server's use).

Linux only (it needs ``SO_PEERCRED``); elsewhere, and whenever anything about the hand-over
fails before the fork, the command runs in its own process.

- ``client.py``: the console script's side: find the runner, hand the command over, wait;
- ``matching.py``: what a command must share with the runner (environment, files, code);
- ``runner.py``: the runner: import, listen, fork, report each exit status;
- ``learned.py``: the modules sweeps imported, imported by the runner for the next one.

This module holds only what every side shares, and imports nothing heavy: the console script
imports it before it knows whether it will run the command itself.
"""

from __future__ import annotations

import os

#: Seconds the console script waits to connect and to hear back before running the command
#: itself (the runner answers in milliseconds; a runner that does not is not used).
ANSWER_SECONDS = 5.0
LOG_NAME = "sweepflow-runner.log"
SOCKET_NAME = "runner.sock"

#: The environment this process started with, before any command set its defaults
#: (``cli.entry`` remembers it): what a runner started from here compares commands against.
_environment_at_start: dict[str, str] | None = None


def remember_environment() -> None:
    """Keep the environment as it is now, before the command line sets its defaults."""
    global _environment_at_start
    _environment_at_start = dict(os.environ)


def environment_at_start() -> dict[str, str]:
    """The environment this process started with (or, not started as the console script, the
    one it has now)."""
    return dict(_environment_at_start if _environment_at_start is not None else os.environ)
