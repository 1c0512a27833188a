"""``cli.common.ServerStart``: the sweep command starts Prefect's temporary server in the
background once its settings are valid, and only when no server is set; meanwhile it checks the
data and readies what the flow will need, and bad input stops the server.
tests/test_first_run.py runs the real thing (the console script on a fresh Prefect home)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, temporary_settings

from cli.common import ServerStart
from sweepflow.processes import REPO


def test_no_server_is_started_when_one_is_set(prefect_harness):
    assert PREFECT_API_URL.value()  # the harness
    start = ServerStart()
    start.wait()
    assert start._thread is None


def test_a_server_that_cannot_start_is_reported_on_the_commands_thread(monkeypatch):
    def refuse(self, timeout=None):
        raise RuntimeError("Timed out while attempting to connect to ephemeral Prefect API server")

    monkeypatch.setattr(SubprocessASGIServer, "start", refuse)
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        start = ServerStart()
    assert start._thread is not None
    with pytest.raises(RuntimeError, match="Timed out"):
        start.wait()


# In a fresh process: MLflow's package map and the imports must not be there before.
READY = """
import sys
from mlflow.utils import requirements_utils
from cli.sweep import make_stores, ready_for_the_end
import flows.sweep.flow
from flows.sweep.steps import END_OF_RUN_MODULES
assert requirements_utils._MODULES_TO_PACKAGES is None
assert not any(name in sys.modules for name in END_OF_RUN_MODULES)
make_stores()
ready_for_the_end()
assert requirements_utils._MODULES_TO_PACKAGES, "MLflow's package map was not built"
assert all(name in sys.modules for name in END_OF_RUN_MODULES)
"""


def test_the_stores_are_made_and_model_logging_readied_ahead(tmp_path):
    """What the command does before the flow (cli.sweep.make_stores) and beside its import
    (cli.sweep.ready_for_the_end): the local stores exist after it, MLflow's package map (read
    when a model is logged) is built, and skops and matplotlib are imported; none of it by
    merely importing the flow."""
    env = {**os.environ, "SWEEPFLOW_MLRUNS": str(tmp_path)}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("MLFLOW_REGISTRY_URI", None)
    subprocess.run([sys.executable, "-c", READY], env=env, check=True, cwd=REPO)
    tables = sqlite3.connect(tmp_path / "mlflow.db").execute(
        "select name from sqlite_master where type = 'table'"
    )
    assert {"runs", "registered_models"} <= {name for (name,) in tables}


def test_a_tracking_server_is_left_to_the_flow():
    """Nothing is asked of a tracking server ahead of the flow: an unreachable one would be
    retried by MLflow twice, here and in the flow, before the sweep could report it."""
    from sweepflow.processes import free_port
    from tracking.store import TrackingTarget, open_stores

    down = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    open_stores(TrackingTarget(tracking_uri=down, registry_uri=down, artifact_root=None))
    assert time.monotonic() - started < 1.0


def _servers_of(home: Path) -> list[int]:
    """Processes running with ``PREFECT_HOME=home`` (the temporary server inherits it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"PREFECT_HOME={home}".encode() in environ:
            found.append(int(entry.name))
    return found


def test_bad_data_stops_the_temporary_server_it_started(tmp_path):
    """The server starts once the settings are valid, beside the data check; bad data stops
    it before the command's one line, and no server outlives the command."""
    bad = tmp_path / "bad.csv"
    bad.write_text("CustomerId,Age\n1,40\n")
    home = tmp_path / "prefect-home"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "SWEEPFLOW_USE_RUNNING_SERVER": "false",
        "SWEEPFLOW_MLRUNS": str(tmp_path / "mlruns"),
    }
    env.pop("PREFECT_API_URL", None)
    sweepflow = str(Path(sys.executable).parent / "sweepflow")
    result = subprocess.run(
        [sweepflow, "sweep", "--data", str(bad), "--trials", "2"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert "bad.csv" in lines[0]
    assert _servers_of(home) == []
    assert not (tmp_path / "mlruns").exists()


def test_mlflow_package_map_is_kept_and_read_back(tmp_path, monkeypatch):
    """Built once for this environment, then read back instead of rebuilt: a later process
    gets the very map MLflow built, without reading every package's metadata."""
    import importlib_metadata
    from mlflow.utils import requirements_utils

    from tracking.store import packages_map_file, warm_model_logging

    monkeypatch.setenv("SWEEPFLOW_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    warm_model_logging()
    built = requirements_utils._MODULES_TO_PACKAGES
    assert built and packages_map_file().is_file()

    def refuse():
        raise AssertionError("the kept map was not used")

    monkeypatch.setattr(importlib_metadata, "packages_distributions", refuse)
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    warm_model_logging()
    assert built == requirements_utils._MODULES_TO_PACKAGES


def test_installing_a_package_names_another_map(tmp_path, monkeypatch):
    import site

    from tracking.store import packages_map_file

    packages = tmp_path / "site-packages"
    packages.mkdir()
    monkeypatch.setattr(site, "getsitepackages", lambda: [str(packages)])
    before = packages_map_file()
    assert packages_map_file() == before
    (packages / "newpkg-1.0.dist-info").mkdir()
    os.utime(packages, ns=(0, os.stat(packages).st_mtime_ns + 1_000_000))
    assert packages_map_file() != before
