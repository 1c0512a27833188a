"""Where tracking data lives: the MLflow tracking/registry URIs and the local ``mlruns/`` store.

The environment decides (``MLFLOW_TRACKING_URI``, ``MLFLOW_REGISTRY_URI``); without it, a SQLite
database and an artifact folder under ``mlruns/`` (``SWEEPFLOW_MLRUNS`` moves that folder, which
is how the tests keep away from the real one). MLflow 3.17 refuses the old file store, so the
local default is SQLite, not plain folders.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import mlflow
from filelock import FileLock
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from sweepflow import memory, settings
from sweepflow.settings import mask_uri

#: Errors of a tracking store that callers report in one line (MLflow's, and the file system's).
STORE_ERRORS: tuple[type[BaseException], ...] = (MlflowException, OSError)

#: Query of MLflow UI links that selects its "Model training" navigation.
ML_WORKFLOW = "?workflowType=machine_learning"

T = TypeVar("T")


def is_insert_race(error: MlflowException) -> bool:
    """Whether ``error`` is a unique-key clash from two writers inserting the same row at once.

    MLflow's SQL stores often select-then-insert (an alias, a dataset of an experiment), so two
    sweeps writing the same row at once on one server can both insert; the loser's retry then
    finds the row.
    """
    text = str(error).lower()
    return any(mark in text for mark in ("unique constraint", "duplicate key", "integrityerror"))


def retry_insert_race(call: Callable[[], T], attempts: int = 5) -> T:
    """``call()``, again after a short pause when it lost an insert race with another writer."""
    for attempt in range(attempts):
        try:
            return call()
        except MlflowException as error:
            if not is_insert_race(error) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


def mlruns_dir() -> Path:
    """The local store folder: ``$SWEEPFLOW_MLRUNS`` or ``./mlruns``, made absolute."""
    return settings.current().mlruns


@dataclass(frozen=True)
class TrackingTarget:
    """Resolved MLflow locations for one sweep."""

    tracking_uri: str
    registry_uri: str
    #: Artifact root for new experiments; None lets the server decide.
    artifact_root: str | None

    @property
    def is_local_sqlite(self) -> bool:
        return self.tracking_uri.startswith("sqlite:")

    @property
    def ui_base(self) -> str:
        """Address of the MLflow UI: the server itself, or what :attr:`ui_command` serves."""
        if self.tracking_uri.startswith(("http://", "https://")):
            return mask_uri(self.tracking_uri).rstrip("/")
        return "http://127.0.0.1:5000"

    def run_url(self, experiment_id: str, run_id: str, page: str = "") -> str:
        """The MLflow UI page of a run, or a sub-page of it (e.g. ``artifactPath/x.png``).

        The query opens the UI's "Model training" navigation (runs, models, registry); without
        it MLflow 3 opens in its GenAI mode, which has no place for a training sweep.
        """
        url = f"{self.ui_base}/#/experiments/{experiment_id}/runs/{run_id}"
        return f"{url}/{page}{ML_WORKFLOW}" if page else f"{url}{ML_WORKFLOW}"

    def model_version_url(self, name: str, version: str) -> str:
        """The MLflow UI page of a registered model version."""
        return f"{self.ui_base}/#/models/{name}/versions/{version}"

    @property
    def ui_command(self) -> str:
        """The shell command that shows these results in the MLflow UI."""
        if self.tracking_uri.startswith(("http://", "https://")):
            return f"open {mask_uri(self.tracking_uri)}"
        command = f"{console_script('mlflow')} ui --backend-store-uri {mask_uri(self.tracking_uri)}"
        if self.registry_uri != self.tracking_uri:
            command += f" --registry-store-uri {mask_uri(self.registry_uri)}"
        return command + " --host 127.0.0.1 --port 5000"


def console_script(name: str) -> str:
    """How to call a console script of this environment, e.g. ``.venv/bin/mlflow``."""
    script = Path(sys.executable).parent / name
    if not script.exists():
        return name
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)


def resolve_target() -> TrackingTarget:
    """Read the environment; fall back to SQLite + artifacts under :func:`mlruns_dir`."""
    found = settings.current()
    if found.mlflow_tracking_uri:
        registry = found.mlflow_registry_uri or found.mlflow_tracking_uri
        return TrackingTarget(
            tracking_uri=found.mlflow_tracking_uri, registry_uri=registry, artifact_root=None
        )
    folder = found.mlruns
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    registry = found.mlflow_registry_uri or uri
    return TrackingTarget(
        tracking_uri=uri, registry_uri=registry, artifact_root=(folder / "artifacts").as_uri()
    )


class SerializedClient:
    """An ``MlflowClient`` whose calls hold an inter-process file lock.

    SQLite takes one writer at a time; with several sweep processes on one local store, MLflow
    surfaces "database is locked" as errors (and a fresh store can lose runs to a migration
    race). Holding a lock around each call serialises the writers instead.
    """

    def __init__(self, client: MlflowClient, lock: FileLock) -> None:
        self._client = client
        self.lock = lock

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def locked(*args: Any, **kwargs: Any) -> Any:
            with self.lock:
                return attribute(*args, **kwargs)

        return locked


def store_lock(target: TrackingTarget) -> FileLock | None:
    """The lock that serialises writers of a local SQLite store (None for servers)."""
    if not target.is_local_sqlite:
        return None
    database = Path(target.tracking_uri.removeprefix("sqlite:///"))
    return FileLock(str(database) + ".lock", timeout=600)


_fast_databases: set[str] = set()
_fast_lock = threading.Lock()


def fast_sqlite_commits(database: Path) -> None:
    """Make commits to a local SQLite store cheap: WAL journal, fsync only at checkpoints.

    Each trial commits to the MLflow store four times. With SQLite's default rollback journal
    every commit waits for an fsync (~40 ms each on the benchmark machine); in WAL mode with
    ``synchronous=NORMAL`` it does not (~15 ms; see docs/benchmarks.md). A crashed or killed
    process loses nothing; a power cut can lose the last commits, never the database. Applies
    to every connection this process opens to ``database`` from now on.
    """
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    with _fast_lock:
        if not _fast_databases:
            event.listen(Engine, "connect", _on_sqlite_connect)
        _fast_databases.add(str(database.resolve()))


def _on_sqlite_connect(connection: Any, _record: Any) -> None:
    if not isinstance(connection, sqlite3.Connection):
        return
    cursor = connection.cursor()
    try:
        files = {row[2] for row in cursor.execute("PRAGMA database_list").fetchall()}
        if files & _fast_databases:
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
    except sqlite3.OperationalError:  # locked while switching modes: this connection keeps
        pass  # the default journal, which is slower but just as correct
    finally:
        cursor.close()


def start_from_template(database: Path, lock: FileLock | None) -> None:
    """Start a new local SQLite store as a copy of an empty one that MLflow made and migrated
    once for this MLflow version (:func:`store_template`): MLflow then finds its tables and has
    none of its 135 migration scripts to run (0.7-2.5 s of a first sweep's start). The copy
    appears whole or not at all; a store that exists is never touched. Should the template fail
    to be made, MLflow makes the store itself, as it would without one."""
    if database.exists():
        return
    try:
        template = store_template()
    except Exception:  # MLflow makes the store, and reports what is wrong with it
        return
    with lock or contextlib.nullcontext():
        if database.exists():
            return
        staged = database.with_name(f".{database.name}.{os.getpid()}.new")
        try:
            shutil.copyfile(template, staged)
            with contextlib.suppress(FileExistsError):  # another program made it meanwhile
                os.link(staged, database)
        finally:
            staged.unlink(missing_ok=True)


def store_template() -> Path:
    """An empty local store (``<cache folder>/mlflow-<version>-store.db``), migrated to this
    MLflow version's schema; made here on first use. It holds no experiment: MLflow creates
    its default one, with the new store's own artifact root, when a copy is first opened."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    folder = settings.current().cache_dir
    template = folder / f"mlflow-{mlflow.__version__}-store.db"
    if template.exists():
        return template
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".making-") as scratch:
        made, empty = Path(scratch) / "made.db", Path(scratch) / "empty.db"
        uri = f"sqlite:///{made}"
        SqlAlchemyStore(uri, (Path(scratch) / "artifacts").as_uri())
        with contextlib.suppress(Exception):  # MLflow keeps an engine a URI: let it go
            SqlAlchemyStore._engine_map.pop(uri).dispose()
        with contextlib.closing(sqlite3.connect(made)) as db:
            db.execute("DELETE FROM experiment_tags")
            db.execute("DELETE FROM experiments")
            db.commit()
            db.execute("VACUUM INTO ?", (str(empty),))
        os.replace(empty, template)  # whole or not at all, whoever else makes one meanwhile
    return template


