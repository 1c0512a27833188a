"""The check a sweep makes before anything else: refuse unsafe backends, say which are in use.

Some combinations run, then lose or split work quietly: SQLite written by several processes,
a local file that another machine cannot see (so each machine grows its own study), a study in
one process's memory. They are refused here, each with what to do instead, before any data is
read or any run is made. What passes is described in one line per backend, every URI with its
credentials masked.

Plain functions, no Prefect: the flow passes in what it knows (the config, the tracking target,
the Optuna storage URL, the Prefect API address).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from churnml.config import ConfigError, SweepConfig
from flows.runners import DASK_EXTRA, dask_available, describe_runner
from studies.storage import storage_url
from tracking.store import TrackingTarget, mask_uri, mlruns_dir, resolve_target

#: MLflow tracking URIs that are a database the client writes itself, not a tracking server.
_DATABASE_SCHEMES = ("postgresql", "mysql", "mssql", "oracle", "sqlite")


class UnsafeSetupError(ConfigError):
    """The backends configured are unsafe for this sweep; the message says why and what to do."""


@dataclass(frozen=True)
class Backends:
    """What a sweep uses, credentials masked: printed at its start."""

    optuna: str
    mlflow_tracking: str
    mlflow_registry: str
    prefect_api: str
    trials: str

    def lines(self) -> list[str]:
        """One ``name: where`` line per backend."""
        return [
            f"Optuna study storage: {self.optuna}",
            f"MLflow tracking: {self.mlflow_tracking}",
            f"MLflow model registry: {self.mlflow_registry}",
            f"Prefect API: {self.prefect_api}",
            f"trials run on: {self.trials}",
        ]


def describe(
    config: SweepConfig,
    *,
    optuna_url: str | None,
    journal: Path,
    target: TrackingTarget,
    prefect_api: str | None,
) -> Backends:
    """The backends of a sweep, every URI with its password masked."""
    return Backends(
        optuna=mask_uri(optuna_url) if optuna_url else f"journal file {journal}",
        mlflow_tracking=mask_uri(target.tracking_uri),
        mlflow_registry=mask_uri(target.registry_uri),
        prefect_api=mask_uri(prefect_api) if prefect_api else "temporary local server",
        trials=describe_runner(config),
    )


def _is_loopback(uri: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, localhost, ::1)."""
    host = urlsplit(uri if "://" in uri else f"tcp://{uri}").hostname or ""
    return host == "localhost" or host == "::1" or host.startswith("127.")


def _is_sqlite(uri: str) -> bool:
    return uri.split(":", 1)[0].split("+", 1)[0] == "sqlite"


def _in_memory(uri: str) -> bool:
    return _is_sqlite(uri) and (uri.rstrip("/") in {"sqlite:", "sqlite:/"} or ":memory:" in uri)


