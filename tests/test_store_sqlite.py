"""The local SQLite MLflow store commits in WAL mode; other SQLite databases are left alone."""

from __future__ import annotations

import os
import sqlite3

import sqlalchemy

from tracking.store import TrackingTarget, connect


def journal_mode(path) -> str:
    with sqlite3.connect(path) as connection:
        return connection.execute("PRAGMA journal_mode").fetchone()[0]


def test_the_local_store_uses_wal_and_other_databases_keep_their_journal(tmp_path):
    database = tmp_path / "mlruns" / "mlflow.db"
    uri = f"sqlite:///{database}"
    target = TrackingTarget(
        tracking_uri=uri, registry_uri=uri, artifact_root=(tmp_path / "artifacts").as_uri()
    )
    client = connect(target)
    client.create_experiment("wal-check")
    assert journal_mode(database) == "wal"

    other = tmp_path / "other.db"
    engine = sqlalchemy.create_engine(f"sqlite:///{other}")
    with engine.begin() as connection:
        connection.execute(sqlalchemy.text("create table t (x integer)"))
    engine.dispose()
    assert journal_mode(other) == "delete"


def test_connecting_leaves_the_environment_as_it_was(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    connect(TrackingTarget(tracking_uri=uri, registry_uri=uri, artifact_root=None))
    # Otherwise the next resolve_target() would take this store for the user's own setting.
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert "MLFLOW_REGISTRY_URI" not in os.environ
