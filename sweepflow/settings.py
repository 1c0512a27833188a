"""Every environment variable sweepflow reads, typed and validated in one place.

Machine settings come from the environment (or a ``.env`` file in the working directory): where
the stores live, the study storage, heartbeat timings, the Prefect UI. :func:`current` reads them
when called, never at import time; the command line calls it once at the start, so a bad value
is one line naming the variable before any work. Nothing here writes the environment.

This module imports nothing of ours, so every layer (``churnml`` excepted: it takes values as
arguments) may read it.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: What every process of ours runs with, whatever the environment it started from said.
FORCED_ENVIRONMENT = {
    # Our processes never deserialize pickles through MLflow (model files go through skops),
    # even when the environment a command starts from allows it.
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
    # Against a tracking server MLflow prints "View run ... at" to stdout for every run it ends,
    # from every parallel trial; the sweep's summary and logs give those links once.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def force_process_environment() -> None:
    """Apply :data:`FORCED_ENVIRONMENT` to this process (MLflow reads it when used).

    Called when a command starts (``cli``) and whenever a tracking client is made (the flows'
    tasks in a worker's flow run, a Dask worker's trials): never on import.
    """
    os.environ.update(FORCED_ENVIRONMENT)


class ConfigError(ValueError):
    """A configuration value is wrong; the message says which and how to fix it.

    The one error of bad settings, whether from a config file, the command line, a flow's
    parameters (``churnml.config`` raises it) or the environment (:class:`SettingsError`).
    """


class SettingsError(ConfigError):
    """An environment variable holds a value sweepflow cannot use (the message names it)."""


class Settings(BaseSettings):
    """The environment, as sweepflow uses it. Each field is read from the variable of its
    upper-cased name; an empty value counts as unset."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", env_ignore_empty=True, frozen=True
    )

    #: The local store folder (SQLite tracking database, artifacts, journal, caches, models).
    sweepflow_mlruns: Path = Path("mlruns")
    #: MLflow tracking store; unset: SQLite under the local store folder.
    mlflow_tracking_uri: str | None = None
    #: MLflow Model Registry; unset: the tracking store.
    mlflow_registry_uri: str | None = None
    #: Optuna study storage (a database URL); unset: the journal file in the local store folder.
    optuna_storage: str | None = None
    #: Seconds between heartbeats of running trials (database study storages).
    sweepflow_heartbeat_seconds: int = Field(default=30, ge=1)
    #: Seconds without a heartbeat before a running trial is failed as lost.
    sweepflow_grace_seconds: int = Field(default=90, ge=1)
    #: A sweep on another host counts as dead when its record is older than this.
    sweepflow_stale_seconds: float = Field(default=600.0, gt=0)
    #: A running Prefect server's API; unset: each flow starts a temporary local server.
    prefect_api_url: str | None = None
    #: The Prefect UI that links point at (a server's own UI when unset).
    prefect_ui_url: str | None = None
    #: Largest data file (bytes) a sweep or score reads; unset: what the machine's memory allows.
    sweepflow_max_data_bytes: int | None = Field(default=None, ge=1)
    #: Set by ``sweepflow serve`` for its own uvicorn worker processes (the service's settings
    #: as JSON); not for users.
    sweepflow_serve_worker_settings: str | None = None
    #: Prefect's home folder (its database, and the record of ``sweepflow server start``).
    prefect_home: Path = Path("~/.prefect")
    #: What sweepflow keeps for any store or process to reuse (an empty, migrated MLflow SQLite
    #: store; MLflow's map of installed packages; the modules sweeps import, for the warm
    #: process of ``cli/warm/``); unset: ``$XDG_CACHE_HOME/sweepflow``, or
    #: ``~/.cache/sweepflow``.
    sweepflow_cache_dir: Path | None = None
    #: The user's cache folder (the XDG base directory convention).
    xdg_cache_home: Path | None = None
    #: With no ``PREFECT_API_URL``, use the server ``sweepflow server start`` keeps running
    #: (when it answers) instead of starting a temporary one for each command.
    sweepflow_use_running_server: bool = True
    #: With that server, hand a sweep to the warm process kept beside it (``cli/warm/``);
    #: false: the sweep runs in the command's own process.
    sweepflow_warm_sweeps: bool = True

    @field_validator(
        "mlflow_tracking_uri",
        "mlflow_registry_uri",
        "optuna_storage",
        "prefect_api_url",
        "prefect_ui_url",
        mode="before",
    )
    @classmethod
    def _strip(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip() or None
        return value

    @property
    def mlruns(self) -> Path:
        """The local store folder, made absolute."""
        return self.sweepflow_mlruns.expanduser().resolve()

    @property
    def cache_dir(self) -> Path:
        """The folder of what every store or process may reuse, made absolute."""
        if self.sweepflow_cache_dir is not None:
            return self.sweepflow_cache_dir.expanduser().resolve()
        base = self.xdg_cache_home or Path("~/.cache")
        return (base.expanduser() / "sweepflow").resolve()


def current() -> Settings:
    """The settings in the environment now.

    Raises:
        SettingsError: a variable holds a value of the wrong kind; the message names it.
    """
    try:
        return Settings()
    except ValidationError as error:
        first = error.errors()[0]
        name = str(first["loc"][0]).upper() if first["loc"] else "environment"
        raise SettingsError(f"{name}={first.get('input')!r}: {first['msg'].lower()}") from None


def mask_uri(uri: str) -> str:
    """Hide the password (and any token) in a URI, e.g. ``postgresql://u:***@host/db``."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "***"
    if parts.password is None and not parts.username:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    credentials = f"{user}:***@" if parts.password is not None else f"{user}@"
    return urlunsplit((parts.scheme, credentials + host, parts.path, parts.query, parts.fragment))
