"""The local SQLite MLflow store commits in WAL mode; other SQLite databases are left alone."""

from __future__ import annotations

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
