"""The console script's side: find the warm process, hand it the command, pass signals on and
wait for the exit status (``cli/warm/__init__.py`` says how it works)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cli.warm import ANSWER_SECONDS, environment_at_start
from cli.warm.matching import interpreter

#: The commands handed to the runner.
HANDED_OVER = ("sweep",)


def runner_socket() -> Path | None:
    """The socket of the warm process ``sweepflow server start`` recorded, if it should be
    used: the lookup on, no ``PREFECT_API_URL`` of the user's own, and a warm process recorded."""
    from cli.record import read_record
    from sweepflow import settings

    if os.environ.get("PREFECT_API_URL"):
        return None
    try:
        found = settings.current()
    except settings.SettingsError:  # the command reports it
        return None
    if not (found.sweepflow_use_running_server and found.sweepflow_warm_sweeps):
        return None
    record = read_record(found.prefect_home.expanduser().resolve())
    if record is None or record.runner_socket is None:
        return None
    path = Path(record.runner_socket)
    return path if path.is_socket() else None


def hand_over(arguments: list[str]) -> int | None:
    """Run this command in the warm runner, if there is one that can run it; its exit code.

    None when the command is not handed over (not a sweep, no runner, the runner refused or
    cannot be reached): the caller runs it itself. Once the runner has forked, the command is
    the child's: this process only passes signals on and waits for its exit status.
    """
    if not arguments or arguments[0] not in HANDED_OVER or not hasattr(socket, "SO_PEERCRED"):
        return None
    if any(arg in ("--help", "-h") for arg in arguments):
        return None
    path = runner_socket()
    if path is None:
        return None
    request = {
        "argv": [sys.argv[0], *arguments],
        "environment": environment_at_start(),
        "folder": os.getcwd(),
        "interpreter": interpreter(),
        "streams": [
            [stream.encoding, stream.errors] if stream else None
            for stream in (sys.stdin, sys.stdout, sys.stderr)
        ],
    }
    try:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(ANSWER_SECONDS)
        connection.connect(str(path))
        socket.send_fds(connection, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
        lines = _lines(connection)
        answer = next(lines)
    except (OSError, StopIteration, ValueError):
        return None
    if "pid" not in answer:  # refused: the command runs here
        connection.close()
        return None
    return _wait_for(connection, lines, int(answer["pid"]))


def _lines(connection: socket.socket) -> Iterator[dict[str, Any]]:
    """The JSON lines the runner sends."""
    buffer = b""
    while True:
        while b"\n" not in buffer:
            chunk = connection.recv(65536)
            if not chunk:
                return
            buffer += chunk
        line, buffer = buffer.split(b"\n", 1)
        yield json.loads(line)


#: Signals the console script passes on to the command running in the runner.
FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def _wait_for(connection: socket.socket, lines: Iterator[dict[str, Any]], pid: int) -> int:
    def forward(number: int, _frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, number)

    for number in FORWARDED:
        signal.signal(number, forward)
    connection.settimeout(None)
    try:
        status = next(lines, None)
    except (OSError, ValueError):
        status = None
    if status is None or "exit" not in status:  # the runner itself was stopped
        from sweepflow.processes import alive

        while alive(pid):  # the sweep still writes to this terminal: not before it ends
            time.sleep(0.2)
        sys.stderr.write("error: the warm sweep process stopped without the sweep's exit status\n")
        return 1
    code = int(status["exit"])
    return 128 - code if code < 0 else code  # killed by a signal: the shell's convention
