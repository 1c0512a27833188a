"""The warm process (``python -m cli.warm SOCKET``, started by ``sweepflow server start``):
import what a sweep needs, then fork a child for each command handed over, and report each
child's exit status to its console script (``cli/warm/__init__.py`` says how it works)."""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from typing import Any

from cli.warm import ANSWER_SECONDS
from cli.warm.learned import Learned, learned_file
from cli.warm.matching import code_fingerprint, differences, identity, interpreter


def serve(path: Path) -> socket.socket:
    """Import what a sweep needs, then fork a child for every command handed over.

    Returns only in a child: the connection it was forked for (the caller runs the command).
    """
    from cli.common import process_defaults

    started_with = identity(os.environ, Path.cwd())
    process_defaults()  # as a command does: the recorded server becomes PREFECT_API_URL
    api_url = os.environ.get("PREFECT_API_URL")
    if not api_url:
        raise SystemExit("sweepflow runner: no running Prefect server found; not started")
    _import_a_sweep()
    learned = Learned(learned_file())
    learned.import_modules(learned.read())
    import threading

    if threading.active_count() != 1:  # a fork keeps only this thread: nothing may run beside it
        names = [thread.name for thread in threading.enumerate()]
        raise SystemExit(f"sweepflow runner: threads started while importing ({names})")
    code = code_fingerprint()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    old_mask = os.umask(0o177)  # the socket: read and write for this user only
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_mask)
    listener.listen(16)
    waiting: dict[int, socket.socket] = {}  # child pid -> the console script's connection
    # One thread, no signal handlers: the listener and each child's pidfd (readable once it
    # has exited) are watched together; without pidfds, ended children are looked for twice
    # a second.
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    _log(f"ready on {path} (pid {os.getpid()})")
    while True:
        ready = selector.select(timeout=None if _HAS_PIDFD else 0.5)
        ended = [] if _HAS_PIDFD else _report_exits(waiting)
        for key, _ in ready:
            if key.fileobj is not listener:  # a child's pidfd: it ended
                selector.unregister(key.fileobj)
                os.close(key.fd)
                ended += _report_exits(waiting, key.data)
        for pid in ended:
            if learned.take_from(path.parent, pid):
                # The modules just imported are watched too; the stamps taken at the start
                # stay, so a change made since is still seen.
                code = code_fingerprint() | code
        if not any(key.fileobj is listener for key, _ in ready):
            continue
        connection, _ = listener.accept()
        try:
            child = _take(connection, listener, waiting, (started_with, code, api_url))
        except Exception as error:  # one bad request never stops the runner
            _log(f"request dropped: {error}")
            connection.close()
            continue
        if isinstance(child, socket.socket):  # in the child: the runner's fds are not its own
            for other in selector.get_map().values():
                if other.fileobj is not listener:
                    os.close(other.fd)
            selector.close()
            learned.report_at_exit(path.parent)
            return child
        if child is not None and _HAS_PIDFD:
            selector.register(os.pidfd_open(child), selectors.EVENT_READ, child)


def _import_a_sweep() -> None:
    """Everything a sweep imports before its first trial, and what its end imports."""
    import cli.main  # noqa: F401 - the command line
    import flows.sweep.flow  # noqa: F401 - the flow and its tasks
    from cli.sweep import import_end_of_run
    from tracking.store import warm_model_logging

    warm_model_logging()
    import_end_of_run()


def _log(message: str) -> None:
    print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {message}", flush=True)


def _peer_uid(connection: socket.socket) -> int:
    credentials = connection.getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
    )
    return struct.unpack("3i", credentials)[1]


