"""Real servers for tests: start on 127.0.0.1 on a free port, wait until they answer, stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import NoReturn

import pytest

from sweepflow.processes import REPO, free_port, start, stop, wait_for_http

BIN = Path(sys.executable).parent

__all__ = ["BIN", "REPO", "free_port", "start", "stop", "wait_for_http"]


class WebhookReceiver:
    """A local HTTP endpoint that records the JSON bodies POSTed to it."""

    def __init__(self) -> None:
        self.payloads: list[dict] = []
        received = self.payloads

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                received.append(json.loads(body or b"{}"))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def wait_for(self, predicate, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [p for p in self.payloads if predicate(p)]
            if found:
                return found
            time.sleep(0.5)
        raise TimeoutError(f"no matching webhook within {timeout} s; got {self.payloads}")


@contextmanager
def webhook_receiver() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    thread = threading.Thread(target=receiver.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.server.shutdown()
        receiver.server.server_close()


@dataclass
class Server:
    """A server process started by :func:`launch_prefect_server` or :func:`launch_mlflow_server`."""

    process: subprocess.Popen
    health_url: str
    #: The address clients use (an API URL or a tracking URI).
    url: str
    #: The environment that talks to it (for the Prefect server).
    env: dict[str, str] = field(default_factory=dict)

    def wait(self, timeout: float = 120) -> None:
        wait_for_http(self.health_url, timeout=timeout, process=self.process)


def launch_prefect_server(home: Path, *, database_url: str | None = None) -> Server:
    """Start ``prefect server start`` with its own PREFECT_HOME (and database, when given)."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # Schedule new deployments' runs within seconds, not the default minute.
        "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "2",
    }
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url
    home.mkdir(parents=True, exist_ok=True)
    process = start(
        [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        log=home / "server.log",
    )
    return Server(process, f"http://127.0.0.1:{port}/api/health", env["PREFECT_API_URL"], env)


def launch_mlflow_server(home: Path, *, backend_store_uri: str) -> Server:
    """Start ``mlflow server`` on a database, serving artifacts from a folder under ``home``."""
    port = free_port()
    home.mkdir(parents=True, exist_ok=True)
    process = start(
        [
            str(BIN / "mlflow"),
            "server",
            "--backend-store-uri",
            backend_store_uri,
            "--artifacts-destination",
            str(home / "artifacts"),
            "--serve-artifacts",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        env=dict(os.environ),
        log=home / "mlflow-server.log",
        cwd=home,
    )
    return Server(process, f"http://127.0.0.1:{port}/health", f"http://127.0.0.1:{port}")


@contextmanager
def running(*servers: Server, timeout: float = 120) -> Iterator[None]:
    """Wait until every server answers (they start in parallel); stop them all after."""
    try:
        for server in servers:
            server.wait(timeout)
        yield
    finally:
        for server in servers:
            stop(server.process)


@contextmanager
def prefect_server(home: Path, *, database_url: str | None = None) -> Iterator[dict[str, str]]:
    """``prefect server start`` with its own PREFECT_HOME; yields the env that talks to it."""
    server = launch_prefect_server(home, database_url=database_url)
    with running(server, timeout=90):
        yield server.env


# PostgreSQL on 127.0.0.1:5432 with trust auth: what the development and CI machines run.
POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
#: Trust auth ignores it; URLs carry it so tests can check it is never shown.
POSTGRES_PASSWORD = "s3cretpw"


def postgres_url(database: str, *, driver: str = "psycopg", password: bool = True) -> str:
    """The SQLAlchemy URL of ``database`` (``postgresql+<driver>://...``)."""
    secret = f":{POSTGRES_PASSWORD}" if password else ""
    return f"postgresql+{driver}://postgres{secret}@127.0.0.1:5432/{database}"


class PostgresUnavailableError(RuntimeError):
    """PostgreSQL is not running on 127.0.0.1:5432."""


def missing_service(reason: str) -> NoReturn:
    """Skip a test whose service is missing on a developer's machine; fail it in CI.

    ``.ci/run`` sets ``SWEEPFLOW_REQUIRE_SERVICES=1`` after starting the services, so a service
    that did not come up turns CI red instead of quietly skipping what it was there to test.
    """
    if os.environ.get("SWEEPFLOW_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (required: SWEEPFLOW_REQUIRE_SERVICES=1)")
    pytest.skip(reason)


@contextmanager
def postgres_database(prefix: str = "sweepflow") -> Iterator[str]:
    """A fresh PostgreSQL database, dropped (connections and all) after; yields its name."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(POSTGRES_ADMIN, autocommit=True)
    except psycopg.OperationalError as error:
        raise PostgresUnavailableError(
            f"PostgreSQL is not running on 127.0.0.1:5432 ({error})"
        ) from error
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
