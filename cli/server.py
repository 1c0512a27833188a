"""``sweepflow server start|stop|status``: a Prefect server kept running in the background.

With no ``PREFECT_API_URL``, every flow starts a temporary Prefect server of its own (~5 s on 2
cores, more on a fresh Prefect home) and stops it at exit, so its UI is gone when the summary
prints a link. ``sweepflow server start`` starts ``prefect server start`` detached, on
127.0.0.1, and records its process id and port in ``$PREFECT_HOME/sweepflow-server.json``.
Every later ``sweepflow`` command that finds that record, the process alive and the server
answering (:func:`recorded_server_url`, called by ``cli.common.process_defaults`` before Prefect
is imported) uses it as its ``PREFECT_API_URL``: no server start, and the UI already up.

A ``PREFECT_API_URL`` in the environment or in the active Prefect profile always wins, and
``SWEEPFLOW_USE_RUNNING_SERVER=false`` turns the lookup off. Only a server this command started
is used: a port that merely answers is not trusted.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import suppress
from pathlib import Path
from typing import Annotated

import typer

from cli import warm
from cli.common import LOCAL_SERVER_START_SECONDS, console, fail
from cli.record import (
    HOST,
    ServerRecord,
    prefect_home,
    read_record,
    record_path,
    write_record,
)
from sweepflow.processes import alive

app = typer.Typer(
    help="A Prefect server kept running in the background for sweepflow's commands.",
    no_args_is_help=True,
)

LOG_NAME = "sweepflow-server.log"
DEFAULT_PORT = 4200
#: How long a command waits for the recorded server's health check before it starts its own.
PROBE_SECONDS = 1.0


def _command_of(pid: int) -> list[bytes] | None:
    """The command line of the live process ``pid`` of this user (empty where there is no
    /proc, as on macOS); None when there is no such process, or it is someone else's."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):  # gone, or not ours to use or stop
        return None
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:  # no /proc: the pid is alive, the health check decides
        return []


def _is_our_server(pid: int) -> bool:
    """The process ``pid`` is alive and is a ``prefect server start`` (not a recycled pid)."""
    command = _command_of(pid)
    if not command:
        return command is not None
    return b"server" in command and any(part.endswith(b"prefect") for part in command)


def _is_our_runner(record: ServerRecord) -> bool:
    """The record's warm sweep process is alive (not a recycled pid)."""
    command = None if record.runner_pid is None else _command_of(record.runner_pid)
    if not command:
        return command is not None
    return b"-m" in command and b"cli.warm" in command


