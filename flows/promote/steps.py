"""Plain functions behind the ``promote`` flow and the ``history`` command: glue between the ML
core and ``tracking/``. Nothing here imports Prefect, so each step is tested by calling it
directly; ``flow.py`` wraps them in thin tasks."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from churnml import prepare
from churnml.config import ConfigError
from churnml.digests import frame_digest
from churnml.evaluate import holdout_metrics
from churnml.promotion import (
    PROMOTED,
    REFUSED,
    ROLLED_BACK,
    UNCHANGED,
    Decision,
    Period,
    PromoteConfig,
    Verdict,
    champion_periods,
    decide,
    parse_holdout_spec,
)
from churnml.reading import load_dataset
from churnml.schema import DataValidationError
from sweepflow import settings as environment
from tracking import promotion, versions
from tracking.model_files import ModelFileError
from tracking.store import TrackingTarget, client_for, connect
from tracking.tags import CHALLENGER, CHAMPION


class EvaluationDataError(ValueError):
    """The evaluation data cannot be built; the message says why and what to pass instead."""


# --------------------------------------------------------------------------- promote


@dataclass(frozen=True)
class Plan:
    """Which versions a promotion compares: the candidate, and the champion it would replace."""

    model_name: str
    action: str
    candidate: versions.VersionRef
    champion: versions.VersionRef | None


def plan_promotion(config: PromoteConfig, target: TrackingTarget) -> Plan:
    """Find the candidate (``challenger``, or ``to_version`` for a rollback) and the champion.

    Raises:
        versions.VersionNotFoundError: The model, the version or the ``challenger`` is missing.
    """
    client = connect(target)
    name = config.model_name
    if config.to_version is not None:
        candidate = versions.get_version(client, name, config.to_version)
    else:
        candidate = versions.require_alias(client, name, CHALLENGER)
    return Plan(name, config.action, candidate, versions.by_alias(client, name, CHAMPION))


@dataclass(frozen=True)
class Evaluation:
    """Labelled rows both versions are scored on, and where they came from."""

    features: pd.DataFrame
    labels: pd.Series
    source: str
    digest: str
    notes: list[str] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.labels)


def evaluation_data(config: PromoteConfig, plan: Plan, target: TrackingTarget) -> Evaluation:
    """The rows both versions are scored on: ``config.data``, else the candidate's holdout.

    The holdout is rebuilt from the spec the candidate's sweep recorded on its run; its data
    digest must equal the one recorded on the version, so changed data is never mistaken for
    the sweep's.

    Raises:
        EvaluationDataError: The holdout cannot be rebuilt (no spec recorded, data changed or
            gone); the message suggests ``--data``.
        DataValidationError: The given CSV is unusable.
    """
    limit = environment.current().sweepflow_max_data_bytes
    if config.data is not None:
        clean = load_dataset(config.data, target=config.target, cv_folds=2, max_bytes=limit)
        return Evaluation(
            clean.drop(columns=config.target),
            clean[config.target],
            str(config.data),
            frame_digest(clean),
        )
    client = client_for(target)
    candidate = plan.candidate
    spec = promotion.holdout_spec_of_run(client, candidate.run_id)
    if spec is None:
        raise EvaluationDataError(
            f"{candidate.label}: its sweep run recorded no holdout spec (an older sweep); "
            "pass --data with a labelled evaluation CSV"
        )
    try:
        settings = parse_holdout_spec(spec)
        clean = prepare.validate(prepare.load_raw(settings.data, max_bytes=limit), settings)
    except (ConfigError, DataValidationError) as error:
        raise EvaluationDataError(
            f"{candidate.label}: cannot rebuild its sweep's holdout ({error}); "
            "pass --data with a labelled evaluation CSV"
        ) from None
    digest = frame_digest(clean)
    recorded = candidate.tags.get("data_digest")
    if recorded and recorded != digest:
        raise EvaluationDataError(
            f"{candidate.label}: the sweep's data {prepare.describe_source(settings.data)} changed "
            f"since the sweep (digest {digest}, recorded {recorded}); pass --data with a "
            "labelled evaluation CSV"
        )
    data = prepare.split(clean, settings, digest=digest)
    source = f"holdout of {candidate.label}'s sweep ({data.source}, {len(data.test)} rows)"
    notes = _overlap_notes(client, plan, spec)
    return Evaluation(data.x_test, data.y_test, source, digest, notes)


def _overlap_notes(client: Any, plan: Plan, spec: str) -> list[str]:
    """Warn when the champion's sweep split the same data differently (it may know the rows)."""
    if plan.champion is None or plan.champion.version == plan.candidate.version:
        return []
    other = promotion.holdout_spec_of_run(client, plan.champion.run_id)
    if other is None or other == spec:
        return []
    try:
        mine, theirs = parse_holdout_spec(spec), parse_holdout_spec(other)
    except ConfigError:
        return []
    if mine.data == theirs.data:
        return [
            f"champion v{plan.champion.version}'s sweep split the same data with other settings: "
            "its training part may hold rows of this holdout, which favours it; pass --data "
            "with rows neither version trained on for an even comparison"
        ]
    return []


@dataclass(frozen=True)
class Measured:
    """One version's metrics on the evaluation data, or why its model file was refused."""

    version: str
    metrics: dict[str, float] | None
    checks: str
    error: str | None = None


