"""Test isolation: a temporary MLflow store and Optuna journal, one Prefect harness a session.

Nothing here writes to the real ``mlruns/``: ``SWEEPFLOW_MLRUNS`` points the local store at a
temporary folder (and ``SWEEPFLOW_CACHE_DIR`` the cache folder), and any tracking/storage URLs
from the developer's shell are removed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def isolated_stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Point every store at a session-wide temporary folder."""
    folder = tmp_path_factory.mktemp("sweepflow") / "mlruns"
    patch = pytest.MonkeyPatch()
    patch.setenv("SWEEPFLOW_MLRUNS", str(folder))
    patch.setenv("SWEEPFLOW_CACHE_DIR", str(folder.parent / "cache"))
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "OPTUNA_STORAGE"):
        patch.delenv(name, raising=False)
    patch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # A developer's own `sweepflow server start` server is not the tests' to use.
    patch.setenv("SWEEPFLOW_USE_RUNNING_SERVER", "false")
    yield folder
    patch.undo()


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A temporary Prefect server and database for the whole session (started once: ~20 s)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def postgres_storage() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped after: its psycopg URL, with a password
    in it (trust auth ignores it) so tests can check it never shows."""
    from tests.servers import (
        PostgresUnavailableError,
        missing_service,
        postgres_database,
        postgres_url,
    )

    with ExitStack() as stack:
        try:
            name = stack.enter_context(postgres_database())
        except PostgresUnavailableError as error:
            missing_service(str(error))
        yield postgres_url(name)


@pytest.fixture
def shared_data() -> Path:
    """The real data files beside the repo; tests using them skip when they are absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not there")
    return SHARED_DATA
