"""Registered model versions: find one by alias or number, and load its model safely.

Loading never goes through MLflow's own loaders (which may unpickle): the model file is checked
and read by :func:`tracking.model_files.load_model_file` with our allowlist. Two routes:

1. **The standalone skops file** the sweep wrote, named by the version's ``skops_path`` tag,
   when it exists on this machine. Verified: its sha256 equals the version's ``skops_sha256``
   tag (a version without that tag is refused), and every type it names is on our allowlist.
2. **The model logged in MLflow**, when the standalone file is not here (a remote server, another
   machine). The version's ``MLmodel`` is downloaded and must describe a ``skops`` sklearn model;
   then only its skops file is downloaded. That file is a different file from the standalone
   one (MLflow writes its own copy), so ``skops_sha256`` does not apply to it. Verified: its
   sha256 equals the version's ``artifact_skops_sha256`` tag (recorded at registration) when
   that tag exists, and every type it names is on our allowlist. A version registered before
   that tag existed is loaded on the allowlist check alone, and :attr:`LoadedModel.checks` says
   so.

A standalone file that exists but fails its hash is refused; there is no fallback to route 2.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow.artifacts
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import Model

from churnml.digests import file_sha256
from tracking.model_files import ModelFileError, load_model_file
from tracking.tags import TAG_ARTIFACT_SHA256, TAG_SKOPS_PATH, TAG_SKOPS_SHA256

_PLAIN_FILE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


class VersionNotFoundError(LookupError):
    """The registered model, alias or version does not exist; the message says which."""


@dataclass(frozen=True)
class VersionRef:
    """One registered model version, as read from the registry."""

    name: str
    version: str
    aliases: tuple[str, ...]
    tags: dict[str, str]
    run_id: str | None
    created: str | None

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"


@dataclass(frozen=True)
class LoadedModel:
    """A model loaded from a checked file, with what was checked."""

    model: Any
    path: str
    sha256: str
    checks: str


def _iso(millis: int | None) -> str | None:
    import datetime as dt

    if not millis:
        return None
    return dt.datetime.fromtimestamp(millis / 1000, dt.UTC).isoformat(timespec="seconds")


def _ref(client: MlflowClient, name: str, version: Any) -> VersionRef:
    found = client.get_model_version(name, str(version))
    return VersionRef(
        name=name,
        version=str(found.version),
        aliases=tuple(sorted(found.aliases or ())),
        tags=dict(found.tags or {}),
        run_id=found.run_id,
        created=_iso(found.creation_timestamp),
    )


def require_model(client: MlflowClient, name: str) -> None:
    """Raise :class:`VersionNotFoundError` unless registered model ``name`` exists."""
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if "RESOURCE_DOES_NOT_EXIST" in str(error.error_code):
            raise VersionNotFoundError(
                f"no registered model {name!r}; run a sweep first or check --model-name"
            ) from None
        raise


def get_version(client: MlflowClient, name: str, version: int | str) -> VersionRef:
    """Version ``version`` of model ``name``.

    Raises:
        VersionNotFoundError: The model or the version does not exist.
    """
    require_model(client, name)
    try:
        return _ref(client, name, version)
    except MlflowException as error:
        if "RESOURCE_DOES_NOT_EXIST" in str(error.error_code) or "INVALID_PARAMETER" in str(
            error.error_code
        ):
            raise VersionNotFoundError(f"{name} has no version {version}") from None
        raise


def alias_holder(client: MlflowClient, name: str, alias: str) -> ModelVersion | None:
    """The model version holding ``alias``, or None (no such alias, or no such model).

    The one lookup of an alias: registration, promotion and scoring all ask here.
    """
    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def by_alias(client: MlflowClient, name: str, alias: str) -> VersionRef | None:
    """The version holding ``alias``, or None when no version holds it."""
    holder = alias_holder(client, name, alias)
    return None if holder is None else _ref(client, name, holder.version)


def require_alias(client: MlflowClient, name: str, alias: str) -> VersionRef:
    """The version holding ``alias``.

    Raises:
        VersionNotFoundError: The model does not exist or no version holds the alias.
    """
    require_model(client, name)
    found = by_alias(client, name, alias)
    if found is None:
        raise VersionNotFoundError(f"{name} has no version with alias {alias!r}")
    return found


def creation_times(client: MlflowClient, name: str) -> dict[str, str]:
    """Creation time (ISO text) of every version of ``name``."""
    versions = client.search_model_versions(f"name = '{name}'")
    return {str(v.version): _iso(v.creation_timestamp) or "?" for v in versions}


# --------------------------------------------------------------------------- loading


@contextlib.contextmanager
def _quiet_downloads() -> Iterator[None]:
    """No progress bars from MLflow's artifact downloads (they garble logs and CLI output)."""
    key = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    before = os.environ.get(key)
    os.environ[key] = "false"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before


