"""The best model in MLflow: logged under the sweep run (skops format) and registered with aliases.

Registration is idempotent per sweep: a version already registered from the sweep's run is
reused, so re-running the final step (or a retried task) never makes a second version.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from tracking import versions
from tracking.churn_pyfunc import churn_signature, log_churn_model
from tracking.store import retry_insert_race
from tracking.tags import CHALLENGER, CHAMPION, TAG_PARAMS

#: The logged model's name. Not "model": the run's model/ folder holds the model's plots, and
#: MLflow also lists a logged model's files under the run at this name.
MODEL_ARTIFACT_NAME = "classifier"


@dataclass(frozen=True)
class RegisteredVersion:
    """A model version and what this call did to it."""

    name: str
    version: str
    aliases: tuple[str, ...]
    model_uri: str
    created: bool


def _requirements() -> list[str]:
    """Pinned runtime requirements, given explicitly so MLflow need not infer them (slow)."""
    pins = []
    for package in ("scikit-learn", "skops", "pandas", "numpy", "scipy"):
        try:
            pins.append(f"{package}=={importlib.metadata.version(package)}")
        except importlib.metadata.PackageNotFoundError:  # pragma: no cover - all are deps
            pins.append(package)
    return pins


def find_version_for_run(client: MlflowClient, name: str, run_id: str) -> ModelVersion | None:
    """The version of ``name`` registered from ``run_id``, if there is one."""
    try:
        versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    except MlflowException:
        return None
    return min(versions, key=lambda v: int(v.version)) if versions else None


def set_alias(client: MlflowClient, name: str, alias: str, version: str | int) -> None:
    """Point ``alias`` of ``name`` at ``version``, retrying a clash with a concurrent writer."""
    retry_insert_race(lambda: client.set_registered_model_alias(name, alias, str(version)))


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(
                name, description="Bank-churn classifier from sweepflow sweeps."
            )
        except MlflowException as error:  # another sweep created it meanwhile
            if "RESOURCE_ALREADY_EXISTS" not in str(error.error_code):
                raise


def register_best_model(
    client: MlflowClient,
    *,
    run_id: str,
    model: Any,
    model_name: str,
    input_example: pd.DataFrame,
    tags: Mapping[str, Any],
) -> RegisteredVersion:
    """Log ``model`` under the sweep run with skops and register it as the ``challenger``.

    When the registry has no ``champion`` yet, the new version becomes champion too.
    """
    existing = find_version_for_run(client, model_name, run_id)
    created = existing is None
    if existing is None:
        # log_model writes through its own client: hold the store's writer lock (SQLite) too.
        # MLflow refuses to save a skops file holding types outside our allowlist.
        with getattr(client, "lock", None) or contextlib.nullcontext():
            info = log_churn_model(
                model,
                name=MODEL_ARTIFACT_NAME,
                run_id=run_id,
                signature=churn_signature(),
                input_example=input_example,
                pip_requirements=_requirements(),
            )
        _ensure_registered_model(client, model_name)
        existing = client.create_model_version(
            model_name,
            source=info.model_uri,
            run_id=run_id,
            tags={k: str(v) for k, v in tags.items() if v is not None},
            model_id=info.model_id,
        )
        # MLflow's copy of the skops file differs from the standalone one: record its own hash,
        # so a machine without the standalone file can still verify what it downloads.
        client.set_model_version_tag(
            model_name,
            existing.version,
            versions.TAG_ARTIFACT_SHA256,
            versions.artifact_sha256(client, model_name, str(existing.version)),
        )
    version = existing.version
    set_alias(client, model_name, CHALLENGER, version)
    if versions.alias_holder(client, model_name, CHAMPION) is None:
        set_alias(client, model_name, CHAMPION, version)
    aliases = tuple(client.get_model_version(model_name, version).aliases)
    return RegisteredVersion(
        name=model_name,
        version=str(version),
        aliases=tuple(sorted(aliases)),
        model_uri=f"models:/{model_name}/{version}",
        created=created,
    )


def tag_version(client: MlflowClient, name: str, version: str, tags: Mapping[str, Any]) -> None:
    """Set tags on a model version (e.g. the sha256 of its standalone skops file)."""
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value))


def champion_params(client: MlflowClient, name: str) -> tuple[str, dict[str, Any]] | None:
    """(version, params) of the current ``champion`` of ``name``, when it has recorded params."""
    holder = versions.alias_holder(client, name, CHAMPION)
    if holder is None or TAG_PARAMS not in holder.tags:
        return None
    try:
        return str(holder.version), json.loads(holder.tags[TAG_PARAMS])
    except json.JSONDecodeError:
        return None
