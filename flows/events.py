"""What the flows share: task options, and the events they emit (names and payloads).

The notification automations (``flows/notifications.py``) listen for these events; the sweep
and the promotion emit them through :func:`emit_champion`, so both send the same fields.
"""

from __future__ import annotations

from typing import Any

from prefect.cache_policies import NONE

#: Task options of every sweepflow task: results stay in memory, nothing (least of all a data
#: frame) is hashed or persisted per task.
THIN: dict[str, Any] = {"cache_policy": NONE, "persist_result": False}

#: A model version became ``champion`` (a sweep's first model, a promotion or a rollback).
CHAMPION_EVENT = "sweepflow.model.champion"


def champion_payload(
    *,
    model_name: str,
    version: str | None,
    holdout_roc_auc: float | None,
    flow_run_id: str | None,
    previous_version: str | None = None,
    action: str = "sweep",
    reason: str = "the first model of the registry",
    cv_auc: float | None = None,
) -> dict[str, Any]:
    """The champion event's payload: what the new-champion webhook reports."""
    return {
        "model_name": model_name,
        "version": version,
        "previous_version": previous_version,
        "holdout_roc_auc": holdout_roc_auc,
        "cv_auc": cv_auc,
        "action": action,
        "reason": reason,
        "flow_run_id": flow_run_id,
    }


def emit_champion(payload: dict[str, Any]) -> None:
    """Emit :data:`CHAMPION_EVENT` for the model named in ``payload``."""
    from prefect.events import emit_event

    emit_event(
        event=CHAMPION_EVENT,
        resource={
            "prefect.resource.id": f"mlflow.model.{payload['model_name']}",
            "prefect.resource.name": payload["model_name"],
        },
        payload=payload,
    )