def answers(url: str, timeout: float = PROBE_SECONDS) -> bool:
    """The Prefect API at ``url`` answers its health check within ``timeout`` seconds."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def _profile_sets_api_url(home: Path) -> bool:
    """The active Prefect profile (``profiles.toml``) sets ``PREFECT_API_URL``."""
    import tomllib

    try:
        profiles = tomllib.loads((home / "profiles.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active") or "ephemeral"
    return bool(profiles.get("profiles", {}).get(active, {}).get("PREFECT_API_URL"))


def recorded_server_url() -> str | None:
    """The API URL of the server ``sweepflow server start`` left running, when this process
    should use it: no ``PREFECT_API_URL`` set (environment or profile), the lookup not turned
    off, the recorded process alive and answering. None otherwise (a temporary server then).
    """
    from sweepflow import settings

    if os.environ.get("PREFECT_API_URL"):
        return None
    try:
        found = settings.current()
    except settings.SettingsError:  # the command reports it next
        return None
    if not found.sweepflow_use_running_server:
        return None
    home = found.prefect_home.expanduser().resolve()
    record = read_record(home)
    if record is None or not _is_our_server(record.pid) or _profile_sets_api_url(home):
        return None
    return record.api_url if answers(record.api_url) else None


def _port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_server(home: Path, port: int, *, timeout: float) -> ServerRecord:
    """Start ``prefect server start`` detached on ``port``, record it, wait until it answers.

    Raises:
        RuntimeError: the server exited or did not answer within ``timeout`` seconds (it is
            stopped, and the message names its log).
    """
    home.mkdir(parents=True, exist_ok=True)
    log = home / LOG_NAME
    env = {**os.environ, "PREFECT_HOME": str(home)}
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    env.pop("PREFECT_API_URL", None)
    prefect = str(Path(sys.executable).parent / "prefect")
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            [prefect, "server", "start", "--host", HOST, "--port", str(port)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this command; stop takes its whole group
        )
    record = ServerRecord(pid=process.pid, port=port, prefect_home=str(home), started=time.time())
    write_record(record, home)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            record_path(home).unlink(missing_ok=True)
            raise RuntimeError(
                f"the Prefect server exited with {process.returncode} before answering; see {log}"
            )
        if answers(record.api_url, timeout=2):
            return record
        time.sleep(0.3)
    stop_server(record, home)
    raise RuntimeError(f"the Prefect server did not answer within {timeout:.0f} s; see {log}")


def start_runner(record: ServerRecord, home: Path, *, timeout: float) -> ServerRecord:
    """Start the warm sweep process (``python -m cli.warm``) beside the running server, record
    it, and wait until it listens. It gets the environment and working folder this command
    started with: the sweeps it runs must have the same (``cli/warm/``).

    Raises:
        RuntimeError: it exited or did not listen within ``timeout`` seconds (it is stopped,
            the server keeps running, and the message names its log).
    """
    folder = Path(tempfile.mkdtemp(prefix="sweepflow-"))  # private (0700), and a short path
    path = folder / warm.SOCKET_NAME
    log = home / warm.LOG_NAME
    with open(log, "ab") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "cli.warm", str(path)],
            env=warm.environment_at_start(),
            stdin=subprocess.DEVNULL,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    record = dataclasses.replace(record, runner_pid=process.pid, runner_socket=str(path))
    write_record(record, home)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if _listens(path):
            return record
        time.sleep(0.2)
    stop_runner(record)
    record = dataclasses.replace(record, runner_pid=None, runner_socket=None)
    write_record(record, home)
    raise RuntimeError(f"the warm sweep process did not start; see {log}")


def _listens(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def stop_runner(record: ServerRecord) -> bool:
    """Stop the record's warm sweep process (sweeps it already runs go on) and remove its
    socket's folder. True when it was running."""
    running = _is_our_runner(record)
    if running and record.runner_pid is not None:
        with suppress(ProcessLookupError):
            os.kill(record.runner_pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and alive(record.runner_pid):
            time.sleep(0.1)
    if record.runner_socket:  # its socket and what its sweeps left, then the folder if empty
        path = Path(record.runner_socket)
        for left in [path, *path.parent.glob("imports-*.json")]:
            with suppress(OSError):
                left.unlink()
        with suppress(OSError):
            path.parent.rmdir()
    return running


def stop_server(record: ServerRecord, home: Path, timeout: float = 20) -> bool:
    """Stop the recorded server's process group and remove the record.

    Returns:
        True when a running server was stopped, False when it was already gone.
    """
    stop_runner(record)
    stopped = False
    if _is_our_server(record.pid):
        stopped = True
        with suppress(ProcessLookupError):
            os.killpg(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and alive(record.pid):
            time.sleep(0.2)
        if alive(record.pid):
            with suppress(ProcessLookupError):
                os.killpg(record.pid, signal.SIGKILL)
    record_path(home).unlink(missing_ok=True)
    return stopped


@app.command("start")
def start(
    port: Annotated[
        int,
        typer.Option(help="Port on 127.0.0.1; when taken, a free one is used. 0: any free port."),
    ] = DEFAULT_PORT,
    keep_warm: Annotated[
        bool,
        typer.Option(
            "--warm/--no-warm",
            help="Also keep a process with a sweep's imports done, which later sweeps start "
            "in (cli/warm/): ~4 s sooner each.",
        ),
    ] = True,
) -> None:
    """Start a Prefect server in the background; later sweepflow commands use it."""
    home = prefect_home()
    record = read_record(home)
    if record is not None and _is_our_server(record.pid):
        console.print(f"already running: {record.ui_url} (pid {record.pid})", highlight=False)
        if keep_warm and not _is_our_runner(record):  # gone (the code changed, say): again
            stop_runner(record)
            _keep_warm(record, home)
        return
    chosen = port
    if port == 0 or not _port_is_free(port):
        chosen = _free_port()
        if port:
            console.print(f"port {port} is taken; using {chosen}", highlight=False)
    console.print(f"starting a Prefect server on {HOST}:{chosen} (Prefect home {home}) ...")
    try:
        record = start_server(home, chosen, timeout=float(LOCAL_SERVER_START_SECONDS))
    except RuntimeError as error:
        raise fail(str(error), code=1) from None
    console.print(
        f"Prefect server running: {record.ui_url} (pid {record.pid}). sweepflow commands "
        f"use it now; stop it with: sweepflow server stop",
        highlight=False,
        soft_wrap=True,
    )
    if keep_warm:
        _keep_warm(record, home)


def _keep_warm(record: ServerRecord, home: Path) -> None:
    """Start the warm sweep process beside the server and say so (or why not)."""
    try:
        record = start_runner(record, home, timeout=float(LOCAL_SERVER_START_SECONDS))
    except RuntimeError as error:
        console.print(f"{error}: sweeps start as usual", highlight=False, soft_wrap=True)
        return
    console.print(
        f"Warm sweep process ready (pid {record.runner_pid}): sweeps start in it, imports done.",
        highlight=False,
    )


@app.command("stop")
def stop() -> None:
    """Stop the Prefect server that ``sweepflow server start`` started."""
    home = prefect_home()
    record = read_record(home)
    if record is None:
        console.print("no server started by sweepflow server start is recorded")
        return
    if stop_server(record, home):
        console.print(f"stopped the Prefect server on port {record.port} (pid {record.pid})")
    else:
        console.print("the recorded server was no longer running; record removed")


@app.command("status")
def status() -> None:
    """Say whether the server of ``sweepflow server start`` runs, and where."""
    home = prefect_home()
    record = read_record(home)
    if record is None or not _is_our_server(record.pid):
        console.print("not running (sweep commands start a temporary server)")
        raise typer.Exit(3)
    state = "running" if answers(record.api_url) else "started, not answering yet"
    console.print(f"{state}: {record.ui_url} (pid {record.pid})", highlight=False)
    if _is_our_runner(record):
        console.print(f"warm sweep process: running (pid {record.runner_pid})", highlight=False)
    else:
        console.print("warm sweep process: not running (sweeps start in their own process)")
