"""Where studies live: a database named by ``OPTUNA_STORAGE``, or the local journal file; and
the locks every process using that storage shares."""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock

from sweepflow import settings
from sweepflow.settings import mask_uri

JOURNAL_NAME = "optuna.journal"


def storage_url() -> str | None:
    """``OPTUNA_STORAGE`` when set (a database URL); None means the local journal file."""
    return settings.current().optuna_storage


def journal_path() -> Path:
    """The journal file studies live in when no database is set."""
    return settings.current().mlruns / JOURNAL_NAME


def describe_storage() -> str:
    url = storage_url()
    return mask_uri(url) if url else f"journal file {journal_path()}"


def make_storage(
    url: str | None,
    journal: Path,
    *,
    heartbeat_interval: int | None = 30,
    grace_period: int | None = 90,
    stale_trial_callback: Callable[[optuna.Study, optuna.trial.FrozenTrial], None] | None = None,
) -> optuna.storages.BaseStorage:
    """Optuna storage: a database URL when given, else a journal file (safe for many writers).

    RDB storages get a heartbeat so a crashed worker's trial is failed instead of left RUNNING:
    a RUNNING trial whose last heartbeat is older than ``grace_period`` seconds is failed by
    ``optuna.storages.fail_stale_trials``, which then calls ``stale_trial_callback`` (e.g. to
    retry it). Journal files have no heartbeat.

    Args:
        url: a database URL (``postgresql+psycopg://...``), or None for the journal file.
        journal: the journal file used when ``url`` is None.
        heartbeat_interval: seconds between heartbeats; None switches heartbeats off.
        grace_period: seconds without a heartbeat before a running trial counts as stale.
        stale_trial_callback: called with each trial failed for a stale heartbeat.
    """
    if url:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna 5: we rely on
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # them knowingly
            return optuna.storages.RDBStorage(
                url,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period if heartbeat_interval else None,
                heartbeat_stale_trial_callback=stale_trial_callback if heartbeat_interval else None,
            )
    journal.parent.mkdir(parents=True, exist_ok=True)
    return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))


def _lock_engine(url: str) -> Any:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    return sqlalchemy.create_engine(url, poolclass=NullPool)


@contextmanager
def storage_lock(name: str) -> Iterator[None]:
    """Hold the lock ``name`` across every process using the study storage.

    PostgreSQL and MySQL give an advisory lock on the storage database itself; local files (the
    journal, SQLite) a lock file beside them. Other databases take no lock.
    """
    url = storage_url()
    if url is None:
        journal = journal_path()
        journal.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(f"{journal}.{name}.lock", timeout=600):
            yield
        return
    import sqlalchemy

    parsed = sqlalchemy.engine.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if not database or database == ":memory:":
            yield
            return
        with FileLock(f"{database}.{name}.lock", timeout=600):
            yield
        return
    key = int(hashlib.sha256(f"sweepflow:{name}".encode()).hexdigest()[:15], 16)
    statements = {
        "postgresql": ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"),
        "mysql": ("SELECT GET_LOCK(:key, 600)", "SELECT RELEASE_LOCK(:key)"),
        "mariadb": ("SELECT GET_LOCK(:key, 600)", "SELECT RELEASE_LOCK(:key)"),
    }
    if backend not in statements:
        yield
        return
    lock, unlock = statements[backend]
    params = {"key": key if backend == "postgresql" else f"sweepflow-{key}"}
    engine = _lock_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(lock), params)
            connection.commit()
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text(unlock), params)
                connection.commit()
    finally:
        engine.dispose()


def recovery_lock(study_name: str) -> contextlib.AbstractContextManager[None]:
    """The study's recovery lock: two live sweeps never adopt one dead sweep's budget."""
    return storage_lock(f"recovery-{hashlib.sha256(study_name.encode()).hexdigest()[:16]}")