def download_skops_artifact(client: MlflowClient, ref: VersionRef, folder: str | Path) -> Path:
    """Download the skops file of the model logged for ``ref`` into ``folder``.

    Only ``MLmodel`` (to learn the file's name) and that one file are fetched.

    Raises:
        ModelFileError: The logged model is not a skops-format sklearn model, or names its file
            oddly (a path rather than a plain file name).
    """
    base = client.get_model_version_download_uri(ref.name, ref.version).rstrip("/")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with _quiet_downloads():
        mlmodel = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{base}/MLmodel",
            dst_path=str(folder / "meta"),
            tracking_uri=client.tracking_uri,
        )
        flavor = Model.load(mlmodel).flavors.get("sklearn") or {}
        if flavor.get("serialization_format") != "skops":
            raise ModelFileError(
                f"{ref.label}: the logged model is not in skops format "
                f"({flavor.get('serialization_format', 'no sklearn flavor')}); refused"
            )
        name = str(flavor.get("pickled_model", ""))
        if not _PLAIN_FILE_NAME.match(name) or name.startswith("."):
            raise ModelFileError(f"{ref.label}: the logged model names its file {name!r}; refused")
        path = mlflow.artifacts.download_artifacts(
            artifact_uri=f"{base}/{name}",
            dst_path=str(folder / "model"),
            tracking_uri=client.tracking_uri,
        )
    return Path(path)


def artifact_sha256(client: MlflowClient, name: str, version: str) -> str:
    """The sha256 of the skops file logged for a version (downloaded to a temporary folder)."""
    ref = _ref(client, name, version)
    with tempfile.TemporaryDirectory(prefix="sweepflow-artifact-") as folder:
        return file_sha256(download_skops_artifact(client, ref, folder))


def load_version(client: MlflowClient, ref: VersionRef, *, workdir: str | Path) -> LoadedModel:
    """Load a version's model through our checked skops loader (see the module docstring).

    Args:
        client: The registry.
        ref: The version.
        workdir: Where a downloaded artifact goes (the caller removes it).

    Raises:
        ModelFileError: The file fails a check (hash, type allowlist, format, size).
    """
    local = ref.tags.get(TAG_SKOPS_PATH)
    if local and Path(local).is_file():
        expected = ref.tags.get(TAG_SKOPS_SHA256)
        if not expected:
            raise ModelFileError(
                f"{ref.label}: no {TAG_SKOPS_SHA256} recorded for {local}; refused"
            )
        model = load_model_file(local, expected_sha256=expected)
        return LoadedModel(
            model, local, expected, "standalone skops file: recorded sha256 matches; allowlist"
        )
    path = download_skops_artifact(client, ref, workdir)
    expected = ref.tags.get(TAG_ARTIFACT_SHA256)
    model = load_model_file(path, expected_sha256=expected)
    checks = (
        "MLflow artifact: recorded artifact sha256 matches; allowlist"
        if expected
        else "MLflow artifact: allowlist only (no artifact sha256 recorded for this version)"
    )
    return LoadedModel(model, str(path), expected or file_sha256(path), checks)
