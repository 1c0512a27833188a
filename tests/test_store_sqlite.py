"""The local SQLite MLflow store commits in WAL mode; other SQLite databases are left alone. A
new one starts as a copy of an empty, migrated store (the template)."""

from __future__ import annotations

import os
import sqlite3

import sqlalchemy

from tracking import store
from tracking.store import TrackingTarget, connect, start_from_template, store_template


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


def local_target(folder) -> TrackingTarget:
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    return TrackingTarget(
        tracking_uri=uri, registry_uri=uri, artifact_root=(folder / "artifacts").as_uri()
    )


def test_a_new_store_is_a_copy_of_the_template_and_runs_no_migration(tmp_path, monkeypatch):
    """The first store makes the template (in the cache folder); the next is copied from it:
    MLflow finds its tables, runs none of its migrations, and makes its default experiment."""
    import mlflow.store.db.utils as db_utils

    monkeypatch.setenv("SWEEPFLOW_CACHE_DIR", str(tmp_path / "cache"))
    connect(local_target(tmp_path / "first"))
    assert store_template().parent == tmp_path / "cache"

    def no_migrations(*args, **kwargs):
        raise AssertionError("a store copied from the template ran MLflow's migrations")

    monkeypatch.setattr(db_utils, "_initialize_tables", no_migrations)
    monkeypatch.setattr(db_utils, "_upgrade_db", no_migrations)
    target = local_target(tmp_path / "second")
    client = connect(target)
    default = client.get_experiment("0")
    assert default.name == "Default"
    assert ".making-" not in default.artifact_location  # not the template's scratch folder
    experiment = client.create_experiment("copied")
    run = client.create_run(experiment)
    client.log_metric(run.info.run_id, "auc", 0.9)
    client.create_registered_model("copied-model")
    assert client.get_run(run.info.run_id).data.metrics == {"auc": 0.9}
    assert [m.name for m in client.search_registered_models()] == ["copied-model"]
    assert journal_mode(tmp_path / "second" / "mlflow.db") == "wal"


def test_a_store_that_exists_is_never_replaced_by_the_template(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPFLOW_CACHE_DIR", str(tmp_path / "cache"))
    target = local_target(tmp_path / "kept")
    client = connect(target)
    kept = client.create_experiment("kept")
    connect(target)
    assert connect(target).get_experiment(kept).name == "kept"


def test_a_store_made_meanwhile_by_another_program_is_kept(tmp_path, monkeypatch):
    """Between the check and the copy another program made the store: its copy wins."""
    monkeypatch.setenv("SWEEPFLOW_CACHE_DIR", str(tmp_path / "cache"))
    database = tmp_path / "raced" / "mlflow.db"
    database.parent.mkdir()
    template = store_template()

    def made_meanwhile():
        with sqlite3.connect(database) as other:
            other.execute("create table theirs (x integer)")
        return template

    monkeypatch.setattr(store, "store_template", made_meanwhile)
    start_from_template(database, lock=None)
    with sqlite3.connect(database) as connection:
        tables = {name for (name,) in connection.execute("select name from sqlite_master")}
    assert tables == {"theirs"}
    assert list(database.parent.iterdir()) == [database]  # no staged copy left behind


def test_without_a_template_mlflow_makes_the_store(tmp_path, monkeypatch):
    """A cache folder that cannot be written costs the template, not the store."""
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("SWEEPFLOW_CACHE_DIR", str(blocked))
    client = connect(local_target(tmp_path / "made"))
    assert client.create_experiment("made-by-mlflow")
    assert blocked.is_file()
