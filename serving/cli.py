"""``sweepflow serve``: the command, its settings, and the uvicorn wiring.

``serve`` is a plain typer-compatible function (registered as ``sweepflow serve``; also
``python -m serving``). It checks the registry and loads the model before binding, so a wrong
name or a refused file is one line on stderr and exit code 2, not a server that never answers.
With ``--workers N`` each uvicorn worker process loads and follows the alias on its own.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Annotated

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from serving.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_ROWS

#: Environment variable handing the settings to uvicorn worker processes.
SETTINGS_VARIABLE = "SWEEPFLOW_SERVE_WORKER_SETTINGS"
#: Seconds between two looks at the alias (the swap bound is this plus the load time).
DEFAULT_POLL_SECONDS = 2.0


class ServeSettings(BaseModel):
    """What one ``sweepflow serve`` serves, and its limits."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_name: str = Field(default="bank-churn-classifier", min_length=1, max_length=200)
    alias: str = Field(default="champion", pattern=r"^[A-Za-z0-9_-]+$")
    version: int | None = Field(default=None, ge=1)
    poll_seconds: float = Field(default=DEFAULT_POLL_SECONDS, gt=0, le=3600)
    max_rows: int = Field(default=DEFAULT_MAX_ROWS, ge=1, le=1_000_000)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024, le=1024**3)

    @model_validator(mode="after")
    def _one_selector(self) -> ServeSettings:
        if self.version is not None and self.alias != "champion":
            raise ValueError("give --alias or --version, not both")
        return self


def build_app(settings: ServeSettings):
    """Connect, load the version to serve (checked), and return the FastAPI app.

    Raises:
        tracking.versions.VersionNotFoundError: No such model, alias or version.
        tracking.model_files.ModelFileError: Its file fails a check.
    """
    from serving.app import create_app
    from serving.live import AliasFollower, LiveModel, load_served, resolve
    from tracking.store import connect

    client = connect()
    ref = resolve(client, settings.model_name, alias=settings.alias, version=settings.version)
    live = LiveModel(load_served(client, ref))
    follower = None
    if settings.version is None:
        follower = AliasFollower(
            live, connect, alias=settings.alias, poll_seconds=settings.poll_seconds
        )
    return create_app(
        live,
        follower=follower,
        max_rows=settings.max_rows,
        max_body_bytes=settings.max_body_bytes,
    )


def app_from_env():
    """uvicorn's factory in each worker process: the settings come in the environment."""
    _log_to_stderr()
    from sweepflow import settings as environment

    passed = environment.current().sweepflow_serve_worker_settings
    if passed is None:  # pragma: no cover - only `sweepflow serve --workers N` starts these
        raise RuntimeError(f"{SETTINGS_VARIABLE} is not set: start workers with sweepflow serve")
    return build_app(ServeSettings.model_validate_json(passed))


def _log_to_stderr() -> None:
    logger = logging.getLogger("sweepflow.serve")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {' '.join(message.split())}", err=True)
    return typer.Exit(2)


def serve(
    model_name: Annotated[
        str, typer.Option(help="Registered model to serve.")
    ] = "bank-churn-classifier",
    alias: Annotated[
        str, typer.Option(help="Alias to serve and follow when it moves.")
    ] = "champion",
    version: Annotated[
        int | None, typer.Option(help="Serve this version and never swap (instead of --alias).")
    ] = None,
    host: Annotated[
        str, typer.Option(help="Address to bind; the default answers this machine only.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind.")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes.", min=1)] = 1,
    poll_seconds: Annotated[
        float, typer.Option(help="Seconds between two looks at the alias in the registry.")
    ] = DEFAULT_POLL_SECONDS,
    max_rows: Annotated[int, typer.Option(help="Rows allowed in one request.")] = DEFAULT_MAX_ROWS,
    max_body_bytes: Annotated[
        int, typer.Option(help="Bytes allowed in one request body.")
    ] = DEFAULT_MAX_BODY_BYTES,
) -> None:
    """Serve churn probabilities over HTTP from the version an alias points at, following it."""
    import uvicorn

    from churnml.schema import DataValidationError
    from tracking.model_files import ModelFileError
    from tracking.versions import VersionNotFoundError

    try:
        settings = ServeSettings(
            model_name=model_name,
            alias=alias,
            version=version,
            poll_seconds=poll_seconds,
            max_rows=max_rows,
            max_body_bytes=max_body_bytes,
        )
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "options"
        raise _fail(f"{where}: {first['msg']}") from None
    _log_to_stderr()
    try:
        app = build_app(settings)  # fails here, before binding, on a bad name or file
    except (VersionNotFoundError, ModelFileError, DataValidationError) as error:
        raise _fail(str(error)) from None
    if workers == 1:
        uvicorn.run(app, host=host, port=port, log_level="info")
        return
    del app  # each worker loads its own copy
    os.environ[SETTINGS_VARIABLE] = settings.model_dump_json()
    uvicorn.run(
        "serving.cli:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="info",
    )
