"""Promotion decisions in MLflow: move ``champion`` and record why, inside the registry.

Every decision (promoted, kept, refused, rolled back) is written three ways:

- a **registered-model tag** ``sweepflow.history.<UTC time>-<id>`` holding the decision as JSON:
  the audit history. It lives in the registry, so it survives (and moves) with the model;
  :func:`read_history` reads it back in time order;
- **model-version tags** ``promotion.*`` on the version decided about (both versions' metrics,
  margin, floor, data digest, reason, time, Prefect flow-run id, MLflow run id), and
  ``promotion.replaced_by``/``promotion.replaced_at`` on a champion that lost the alias;
- an **MLflow run** in the experiment ``<model>-promotions`` with both versions' metrics.
"""

from __future__ import annotations

import datetime as dt
import math
import time
import uuid
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

from churnml.promotion import Decision
from tracking import versions
from tracking.registry import set_alias
from tracking.store import TrackingTarget, ensure_experiment
from tracking.tags import (
    CHAMPION,
    HISTORY_PREFIX,
    TAG_CHECK_PREFIX,
    TAG_ERROR,
    TAG_FLOW_RUN,
    TAG_KIND,
    TAG_MODEL,
    TAG_OUTCOME,
    TAG_REASON,
    VERSION_PREFIX,
    tag_value,
)

#: Sweep-run param holding what rebuilds the sweep's holdout (see churnml.promotion).
PARAM_HOLDOUT_SPEC = "holdout_spec"


class PromotionConflictError(RuntimeError):
    """The champion moved while a promotion was deciding; nothing was changed."""


def promotions_experiment(model_name: str) -> str:
    """The experiment holding one run per decision about ``model_name``."""
    return f"{model_name}-promotions"


def utc_now() -> str:
    """The current UTC time as ISO text (what decisions and history store)."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def holdout_spec_of_run(client: MlflowClient, run_id: str | None) -> str | None:
    """The holdout spec a sweep run recorded, or None (no run, or a sweep from before it)."""
    if not run_id:
        return None
    return client.get_run(run_id).data.params.get(PARAM_HOLDOUT_SPEC)


def current_champion(client: MlflowClient, name: str) -> str | None:
    """The version holding ``champion`` now, or None."""
    holder = versions.alias_holder(client, name, CHAMPION)
    return None if holder is None else str(holder.version)


def record_decision(client: MlflowClient, target: TrackingTarget, decision: Decision) -> Decision:
    """Carry out ``decision`` (move ``champion`` if it says so) and record it.

    The MLflow run is created first (RUNNING) so its id goes into the tags; the alias moves
    only if the champion is still the one the decision was made against.

    Args:
        client: The registry and tracking store.
        target: Where experiments get their artifact root.
        decision: What was decided; ``mlflow_run_id`` is filled in.

    Returns:
        The decision as recorded.

    Raises:
        PromotionConflictError: The champion moved meanwhile (the run is marked FAILED).
    """
    experiment_id = ensure_experiment(client, promotions_experiment(decision.model_name), target)
    run = client.create_run(
        experiment_id,
        run_name=f"{decision.action}-v{decision.candidate}-{decision.outcome}",
        tags={TAG_KIND: "promotion"},
    )
    run_id = run.info.run_id
    decision.mlflow_run_id = run_id
    try:
        _log_run(client, run_id, decision)
        if decision.moved:
            holder = current_champion(client, decision.model_name)
            if holder != decision.champion_before:
                raise PromotionConflictError(
                    f"champion of {decision.model_name} moved from v{decision.champion_before} to "
                    f"v{holder} while this {decision.action} ran; nothing changed, run it again"
                )
            set_alias(client, decision.model_name, CHAMPION, str(decision.champion_after))
        _tag_versions(client, decision)
        key = f"{HISTORY_PREFIX}{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%fZ}-{uuid.uuid4().hex[:6]}"
        client.set_registered_model_tag(decision.model_name, key, decision.to_json())
    except BaseException as error:
        client.set_tag(run_id, TAG_ERROR, tag_value(f"{type(error).__name__}: {error}"))
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return decision


def _log_run(client: MlflowClient, run_id: str, decision: Decision) -> None:
    now = int(time.time() * 1000)
    params = {
        "action": decision.action,
        "model_name": decision.model_name,
        "candidate_version": decision.candidate,
        "champion_before": decision.champion_before,
        "champion_after": decision.champion_after,
        "metric": decision.metric,
        "margin": decision.margin,
        "floor": decision.floor,
        "data_source": decision.data_source,
        "data_digest": decision.data_digest,
        "data_rows": decision.data_rows,
    }
    metrics = []
    for role, values in (
        ("candidate", decision.candidate_metrics),
        ("champion", decision.champion_metrics),
    ):
        for key, value in (values or {}).items():
            if value is not None and math.isfinite(float(value)):
                metrics.append(Metric(f"{role}_{key}", float(value), now, 0))
    tags = {
        TAG_OUTCOME: decision.outcome,
        TAG_REASON: decision.reason,
        TAG_MODEL: decision.model_name,
        TAG_FLOW_RUN: decision.flow_run_id,
        MLFLOW_RUN_NOTE: _run_note(decision),
        **{f"{TAG_CHECK_PREFIX}{version}": text for version, text in decision.checks.items()},
    }
    client.log_batch(
        run_id,
        metrics=metrics,
        params=[Param(k, tag_value(v)) for k, v in params.items() if v is not None],
        tags=[RunTag(k, tag_value(v)) for k, v in tags.items() if v is not None],
    )


def _run_note(decision: Decision) -> str:
    lines = [f"**{decision.outcome}**: {decision.reason}"]
    lines += [f"- {note}" for note in decision.notes]
    return "\n".join(lines)


def _tag_versions(client: MlflowClient, decision: Decision) -> None:
    metric = decision.metric
    value = (decision.candidate_metrics or {}).get(metric)
    champion_value = (decision.champion_metrics or {}).get(metric)
    tags: dict[str, Any] = {
        "action": decision.action,
        "outcome": decision.outcome,
        "time": decision.time,
        "reason": decision.reason,
        "metric": metric,
        "value": value,
        "champion_version": decision.champion_before,
        "champion_value": champion_value,
        "margin": decision.margin,
        "floor": decision.floor,
        "data_source": decision.data_source,
        "data_digest": decision.data_digest,
        "checks": decision.checks.get(decision.candidate),
        "flow_run_id": decision.flow_run_id,
        "mlflow_run_id": decision.mlflow_run_id,
    }
    for name, text in tags.items():
        if text is not None:
            key = f"{VERSION_PREFIX}{name}"
            client.set_model_version_tag(
                decision.model_name, decision.candidate, key, tag_value(text)
            )
    if decision.moved and decision.champion_before is not None:
        for key, text in (("replaced_by", decision.champion_after), ("replaced_at", decision.time)):
            client.set_model_version_tag(
                decision.model_name, decision.champion_before, f"{VERSION_PREFIX}{key}", str(text)
            )


def read_history(client: MlflowClient, name: str) -> list[Decision]:
    """Every recorded decision about ``name``, oldest first."""
    tags = client.get_registered_model(name).tags or {}
    return [Decision.from_json(tags[key]) for key in sorted(tags) if key.startswith(HISTORY_PREFIX)]
