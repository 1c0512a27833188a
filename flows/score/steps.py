"""Plain functions behind the ``score`` flow: which version scores, scoring a file with it
through the checked loader, and the Prefect report. No Prefect here."""

from __future__ import annotations

import tempfile

from churnml.scoring import ScoreConfig, ScoreStats, score_csv
from tracking import versions
from tracking.store import TrackingTarget, client_for, connect
from tracking.tags import CHAMPION


def resolve_for_scoring(config: ScoreConfig, target: TrackingTarget) -> versions.VersionRef:
    """The version to score with: ``config.version``, else ``config.alias`` (default champion).

    Raises:
        versions.VersionNotFoundError: The model, version or alias does not exist.
    """
    client = connect(target)
    if config.version is not None:
        return versions.get_version(client, config.model_name, config.version)
    return versions.require_alias(client, config.model_name, config.alias or CHAMPION)


def score_file(config: ScoreConfig, ref: versions.VersionRef, target: TrackingTarget) -> ScoreStats:
    """Load the version through the checked loader and score ``config.data`` into ``config.out``.

    Raises:
        ModelFileError: The model file fails its checks (nothing is scored).
        DataValidationError: The input is unusable.
    """
    with tempfile.TemporaryDirectory(prefix="sweepflow-model-") as workdir:
        loaded = versions.load_version(client_for(target), ref, workdir=workdir)
    return score_csv(
        loaded.model,
        config.data,
        config.out,
        model_version=ref.version,
        chunk_rows=config.chunk_rows,
    )


def score_markdown(config: ScoreConfig, ref: versions.VersionRef, stats: ScoreStats) -> str:
    """Markdown for the Prefect run: what was scored with which version, and where it went."""
    unknown = ", ".join(f"{k}: {v} rows" for k, v in stats.unknown_categories.items()) or "none"
    mean = "n/a" if stats.mean_probability is None else f"{stats.mean_probability:.4f}"
    return "\n".join(
        [
            f"# Scored {config.data} with {ref.label}",
            "",
            f"- rows: {stats.rows} in {stats.chunks} chunk(s) of at most {config.chunk_rows}",
            f"- output: `{stats.out}`",
            f"- mean churn probability: {mean}",
            f"- rows with a category the model never saw: {unknown}",
            f"- version aliases: {', '.join(ref.aliases) or 'none'}",
        ]
    )