def guard_process() -> None:
    """Force our process settings (no pickle loading through MLflow, no run links printed; see
    :data:`sweepflow.settings.FORCED_ENVIRONMENT`) and the allocator's settings
    (``sweepflow.memory``): a flow run by a worker gets them with its first client."""
    settings.force_process_environment()
    memory.configure_allocator()


def _client(target: TrackingTarget) -> MlflowClient:
    guard_process()
    client = MlflowClient(tracking_uri=target.tracking_uri, registry_uri=target.registry_uri)
    lock = store_lock(target)
    return client if lock is None else SerializedClient(client, lock)  # type: ignore[return-value]


_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def connect(target: TrackingTarget | None = None) -> MlflowClient:
    """Point MLflow at the target (creating the local store) and return a client.

    The global URIs are set too, because ``mlflow.sklearn.log_model`` resolves them itself.
    Creating the store here, once, before trials fan out, avoids the schema-migration race that a
    fresh SQLite store suffers when several writers open it at once.
    """
    guard_process()
    target = target or resolve_target()
    if target.is_local_sqlite:
        database = Path(target.tracking_uri.removeprefix("sqlite:///"))
        database.parent.mkdir(parents=True, exist_ok=True)
        fast_sqlite_commits(database)
        start_from_template(database, store_lock(target))
    saved = {name: os.environ.get(name) for name in _URI_VARIABLES}
    mlflow.set_tracking_uri(target.tracking_uri)
    mlflow.set_registry_uri(target.registry_uri)
    # set_tracking_uri also exports MLFLOW_TRACKING_URI; put the environment back as the user
    # left it, or resolve_target would later take our local default for their own setting.
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    client = _client(target)
    client.search_experiments(max_results=1)  # creates and migrates the store now
    return client


