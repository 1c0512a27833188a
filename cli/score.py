"""``sweepflow score``: churn probabilities for every row of a file, with a registered version
loaded through the checked loader."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from churnml.config import ConfigError
from churnml.schema import DataValidationError
from churnml.scoring import check_columns, parse_score_config, read_header
from cli import common
from cli.common import fail, one_line
from cli.registry import DEFAULT_MODEL, ModelName, Verbose, run_reporting_failures


def score(
    data: Annotated[Path, typer.Option(help="CSV to score (bank-churn columns; others ignored).")],
    out: Annotated[Path, typer.Option(help="CSV of predictions to write.")],
    alias: Annotated[
        str | None, typer.Option(help="Registry alias to score with. Default: champion.")
    ] = None,
    version: Annotated[int | None, typer.Option(help="Model version to score with.")] = None,
    model_name: ModelName = DEFAULT_MODEL,
    chunk_rows: Annotated[int, typer.Option(help="Rows read and scored at a time.")] = 50_000,
    verbose: Verbose = False,
) -> None:
    """Write churn probabilities for every row of a CSV, with the model version used."""
    try:
        config = parse_score_config(
            {
                "data": data,
                "out": out,
                "alias": alias,
                "version": version,
                "model_name": model_name,
                "chunk_rows": chunk_rows,
            }
        )
        check_columns(read_header(config.data), str(config.data))
    except (ConfigError, DataValidationError) as error:
        raise fail(one_line(error)) from None

    def run() -> Any:
        from flows.score.steps import resolve_for_scoring
        from tracking.store import resolve_target

        ref = resolve_for_scoring(config, resolve_target())  # before Prefect starts
        from flows.score.flow import score as score_flow

        if not verbose:
            common.quiet_console_logs()
        return ref, score_flow(config=config)

    ref, stats = run_reporting_failures(run)
    extra = ""
    if stats.unknown_categories:
        extra = "; unseen categories scored: " + ", ".join(
            f"{name} in {count} rows" for name, count in stats.unknown_categories.items()
        )
    via = "" if config.version is not None else f" ({config.selector})"
    common.console.print(
        f"scored {stats.rows} rows with {ref.label}{via} in {stats.chunks} "
        f"chunk(s); wrote {stats.out}{extra}",
        highlight=False,
        soft_wrap=True,
    )
