"""The record ``sweepflow server start`` leaves in the Prefect home: which server it started
(and the warm process beside it), read by every later command to find them. Imports nothing
heavy: the console script reads it before deciding where a sweep runs (``cli/warm/``)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

RECORD_NAME = "sweepflow-server.json"
HOST = "127.0.0.1"


@dataclass(frozen=True)
class ServerRecord:
    """What ``sweepflow server start`` wrote about the server it started."""

    pid: int
    port: int
    prefect_home: str
    started: float
    #: The warm sweep process beside it (``cli/warm/``), when one was started.
    runner_pid: int | None = None
    runner_socket: str | None = None

    @property
    def api_url(self) -> str:
        return f"http://{HOST}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{HOST}:{self.port}"


def prefect_home() -> Path:
    """Prefect's home folder, as Prefect will resolve it (``PREFECT_HOME`` or ``~/.prefect``)."""
    from sweepflow import settings

    return settings.current().prefect_home.expanduser().resolve()


def record_path(home: Path | None = None) -> Path:
    return (home or prefect_home()) / RECORD_NAME


def read_record(home: Path | None = None) -> ServerRecord | None:
    """The record of the server ``sweepflow server start`` left running, or None."""
    try:
        raw = json.loads(record_path(home).read_text(encoding="utf-8"))
        return ServerRecord(
            pid=int(raw["pid"]),
            port=int(raw["port"]),
            prefect_home=str(raw["prefect_home"]),
            started=float(raw["started"]),
            runner_pid=int(raw["runner_pid"]) if raw.get("runner_pid") else None,
            runner_socket=str(raw["runner_socket"]) if raw.get("runner_socket") else None,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def write_record(record: ServerRecord, home: Path) -> None:
    record_path(home).write_text(json.dumps(dataclasses.asdict(record)), encoding="utf-8")
