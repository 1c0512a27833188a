"""``cli.common.ServerStart``: the sweep command starts Prefect's temporary server in the
background once its checks pass, and only when no server is set. tests/test_first_run.py runs the
real thing (the console script on a fresh Prefect home)."""

from __future__ import annotations

import pytest
from prefect.server.api.server import SubprocessASGIServer
from prefect.settings import PREFECT_API_URL, temporary_settings

from cli.common import ServerStart


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
