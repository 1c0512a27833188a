"""The ``score`` flow: resolve the version -> load it checked -> score the CSV in chunks ->
record in the Prefect run.

The model is ``models:/<name>@champion`` unless an alias or a version is given; it is loaded
only through our allowlisted skops loader, after its recorded sha256 is checked. Tasks are
thin: each body is one call into ``steps.py``.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task

from churnml.scoring import ScoreConfig, ScoreStats
from flows.events import THIN
from flows.score import steps
from tracking.store import TrackingTarget, resolve_target
from tracking.versions import VersionRef


@task(name="resolve-version", **THIN)
def resolve_version(config: ScoreConfig, target: TrackingTarget) -> VersionRef:
    return steps.resolve_for_scoring(config, target)


@task(name="score-file", **THIN)
def score_file(config: ScoreConfig, ref: VersionRef, target: TrackingTarget) -> ScoreStats:
    return steps.score_file(config, ref, target)


@task(name="record-in-prefect", **THIN)
def record_in_prefect(config: ScoreConfig, ref: VersionRef, stats: ScoreStats) -> None:
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        steps.score_markdown(config, ref, stats),
        key="batch-score",
        description=f"{stats.rows} rows scored with {ref.label}",
    )


@flow(name="score", flow_run_name="score-{config.model_name}", validate_parameters=True)
def score(config: ScoreConfig) -> ScoreStats:
    """Score a CSV with a registered version and write churn probabilities."""
    logger = get_run_logger()
    target = resolve_target()
    ref = resolve_version(config, target)
    logger.info("scoring %s with %s (%s)", config.data, ref.label, config.selector)
    stats = score_file(config, ref, target)
    record_in_prefect(config, ref, stats)
    logger.info("wrote %d rows to %s", stats.rows, stats.out)
    return stats