def _take(
    connection: socket.socket,
    listener: socket.socket,
    waiting: dict[int, socket.socket],
    started: tuple[dict[str, Any], dict[str, list[int]], str],
) -> socket.socket | int | None:
    """Read one request; refuse it (None), or fork its child: its pid in the runner, the
    connection in the child. ``started``: the runner's identity, code fingerprint and
    Prefect API, from its start."""
    from cli.server import answers

    started_with, code, api_url = started
    connection.settimeout(ANSWER_SECONDS)
    if _peer_uid(connection) != os.getuid():
        raise PermissionError("a connection from another user")
    data, fds, _, _ = socket.recv_fds(connection, 1 << 20, 3)
    if not data and not fds:  # a probe: connected, sent nothing (``sweepflow server start``)
        connection.close()
        return None
    try:
        while not data.endswith(b"\n"):
            chunk = connection.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the request ended early")
            data += chunk
        request = json.loads(data)
        if len(fds) != 3:
            raise ValueError("the request did not pass its three standard streams")
        # Each refusal is logged before it is answered: the log says why by the time the
        # command hears it.
        if code_fingerprint() != code:
            _log("refused a sweep: sweepflow's code or the installed packages changed; exiting")
            _answer(connection, {"refused": "code changed"})
            raise SystemExit(0)
        if request.get("interpreter") != interpreter():
            _log("refused a sweep (it runs in its own process): another Python or checkout")
            _answer(connection, {"refused": "another interpreter"})
            return None
        theirs = identity(request["environment"], Path(request["folder"]))
        changed = differences(started_with, theirs)
        if changed:
            _log(f"refused a sweep (it runs in its own process): differs in {', '.join(changed)}")
            _answer(connection, {"refused": "environment differs"})
            return None
        if not answers(api_url):  # the command then starts a temporary server of its own
            _log(f"refused a sweep (it runs in its own process): {api_url} does not answer")
            _answer(connection, {"refused": "no server"})
            return None
        pid = os.fork()
        if pid == 0:
            try:
                listener.close()
                for other in waiting.values():
                    other.close()
                _become(request, fds)
            except BaseException:  # never back into the runner's loop
                import traceback

                traceback.print_exc()
                os._exit(1)
            return connection
        waiting[pid] = connection
        _log(f"pid {pid}: {' '.join(request['argv'][1:])}")
        _answer(connection, {"pid": pid})
        return pid
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def _answer(connection: socket.socket, message: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        connection.sendall(json.dumps(message).encode() + b"\n")


def _report_exits(waiting: dict[int, socket.socket], pid: int | None = None) -> list[int]:
    """Reap the child ``pid`` (or every child that ended) and send its exit status to its
    console script; the children reaped."""
    reaped = []
    for child in [pid] if pid is not None else list(waiting):
        try:
            ended, status = os.waitpid(child, os.WNOHANG)
        except ChildProcessError:
            continue
        if ended != child:
            continue
        connection = waiting.pop(child, None)
        code = os.waitstatus_to_exitcode(status)
        _log(f"pid {child}: exit {code}")
        if connection is not None:
            _answer(connection, {"exit": code})
            connection.close()
        reaped.append(child)
    return reaped


def _become(request: dict[str, Any], fds: list[int]) -> None:
    """In the child: take the command's streams, folder, environment and signals."""
    for number in (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    os.chdir(request["folder"])
    os.environ.clear()
    os.environ.update(request["environment"])
    sys.argv = list(request["argv"])
    for stream, kind in zip((sys.stdin, sys.stdout, sys.stderr), request["streams"], strict=False):
        if stream is not None and kind is not None:
            with contextlib.suppress(Exception):
                stream.reconfigure(encoding=kind[0], errors=kind[1], line_buffering=stream.isatty())
    # What looked at the streams and the environment when the runner imported: again, now.
    from prefect.logging.configuration import setup_logging

    setup_logging(incremental=False)
    from cli import common

    for console in (common.console, common.errors):
        console.__init__(stderr=console.stderr)  # type: ignore[misc] # colours, width, terminal


def run_command() -> None:
    """In the child: the command, as the console script runs it, ended the way it ends."""
    from cli.common import end_process
    from cli.main import app

    try:
        app()
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        if isinstance(done.code, str):
            sys.stderr.write(done.code + "\n")
    except BaseException:  # printed as Python would, then the exit status
        import traceback

        traceback.print_exc()
        code = 1
    end_process(code)


def main() -> None:
    """``python -m cli.warm SOCKET``: the runner (started by ``sweepflow server start``)."""
    from sweepflow import memory

    memory.configure_allocator(1)
    path = Path(sys.argv[1])
    try:
        connection = serve(path)
    finally:
        if os.getpid() == _runner_pid:
            with contextlib.suppress(OSError):
                path.unlink()
    connection.close()  # the runner reports the exit status; this child needs none of it
    run_command()


_runner_pid = os.getpid()


def _pidfd_works() -> bool:
    try:
        os.close(os.pidfd_open(os.getpid()))
    except (AttributeError, OSError):  # before Linux 5.3, or not Linux
        return False
    return True


_HAS_PIDFD = _pidfd_works()
