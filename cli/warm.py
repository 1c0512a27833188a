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
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

#: The commands handed to the runner.
HANDED_OVER = ("sweep",)
#: Environment variables read when the runner imports its modules; the command's must match.
IMPORT_TIME_PREFIXES = (
    "PREFECT_",
    "MLFLOW_",
    "PYTHON",
    "MALLOC_",
    "GLIBC_",
    "OMP_",
    "OPENBLAS_",
    "MKL_",
    "NUMEXPR_",
    "SKLEARN_",
    "JOBLIB_",
    "LC_",
)
IMPORT_TIME_NAMES = ("HOME", "LANG", "TZ")
#: Files in the working folder that Prefect reads its settings from.
PREFECT_SETTINGS_FILES = (".env", "prefect.toml", "pyproject.toml")
#: Seconds the console script waits to connect and to hear back before running the command
#: itself (the runner answers in milliseconds; a runner that does not is not used).
ANSWER_SECONDS = 5.0
#: The record ``sweepflow server start`` leaves in the Prefect home (``cli/server.py``).
RECORD_NAME = "sweepflow-server.json"
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


def identity(environ: Mapping[str, str], folder: Path) -> dict[str, Any]:
    """What a warm process must share with a command to run it: the environment read at import
    time and the Prefect settings files in the working folder (their sha256)."""
    variables = {
        name: value
        for name, value in environ.items()
        if name.startswith(IMPORT_TIME_PREFIXES) or name in IMPORT_TIME_NAMES
    }
    files = {}
    for name in PREFECT_SETTINGS_FILES:
        with contextlib.suppress(OSError):
            files[name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    return {"environment": variables, "files": files}


def differences(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """What differs between two identities, by name (never the values: they may be secrets)."""
    found = []
    for part in ("environment", "files"):
        a, b = ours.get(part, {}), theirs.get(part, {})
        found += sorted(name for name in a.keys() | b.keys() if a.get(name) != b.get(name))
    return found


#: The folder sweepflow's packages are in.
CODE_ROOT = Path(__file__).resolve().parent.parent


def _interpreter() -> list[str]:
    """The Python and the checkout a process runs: a command and its warm process share both
    (another virtual environment or checkout with the same Prefect home does not)."""
    return [sys.executable, str(CODE_ROOT)]


def code_fingerprint(root: Path = CODE_ROOT) -> dict[str, list[int]]:
    """The size and modification time of every module this process imported from the packages
    in ``root`` (sweepflow's code), and of the folders packages are installed in (an install
    or removal changes them). ~2 ms: modules are told apart by their package's name, not by
    resolving thousands of paths."""
    import site

    ours = {entry.name for entry in root.iterdir() if (entry / "__init__.py").is_file()}
    files: set[str] = set()
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if path and name.partition(".")[0] in ours:
            files.add(path)
    files.update(p for p in (*site.getsitepackages(), site.getusersitepackages()) if p)
    stamps = {}
    for path in sorted(files):
        try:
            stat = os.stat(path)
            stamps[path] = [stat.st_mtime_ns, stat.st_size]
        except OSError:
            stamps[path] = [0, -1]
    return stamps


# --------------------------------------------------------------------------- the console script


def runner_socket() -> Path | None:
    """The socket of the runner ``sweepflow server start`` recorded, if it should be used:
    the lookup on, no ``PREFECT_API_URL`` of the user's own, and a runner recorded."""
    from sweepflow import settings

    if os.environ.get("PREFECT_API_URL"):
        return None
    try:
        found = settings.current()
    except settings.SettingsError:  # the command reports it
        return None
    if not (found.sweepflow_use_running_server and found.sweepflow_warm_sweeps):
        return None
    home = found.prefect_home.expanduser().resolve()
    try:
        raw = json.loads((home / RECORD_NAME).read_text(encoding="utf-8"))
        path = Path(raw["runner_socket"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
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
        "interpreter": _interpreter(),
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


# --------------------------------------------------------------------------- the runner


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
    learned = Learned(_learned_file())
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


class Learned:
    """Modules sweeps imported that the runner had not (a store's database layer, a backend's
    client, a plot's image format): each child lists them at its exit, and the runner imports
    them before its next fork, so the next sweep finds them imported. Kept in the cache folder
    for the next runner. A module whose import fails is skipped; one whose import starts a
    thread is not kept, and the runner stops (a fork keeps only the thread that forks)."""

    def __init__(self, file: Path | None) -> None:
        self.file = file

    def read(self) -> list[str]:
        if self.file is None:
            return []
        try:
            names = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [name for name in names if isinstance(name, str)]

    def import_modules(self, names: list[str]) -> bool:
        """Import ``names`` not imported yet; True when any was. Raises SystemExit when an
        import started a thread (after keeping the others)."""
        import importlib
        import threading

        kept = set(self.read())
        imported = False
        threads = threading.active_count()
        for name in sorted(set(names) - set(sys.modules)):
            try:
                importlib.import_module(name)
            except BaseException:  # a module meant for another context: skipped
                continue
            if threading.active_count() > threads:
                self._keep(kept)
                raise SystemExit(f"sweepflow runner: importing {name} started a thread; exiting")
            kept.add(name)
            imported = True
        self._keep(kept)
        return imported

    def _keep(self, names: set[str]) -> None:
        if self.file is None:
            return
        with contextlib.suppress(OSError):
            self.file.parent.mkdir(parents=True, exist_ok=True)
            partial = self.file.with_suffix(f".{os.getpid()}.tmp")
            partial.write_text(json.dumps(sorted(names)), encoding="utf-8")
            partial.replace(self.file)

    @staticmethod
    def report_at_exit(folder: Path) -> None:
        """In a child: at its exit, list the modules it imported beyond the runner's."""
        import atexit

        had = frozenset(sys.modules)

        def report() -> None:
            new = sorted(name for name in set(sys.modules) - had if not name.startswith("__"))
            with contextlib.suppress(OSError):
                (folder / f"imports-{os.getpid()}.json").write_text(json.dumps(new))

        atexit.register(report)

    def take_from(self, folder: Path, pid: int) -> bool:
        """Import what the child ``pid`` listed; True when anything was imported."""
        listed = folder / f"imports-{pid}.json"
        try:
            names = json.loads(listed.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        finally:
            listed.unlink(missing_ok=True)
        return self.import_modules([name for name in names if isinstance(name, str)])


def _learned_file() -> Path | None:
    """Where the modules sweeps import are kept, per Python environment."""
    from sweepflow import settings

    try:
        folder = settings.current().cache_dir
    except settings.SettingsError:
        return None
    environment = hashlib.sha256(sys.prefix.encode()).hexdigest()[:12]
    return folder / f"warm-modules-{environment}.json"


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
        if request.get("interpreter") != _interpreter():
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

if __name__ == "__main__":
    main()