def open_stores(target: TrackingTarget | None = None) -> None:
    """Create (or check) a local SQLite store's tracking and registry tables now, as
    :func:`connect` does for the first: a fresh store is made and migrated here, once. The
    command line does this while Prefect's server starts; the flow then finds them ready.

    A tracking server needs no set-up here: it is left to the flow, so an unreachable one is
    met (and retried by MLflow) once, not twice.
    """
    target = target or resolve_target()
    if target.is_local_sqlite:
        connect(target).search_registered_models(max_results=1)


def warm_model_logging() -> None:
    """Give MLflow, ahead of the first model logged in this process, its map of installed
    packages, which it reads to check a model's pip requirements against this environment.

    MLflow builds it by reading every installed package's metadata
    (``importlib.metadata.packages_distributions``: 0.5-1.7 s, once a process, most of it
    file-system calls). It depends only on what is installed, so the map MLflow built is kept
    in the cache folder (:func:`packages_map_file`), under a key that changes whenever a
    package is installed or removed, and read back by later processes (~1 ms).

    Reaches into MLflow's internals (``mlflow.utils.requirements_utils``); should they move, this
    does nothing and the map is built when the model is logged, as before.
    """
    with contextlib.suppress(Exception):
        from mlflow.utils import requirements_utils

        if requirements_utils._MODULES_TO_PACKAGES is not None:
            return
        kept = packages_map_file()
        with contextlib.suppress(OSError, ValueError):
            found = json.loads(kept.read_text(encoding="utf-8"))
            if isinstance(found, dict) and found:
                requirements_utils._MODULES_TO_PACKAGES = found
                return
        requirements_utils._init_modules_to_packages_map()
        with contextlib.suppress(OSError):
            kept.parent.mkdir(parents=True, exist_ok=True)
            staged = kept.with_name(f".{kept.name}.{os.getpid()}.new")
            staged.write_text(json.dumps(requirements_utils._MODULES_TO_PACKAGES), "utf-8")
            os.replace(staged, kept)  # whole or not at all


def packages_map_file() -> Path:
    """Where MLflow's map of this environment's packages is kept: named by MLflow's version,
    the interpreter and the environment's package folders with their modification times
    (installing or removing a package adds or removes entries there, which changes them)."""
    import site

    places = [*site.getsitepackages(), site.getusersitepackages()]
    folders = [f"{place}:{os.stat(place).st_mtime_ns}" for place in places if os.path.isdir(place)]
    key = "\n".join([mlflow.__version__, sys.version, sys.prefix, *folders])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return settings.current().cache_dir / f"mlflow-packages-{digest}.json"


def ensure_experiment(client: MlflowClient, name: str, target: TrackingTarget) -> str:
    """The id of experiment ``name``, created (with a local artifact root) when missing."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    location = None
    if target.artifact_root is not None:
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "experiment"
        location = f"{target.artifact_root}/{slug}"
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException as error:
        # Two sweeps starting at once on one server: the other one created it first.
        if "RESOURCE_ALREADY_EXISTS" not in str(error.error_code):
            raise
        return client.get_experiment_by_name(name).experiment_id


def client_for(target: TrackingTarget) -> MlflowClient:
    """A client on an already-connected target (no store checks: cheap enough per task)."""
    return _client(target)
