"""``sweepflow server start|stop|status``: a real Prefect server on a free 127.0.0.1 port, in a
Prefect home of the test's own; sweepflow's commands find it, and use it, only while it runs."""

from __future__ import annotations

import json
import os
import pty
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import server, warm
from cli.record import RECORD_NAME
from sweepflow.processes import free_port

SWEEPFLOW = Path(sys.executable).parent / "sweepflow"
FOUND = "import os; from cli.common import process_defaults; process_defaults(); " + (
    "print(os.environ.get('PREFECT_API_URL') or 'none')"
)


def environment(home: Path, **extra: str) -> dict[str, str]:
    """The test's environment with its own Prefect home and stores, no Prefect server set."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PREFECT_", "MLFLOW_", "OPTUNA_", "SWEEPFLOW_"))
    }
    env |= {
        "PREFECT_HOME": str(home / ".prefect"),
        "SWEEPFLOW_MLRUNS": str(home / "mlruns"),
        "SWEEPFLOW_CACHE_DIR": str(home / "cache"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    return env | extra


def run(home: Path, *args: str, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SWEEPFLOW), *args],
        env=environment(home, **extra),
        cwd=home,
        capture_output=True,
        text=True,
        timeout=300,
    )


def found_by_a_command(home: Path, **extra: str) -> str:
    """What a sweepflow command started now would use as its Prefect API."""
    result = subprocess.run(
        [sys.executable, "-c", FOUND],
        env=environment(home, **extra),
        cwd=Path(server.__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict]]:
    """A server started by ``sweepflow server start`` (stopped, and checked gone, after)."""
    home = tmp_path_factory.mktemp("server-home")
    port = free_port()
    started = run(home, "server", "start", "--port", str(port))
    record_file = home / ".prefect" / RECORD_NAME
    record = json.loads(record_file.read_text()) if record_file.exists() else {}
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert record["port"] == port
        yield home, record
    finally:
        # The record as it is now (a test may have brought a new warm process).
        final = json.loads(record_file.read_text()) if record_file.exists() else {}
        stopped = run(home, "server", "stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert not record or not alive(record["pid"])
        for runner in (record, final):
            assert not runner.get("runner_pid") or not alive(runner["runner_pid"])
            assert (
                not runner.get("runner_socket") or not Path(runner["runner_socket"]).parent.exists()
            )
        assert not record_file.exists()


@pytest.mark.slow
def test_start_records_a_server_that_answers_and_status_says_so(running):
    home, record = running
    assert server.answers(f"http://127.0.0.1:{record['port']}/api")
    status = run(home, "server", "status")
    assert status.returncode == 0
    assert f"http://127.0.0.1:{record['port']}" in status.stdout
    current = server.read_record(home / ".prefect")
    assert f"warm sweep process: running (pid {current.runner_pid})" in status.stdout
    again = run(home, "server", "start")
    assert again.returncode == 0 and "already running" in again.stdout


@pytest.mark.slow
def test_commands_use_the_running_server_unless_told_otherwise(running):
    home, record = running
    url = f"http://127.0.0.1:{record['port']}/api"
    assert found_by_a_command(home) == url
    # An explicit server always wins, and the lookup can be turned off.
    assert found_by_a_command(home, PREFECT_API_URL="http://10.1.2.3:4200/api") == (
        "http://10.1.2.3:4200/api"
    )
    assert found_by_a_command(home, SWEEPFLOW_USE_RUNNING_SERVER="false") == "none"


@pytest.mark.slow
def test_a_sweep_runs_on_the_running_server_and_links_its_ui(running):
    home, record = running
    result = run(home, "sweep", "--rows", "600", "--trials", "2", "--parallel", "1")
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    link = f"open http://127.0.0.1:{record['port']}/runs/flow-run/"
    assert link in result.stdout
    assert "Starting temporary server" not in result.stdout + result.stderr
    # The command ends its process without Python's teardown: the flow's last logs still
    # reached the server first.
    flow_run_id = result.stdout.split(link, 1)[1].split()[0]
    request = urllib.request.Request(
        f"http://127.0.0.1:{record['port']}/api/logs/filter",
        data=json.dumps({"logs": {"flow_run_id": {"any_": [flow_run_id]}}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        messages = [log["message"] for log in json.load(response)]
    assert any("Finished in state Completed" in m for m in messages), messages[-5:]
    # It ran in the warm process, which reported its exit status, and then imported what the
    # sweep imported beyond it (MLflow's database layer, say): the next sweep finds it there.
    learned = next((home / "cache").glob("warm-modules-*.json"), None)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (
        learned is None or "sqlalchemy_store" not in learned.read_text()
    ):
        time.sleep(0.2)
        learned = next((home / "cache").glob("warm-modules-*.json"), None)
    assert learned is not None
    assert "mlflow.store.tracking.sqlalchemy_store" in json.loads(learned.read_text())
    assert re.search(
        r"pid \d+: sweep --rows 600 --trials 2 --parallel 1\n.*pid \d+: exit 0",
        runner_log(home),
        re.S,
    )


def runner_log(home: Path) -> str:
    return (home / ".prefect" / warm.LOG_NAME).read_text()


def in_a_terminal(home: Path, *args: str, **extra: str) -> tuple[int, str]:
    """Run a sweepflow command with a terminal as its standard streams; its exit code and
    what it wrote there."""
    main, other = pty.openpty()
    process = subprocess.Popen(
        [str(SWEEPFLOW), *args],
        env=environment(home, **extra),
        cwd=home,
        stdin=other,
        stdout=other,
        stderr=other,
    )
    os.close(other)
    output = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the terminal's last writer is gone
            break
        if not chunk:
            break
        output += chunk
    os.close(main)
    return process.wait(timeout=120), output.decode(errors="replace")


@pytest.mark.slow
def test_a_sweep_in_the_warm_process_writes_to_the_terminal_and_exits_with_its_status(running):
    home, _ = running
    before = runner_log(home)
    code, output = in_a_terminal(home, "sweep", "--trials", "0")
    assert code == 2
    # The one-line error, in colour: the child took the command's terminal as its own.
    assert "\x1b[1;31merror:\x1b[0m invalid sweep configuration" in output
    assert "Traceback" not in output
    assert re.search(r"pid \d+: exit 2\n", runner_log(home).removeprefix(before))


@pytest.mark.slow
def test_a_sweep_with_another_environment_runs_in_its_own_process(running):
    home, _ = running
    before = runner_log(home)
    # A value the warm process did not start with (the session may have set one already).
    threads = "13" if environment(home).get("OMP_NUM_THREADS") != "13" else "7"
    result = run(home, "sweep", "--trials", "0", OMP_NUM_THREADS=threads)
    assert result.returncode == 2
    assert result.stderr.startswith("error: invalid sweep configuration")
    new = runner_log(home).removeprefix(before)
    assert "refused a sweep (it runs in its own process): differs in OMP_NUM_THREADS" in new
    assert "pid" not in new


@pytest.mark.slow
def test_ctrl_c_reaches_the_sweep_in_the_warm_process(running):
    home, _ = running
    before = runner_log(home)
    process = subprocess.Popen(
        [str(SWEEPFLOW), "sweep", "--rows", "20000", "--trials", "200", "--parallel", "1"],
        env=environment(home),
        cwd=home,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        child = None
        while child is None and time.monotonic() < deadline:
            found = re.search(
                r"pid (\d+): sweep --rows 20000", runner_log(home).removeprefix(before)
            )
            child = int(found.group(1)) if found else None
            time.sleep(0.2)
        assert child is not None and alive(child)
        time.sleep(3)  # into its trials
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert code != 0
    assert not alive(child)
    assert re.search(rf"pid {child}: exit -?\d+", runner_log(home))


@pytest.mark.slow  # three sweepflow processes
def test_a_stale_record_is_ignored_and_status_says_not_running(tmp_path):
    home = tmp_path / ".prefect"
    home.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (home / RECORD_NAME).write_text(
        json.dumps({"pid": dead.pid, "port": free_port(), "prefect_home": str(home), "started": 0})
    )
    assert found_by_a_command(tmp_path) == "none"
    status = run(tmp_path, "server", "status")
    assert status.returncode == 3 and "not running" in status.stdout
    stop = run(tmp_path, "server", "stop")
    assert stop.returncode == 0 and "no longer running" in stop.stdout
    assert not (home / RECORD_NAME).exists()


def test_a_record_naming_a_process_that_is_not_a_prefect_server_is_not_used(tmp_path):
    home = tmp_path / ".prefect"
    home.mkdir()
    (home / RECORD_NAME).write_text(
        json.dumps({"pid": os.getpid(), "port": free_port(), "prefect_home": "x", "started": 0})
    )
    assert found_by_a_command(tmp_path) == "none"
    assert not server.stop_server(server.read_record(home), home)  # and never signalled
    assert alive(os.getpid())


def test_a_damaged_record_reads_as_none(tmp_path):
    (tmp_path / RECORD_NAME).write_text("{not json")
    assert server.read_record(tmp_path) is None


@pytest.mark.slow
def test_server_start_again_brings_back_a_warm_process_that_is_gone(running):
    home, _ = running
    before = server.read_record(home / ".prefect")
    assert before is not None and before.runner_pid is not None
    os.kill(before.runner_pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while alive(before.runner_pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    status = run(home, "server", "status")
    assert "warm sweep process: not running" in status.stdout
    # A sweep meanwhile runs in its own process (nobody listens on the socket).
    assert run(home, "sweep", "--trials", "0").returncode == 2
    again = run(home, "server", "start")
    assert again.returncode == 0
    assert "already running" in again.stdout and "Warm sweep process ready" in again.stdout
    after = server.read_record(home / ".prefect")
    assert after.pid == before.pid and after.runner_pid not in (None, before.runner_pid)
    assert not Path(before.runner_socket).parent.exists()
    logged = runner_log(home)
    assert run(home, "sweep", "--trials", "0").returncode == 2
    assert re.search(r"pid \d+: exit 2\n", runner_log(home).removeprefix(logged))


@pytest.mark.slow
def test_a_sweep_from_another_python_or_checkout_is_refused(running):
    home, _ = running
    current = server.read_record(home / ".prefect")
    request = {
        "argv": ["sweepflow", "sweep", "--trials", "0"],
        "environment": environment(home),
        "folder": str(home),
        "interpreter": ["/elsewhere/bin/python", "/elsewhere/checkout"],
        "streams": [None, None, None],
    }
    before = runner_log(home)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(30)
        connection.connect(current.runner_socket)
        socket.send_fds(connection, [json.dumps(request).encode() + b"\n"], [0, 1, 2])
        answer = connection.recv(4096)
    assert json.loads(answer) == {"refused": "another interpreter"}
    assert "another Python or checkout" in runner_log(home).removeprefix(before)
