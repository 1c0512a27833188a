"""Local server processes: a free port, start in a process group, wait until it answers, stop.

Used wherever sweepflow starts a server of its own on this machine: the tests, the benchmarks.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from contextlib import suppress
from pathlib import Path

#: The checkout (servers start here unless told otherwise).
REPO = Path(__file__).resolve().parents[1]


def alive(pid: int) -> bool:
    """``pid`` is still running: a child of this process that ended is reaped and counts as
    gone; another user's process counts as running."""
    with suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_for_http(url: str, *, timeout: float, process: subprocess.Popen | None = None) -> None:
    """Poll ``url`` until it answers 200, failing early if ``process`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stop(process: subprocess.Popen, timeout: float = 20) -> None:
    """Terminate a process group started by :func:`start`, then kill it if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


def start(command: list[str], *, env: dict[str, str], log: Path, cwd: Path = REPO):
    """Start a server in its own process group (so :func:`stop` takes its children too)."""
    handle = open(log, "wb")  # noqa: SIM115 - closed with the process by the caller's stop()
    return subprocess.Popen(
        command, env=env, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