def measure(ref: versions.VersionRef, evaluation: Evaluation, target: TrackingTarget) -> Measured:
    """Load a version through the checked skops loader and score it; a refusal is a result."""
    with tempfile.TemporaryDirectory(prefix="sweepflow-model-") as workdir:
        try:
            loaded = versions.load_version(client_for(target), ref, workdir=workdir)
        except ModelFileError as error:
            return Measured(ref.version, None, f"refused: {error}", str(error))
    metrics = holdout_metrics(loaded.model, evaluation.features, evaluation.labels)
    return Measured(ref.version, metrics, f"{loaded.checks} (sha256 {loaded.sha256[:12]})")


def make_decision(
    config: PromoteConfig,
    plan: Plan,
    evaluation: Evaluation,
    candidate: Measured,
    champion: Measured | None,
    *,
    flow_run_id: str | None,
) -> Decision:
    """Apply the rule (or, for a rollback, the person's choice) to the measurements."""
    metric = config.metric
    champion_version = plan.champion.version if plan.champion else None
    value = (candidate.metrics or {}).get(metric)
    champion_value = (champion.metrics or {}).get(metric) if champion else None
    if config.to_version is None:
        verdict = decide(
            metric=metric,
            margin=config.margin,
            floor=config.floor,
            candidate_version=candidate.version,
            candidate_value=value,
            champion_version=champion_version,
            champion_value=champion_value,
            candidate_error=candidate.error,
            champion_error=champion.error if champion else None,
        )
    else:
        verdict = _rollback_verdict(candidate, champion_version, metric, value, champion_value)
    moved = verdict.outcome in {PROMOTED, ROLLED_BACK}
    checks = {candidate.version: candidate.checks}
    if champion is not None:
        checks[champion.version] = champion.checks
    return Decision(
        action=plan.action,
        outcome=verdict.outcome,
        model_name=plan.model_name,
        candidate=candidate.version,
        champion_before=champion_version,
        champion_after=candidate.version if moved else champion_version,
        metric=metric,
        reason=verdict.reason,
        time=promotion.utc_now(),
        margin=config.margin if config.to_version is None else None,
        floor=config.floor if config.to_version is None else None,
        candidate_metrics=candidate.metrics,
        champion_metrics=champion.metrics if champion else None,
        data_source=evaluation.source,
        data_digest=evaluation.digest,
        data_rows=evaluation.rows,
        checks=checks,
        notes=list(evaluation.notes),
        flow_run_id=flow_run_id,
    )


def _rollback_verdict(
    candidate: Measured,
    champion_version: str | None,
    metric: str,
    value: float | None,
    champion_value: float | None,
) -> Verdict:
    """A rollback follows the person's choice, but never to a model file that fails its checks."""
    if candidate.error is not None:
        return Verdict(REFUSED, f"v{candidate.version} is never made champion: {candidate.error}")
    if champion_version == candidate.version:
        return Verdict(UNCHANGED, f"v{candidate.version} is already champion")
    measured = f"{metric} {value:.4f}" if value is not None else "not measured"
    before = (
        f"champion v{champion_version} {metric} {champion_value:.4f}"
        if champion_value is not None
        else f"champion v{champion_version} could not be measured"
        if champion_version
        else "there was no champion"
    )
    return Verdict(ROLLED_BACK, f"rolled back to v{candidate.version} ({measured}; {before})")


def record(decision: Decision, target: TrackingTarget) -> Decision:
    """Carry out and record the decision in the registry (see ``tracking/promotion.py``)."""
    return promotion.record_decision(client_for(target), target, decision)


def decision_markdown(decision: Decision) -> str:
    """Markdown for the Prefect run: the outcome, why, and both versions' metrics."""
    lines = [
        f"# {decision.model_name}: {decision.action} v{decision.candidate} -> "
        f"**{decision.outcome}**",
        "",
        decision.reason,
        "",
        f"Champion before: v{decision.champion_before}; after: v{decision.champion_after}.",
        f"Evaluation data: {decision.data_source} ({decision.data_rows} rows, digest "
        f"`{decision.data_digest}`). Metric: {decision.metric}, margin {decision.margin}, "
        f"floor {decision.floor}.",
        "",
    ]
    names = sorted({*(decision.candidate_metrics or {}), *(decision.champion_metrics or {})})
    if names:
        lines += [
            f"| metric | candidate v{decision.candidate} | champion v{decision.champion_before} |",
            "|---|---|---|",
        ]
        for name in names:
            lines.append(
                f"| {name} | {_fmt((decision.candidate_metrics or {}).get(name))} "
                f"| {_fmt((decision.champion_metrics or {}).get(name))} |"
            )
        lines.append("")
    lines += [f"- v{version}: {text}" for version, text in decision.checks.items()]
    lines += [f"- note: {note}" for note in decision.notes]
    lines.append(f"- MLflow run: `{decision.mlflow_run_id}`; time {decision.time}")
    return "\n".join(lines)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


# --------------------------------------------------------------------------- history


@dataclass(frozen=True)
class History:
    """A model's champion periods and every decision recorded about it."""

    model_name: str
    current: str | None
    periods: list[Period]
    decisions: list[Decision]


def read_history(model_name: str, target: TrackingTarget) -> History:
    """Read the audit history of ``model_name`` from the registry.

    Raises:
        versions.VersionNotFoundError: No such registered model.
    """
    client = connect(target)
    versions.require_model(client, model_name)
    decisions = promotion.read_history(client, model_name)
    current = promotion.current_champion(client, model_name)
    periods = champion_periods(
        decisions, current=current, registered=versions.creation_times(client, model_name)
    )
    return History(model_name, current, periods, decisions)
