"""The ``promote`` flow: plan -> evaluation data -> measure both versions -> decide -> record in
the registry -> record in the Prefect run.

The challenger and the champion are scored on the same rows (a labelled CSV, or by default the
challenger's sweep holdout, rebuilt from what the sweep recorded), each loaded through our
allowlisted skops loader after its recorded sha256 is checked. ``champion`` moves only when the
challenger wins by more than the margin (and meets the floor); either way the decision is
recorded as model-version tags, a registered-model history tag and an MLflow run, and here as a
markdown artifact. With ``to_version`` the flow rolls back: the person's choice replaces the
metric rule, the file checks do not.

Tasks are thin: each body is one call into ``steps.py``.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.runtime import flow_run

from churnml.promotion import Decision, PromoteConfig
from flows.events import THIN, champion_payload, emit_champion
from flows.promote import steps
from tracking.store import TrackingTarget, resolve_target
from tracking.versions import VersionRef


@task(name="plan-promotion", **THIN)
def plan_promotion(config: PromoteConfig, target: TrackingTarget) -> steps.Plan:
    return steps.plan_promotion(config, target)


@task(name="load-evaluation-data", **THIN)
def load_evaluation_data(
    config: PromoteConfig, plan: steps.Plan, target: TrackingTarget
) -> steps.Evaluation:
    return steps.evaluation_data(config, plan, target)


@task(name="measure-version", task_run_name="measure-v{ref.version}", **THIN)
def measure_version(
    ref: VersionRef, evaluation: steps.Evaluation, target: TrackingTarget
) -> steps.Measured:
    return steps.measure(ref, evaluation, target)


@task(name="decide", **THIN)
def decide(
    config: PromoteConfig,
    plan: steps.Plan,
    evaluation: steps.Evaluation,
    candidate: steps.Measured,
    champion: steps.Measured | None,
) -> Decision:
    return steps.make_decision(
        config, plan, evaluation, candidate, champion, flow_run_id=flow_run.get_id()
    )


@task(name="record-in-registry", **THIN)
def record_in_registry(decision: Decision, target: TrackingTarget) -> Decision:
    return steps.record(decision, target)


@task(name="record-in-prefect", **THIN)
def record_in_prefect(decision: Decision) -> None:
    """The decision as a markdown artifact; a new champion also emits the champion event."""
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        steps.decision_markdown(decision),
        key="promotion-decision",
        description=f"{decision.action} v{decision.candidate}: {decision.outcome}",
    )
    if decision.moved:
        emit_champion(
            champion_payload(
                model_name=decision.model_name,
                version=decision.champion_after,
                previous_version=decision.champion_before,
                # What the new-champion webhook reports: ROC AUC on this decision's data.
                holdout_roc_auc=(decision.candidate_metrics or {}).get("roc_auc"),
                action=decision.action,
                reason=decision.reason,
                flow_run_id=decision.flow_run_id,
            )
        )


@flow(
    name="promote",
    flow_run_name="promote-{config.model_name}",
    validate_parameters=True,
)
def promote(config: PromoteConfig = PromoteConfig()) -> Decision:  # noqa: B008 - frozen model
    """Promote the challenger if it wins, or roll back to ``to_version``; record the decision."""
    logger = get_run_logger()
    target = resolve_target()
    plan = plan_promotion(config, target)
    evaluation = load_evaluation_data(config, plan, target)
    logger.info(
        "%s: v%s against champion v%s on %s",
        plan.action,
        plan.candidate.version,
        plan.champion.version if plan.champion else None,
        evaluation.source,
    )
    candidate = measure_version(plan.candidate, evaluation, target)
    champion = None
    if plan.champion is not None:
        champion = (
            candidate
            if plan.champion.version == plan.candidate.version
            else measure_version(plan.champion, evaluation, target)
        )
    decision = decide(config, plan, evaluation, candidate, champion)
    decision = record_in_registry(decision, target)
    record_in_prefect(decision)
    logger.info("%s: %s", decision.outcome, decision.reason)
    return decision