def check(
    config: SweepConfig,
    *,
    optuna_url: str | None,
    journal: Path,
    target: TrackingTarget,
    prefect_api: str | None,
) -> Backends:
    """Refuse unsafe combinations of settings and backends; describe the backends otherwise.

    Args:
        config: the sweep's settings (task runner, Dask address, team).
        optuna_url: ``OPTUNA_STORAGE``, or None for the journal file.
        journal: the journal file used without ``OPTUNA_STORAGE``.
        target: the MLflow tracking and registry URIs.
        prefect_api: ``PREFECT_API_URL``, or None for a temporary local server.

    Raises:
        UnsafeSetupError: the combination would lose or split work; the message says how to fix
            it.
    """
    dask = config.task_runner == "dask"
    remote = config.dask_address is not None or config.team
    where = (
        f"trials run on the Dask cluster at {mask_uri(config.dask_address)}"
        if config.dask_address
        else "config.team is true: sweeps of this study run on several machines"
    )
    if dask and not dask_available():
        raise UnsafeSetupError(f"config.task_runner: dask needs the dask extra: {DASK_EXTRA}")
    if optuna_url and _in_memory(optuna_url):
        raise UnsafeSetupError(
            f"OPTUNA_STORAGE={mask_uri(optuna_url)} is a database in one process's memory: each "
            "thread, worker and later sweep would see its own empty study; use a file "
            "(sqlite:///optuna.db), or PostgreSQL when several processes share the study"
        )
    if optuna_url and _is_sqlite(optuna_url) and (dask or config.team):
        why = (
            "Dask workers are other processes, and each trial writes its fold scores to the study"
            if dask
            else "config.team is true: several sweep processes write to this study"
        )
        raise UnsafeSetupError(
            f"OPTUNA_STORAGE={mask_uri(optuna_url)} is SQLite, which is not safe for several "
            f"writer processes ({why}); use PostgreSQL "
            "(OPTUNA_STORAGE=postgresql+psycopg://user:password@host/db)"
        )
    if optuna_url is None and remote:
        raise UnsafeSetupError(
            f"OPTUNA_STORAGE is unset, so the study is the local journal file {journal}, which "
            f"other machines cannot see ({where}); each would grow its own study. Set "
            "OPTUNA_STORAGE=postgresql+psycopg://user:password@host/db on every machine"
        )
    for name, uri in (
        ("MLFLOW_TRACKING_URI", target.tracking_uri),
        ("MLFLOW_REGISTRY_URI", target.registry_uri),
    ):
        if _is_sqlite(uri) and remote:
            raise UnsafeSetupError(
                f"{name} is {mask_uri(uri)}, a SQLite file on this machine ({where}): other "
                "machines cannot write to it, and its file lock only guards one machine. Run "
                "an MLflow server (mlflow server --backend-store-uri "
                "postgresql+psycopg://... --serve-artifacts) and set "
                f"{name}=http://host:5000 on every machine"
            )
    if config.dask_address and not _is_loopback(config.dask_address):
        # Workers on other machines reach every backend themselves; this machine's loopback
        # address (or its temporary Prefect server) means nothing to them.
        for name, uri in (
            ("OPTUNA_STORAGE", optuna_url),
            ("MLFLOW_TRACKING_URI", target.tracking_uri),
            ("MLFLOW_REGISTRY_URI", target.registry_uri),
            ("PREFECT_API_URL", prefect_api or "http://127.0.0.1 (a temporary local server)"),
        ):
            if uri and _is_loopback(uri):
                raise UnsafeSetupError(
                    f"{name} is {mask_uri(uri)}, an address of this machine only, but trials "
                    f"run on the Dask cluster at {mask_uri(config.dask_address)}, whose "
                    f"workers cannot reach it; set {name} to an address they reach"
                )
    scheme = target.tracking_uri.split(":", 1)[0].split("+", 1)[0]
    if config.team and scheme in _DATABASE_SCHEMES:
        raise UnsafeSetupError(
            f"MLFLOW_TRACKING_URI is the database {mask_uri(target.tracking_uri)}: runs would "
            "be shared, but each machine would write model files to its own disk, where the "
            "others (promotion, scoring) cannot read them (config.team is true). Put an MLflow "
            "server in front of the database (mlflow server --backend-store-uri ... "
            "--serve-artifacts) and set MLFLOW_TRACKING_URI=http://host:5000"
        )
    return describe(
        config, optuna_url=optuna_url, journal=journal, target=target, prefect_api=prefect_api
    )


def check_environment(config: SweepConfig, *, prefect_api: str | None) -> Backends:
    """:func:`check` on the backends this process's environment names (``OPTUNA_STORAGE``,
    ``MLFLOW_TRACKING_URI``, ``MLFLOW_REGISTRY_URI``, ``SWEEPFLOW_MLRUNS``).

    Raises:
        UnsafeSetupError: as :func:`check`.
    """
    return check(
        config,
        optuna_url=storage_url(),
        journal=mlruns_dir() / "optuna.journal",
        target=resolve_target(),
        prefect_api=prefect_api,
    )
