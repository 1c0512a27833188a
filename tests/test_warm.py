"""The warm sweep process's rules, without a server (``cli/warm/``); the process itself, with
a real server and real sweeps handed to it, is tested in ``test_server_command.py``."""

from __future__ import annotations

import importlib
import json
import os
import socket
import sys
from pathlib import Path

import pytest

from cli.record import RECORD_NAME
from cli.warm import client, matching
from cli.warm.learned import Learned


def test_identity_holds_what_imports_read_and_differences_name_no_values(tmp_path):
    base = {"PREFECT_HOME": "/h", "HOME": "/root", "LANG": "C.UTF-8", "OMP_NUM_THREADS": "2"}
    ours = matching.identity(base | {"SWEEPFLOW_MLRUNS": "/a", "TERM": "xterm"}, tmp_path)
    # What sweepflow reads at run time, and the terminal, may differ from sweep to sweep.
    assert ours == matching.identity(base | {"SWEEPFLOW_MLRUNS": "/b", "COLUMNS": "80"}, tmp_path)
    theirs = matching.identity(base | {"OMP_NUM_THREADS": "1", "MLFLOW_X": "secret"}, tmp_path)
    assert matching.differences(ours, theirs) == ["MLFLOW_X", "OMP_NUM_THREADS"]
    assert "secret" not in " ".join(matching.differences(ours, theirs))


def test_prefect_settings_files_in_the_working_folder_are_part_of_the_identity(tmp_path):
    before = matching.identity({}, tmp_path)
    (tmp_path / "prefect.toml").write_text("[logging]\nlevel = 'DEBUG'\n")
    assert matching.differences(before, matching.identity({}, tmp_path)) == ["prefect.toml"]


def test_the_code_fingerprint_changes_when_an_imported_module_changes(tmp_path, monkeypatch):
    package = tmp_path / "warmprobe"
    package.mkdir()
    module = package / "__init__.py"
    module.write_text("VALUE = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("warmprobe")
    try:
        before = matching.code_fingerprint(tmp_path)
        assert str(module.resolve()) in before
        assert matching.code_fingerprint(tmp_path) == before
        stat = module.stat()
        os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
        assert matching.code_fingerprint(tmp_path) != before
    finally:
        sys.modules.pop("warmprobe", None)


def _record_runner(home: Path, path: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    record = {"pid": 1, "port": 1, "prefect_home": str(home), "started": 0}
    (home / RECORD_NAME).write_text(json.dumps(record | {"runner_socket": str(path)}))


@pytest.fixture
def prefect_home(tmp_path, monkeypatch):
    home = tmp_path / ".prefect"
    monkeypatch.setenv("PREFECT_HOME", str(home))
    monkeypatch.setenv("SWEEPFLOW_USE_RUNNING_SERVER", "true")
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return home


def test_only_a_sweep_is_handed_over(prefect_home, tmp_path):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "r.sock"))
    listener.listen(1)
    _record_runner(prefect_home, tmp_path / "r.sock")
    try:
        assert client.runner_socket() == tmp_path / "r.sock"
        for arguments in ([], ["score"], ["server", "status"], ["sweep", "--help"]):
            assert client.hand_over(arguments) is None
        listener.settimeout(0.2)
        with pytest.raises(TimeoutError):
            listener.accept()  # none of them connected
    finally:
        listener.close()


def test_a_runner_that_is_gone_leaves_the_sweep_to_run_itself(prefect_home, tmp_path):
    gone = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    gone.bind(str(tmp_path / "r.sock"))  # the file stays; nobody listens on it
    gone.close()
    _record_runner(prefect_home, tmp_path / "r.sock")
    assert client.hand_over(["sweep", "--trials", "1"]) is None


def test_no_runner_is_used_when_told_not_to_or_given_a_server(prefect_home, tmp_path, monkeypatch):
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "r.sock"))
    _record_runner(prefect_home, tmp_path / "r.sock")
    try:
        monkeypatch.setenv("SWEEPFLOW_USE_RUNNING_SERVER", "false")
        assert client.runner_socket() is None
        monkeypatch.setenv("SWEEPFLOW_USE_RUNNING_SERVER", "true")
        monkeypatch.setenv("SWEEPFLOW_WARM_SWEEPS", "false")
        assert client.runner_socket() is None
        monkeypatch.setenv("SWEEPFLOW_WARM_SWEEPS", "true")
        monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:1/api")
        assert client.runner_socket() is None
    finally:
        listener.close()


def _package(root: Path, name: str, body: str = "") -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text(body)


def test_modules_sweeps_imported_are_imported_and_kept_for_the_next_runner(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _package(tmp_path, "learnt_one")
    _package(tmp_path, "learnt_broken", "raise ImportError('meant for another context')")
    folder = tmp_path / "runner"
    folder.mkdir()
    (folder / "imports-123.json").write_text(json.dumps(["learnt_one", "learnt_broken"]))
    learned = Learned(tmp_path / "cache" / "warm-modules.json")
    try:
        assert learned.take_from(folder, 123)
        assert "learnt_one" in sys.modules and "learnt_broken" not in sys.modules
        assert not (folder / "imports-123.json").exists()
        assert learned.read() == ["learnt_one"]  # what failed to import is not kept
        assert not learned.take_from(folder, 123)  # nothing listed (any more)
    finally:
        sys.modules.pop("learnt_one", None)


def test_a_module_that_starts_a_thread_stops_the_runner_and_is_not_kept(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(tmp_path))
    _package(tmp_path, "learnt_calm")
    _package(
        tmp_path,
        "learnt_threaded",
        "import threading\nSTOP = threading.Event()\n"
        "threading.Thread(target=STOP.wait, daemon=True).start()\n",
    )
    learned = Learned(tmp_path / "warm-modules.json")
    try:
        with pytest.raises(SystemExit, match="learnt_threaded started a thread"):
            learned.import_modules(["learnt_calm", "learnt_threaded"])
        assert learned.read() == ["learnt_calm"]
    finally:
        threaded = sys.modules.pop("learnt_threaded", None)
        if threaded is not None:
            threaded.STOP.set()
        sys.modules.pop("learnt_calm", None)
