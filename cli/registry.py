"""``sweepflow promote``, ``rollback`` and ``history``: the registry from the shell.

Prefect and MLflow are imported inside the commands, so ``sweepflow --help`` stays fast.
Settings, files and the registry are checked before a flow starts: a problem is one line on
stderr and exit code 2. A promotion refused because a model file failed its checks exits 1 (the
refusal is recorded).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from churnml.config import ConfigError
from churnml.promotion import REFUSED, Decision, PromoteConfig, parse_promote_config
from churnml.schema import DataValidationError
from churnml.scoring import check_columns, read_header
from cli import common
from cli.common import EXIT_REFUSED, fail, one_line

if TYPE_CHECKING:
    from flows.promote.steps import History

DEFAULT_MODEL = PromoteConfig().model_name

ModelName = Annotated[str, typer.Option(help="Registered model name.")]
EvalData = Annotated[
    Path | None,
    typer.Option(
        help="Labelled evaluation CSV (bank-churn schema with the target). "
        "Default: the challenger's sweep holdout, rebuilt exactly."
    ),
]
Target = Annotated[str, typer.Option(help="Target column of --data.")]
Verbose = Annotated[
    bool,
    typer.Option("--verbose", "-v", help="Show Prefect's and MLflow's logs (every task run)."),
]


def run_reporting_failures(action: Any) -> Any:
    """Run ``action``, turning known failures into one-line errors with the right exit code."""
    from flows.promote.steps import EvaluationDataError
    from tracking.model_files import ModelFileError
    from tracking.promotion import PromotionConflictError
    from tracking.store import STORE_ERRORS, mask_uri, resolve_target
    from tracking.versions import VersionNotFoundError

    try:
        return action()
    except (ConfigError, DataValidationError, EvaluationDataError, VersionNotFoundError) as error:
        raise fail(one_line(error)) from None
    except ModelFileError as error:
        raise fail(one_line(error), EXIT_REFUSED) from None
    except PromotionConflictError as error:
        raise fail(one_line(error), EXIT_REFUSED) from None
    except STORE_ERRORS as error:
        uri = mask_uri(resolve_target().tracking_uri)
        raise fail(f"MLflow at {uri}: {one_line(error)[:300]}") from None


# --------------------------------------------------------------------------- promote


def promote(
    model_name: ModelName = DEFAULT_MODEL,
    to_version: Annotated[
        int | None,
        typer.Option(help="Roll back: make version N champion (its file checks still apply)."),
    ] = None,
    metric: Annotated[
        str, typer.Option(help="roc_auc, accuracy, f1, precision, recall or log_loss.")
    ] = "roc_auc",
    margin: Annotated[
        float, typer.Option(help="The challenger must beat the champion by more than this.")
    ] = 0.0,
    floor: Annotated[
        float | None,
        typer.Option(help="Worst metric value a new champion may have (a ceiling for log_loss)."),
    ] = None,
    data: EvalData = None,
    target: Target = "Exited",
    verbose: Verbose = False,
) -> None:
    """Score champion and challenger on the same data; move champion only if the challenger wins.

    Either way the decision is recorded in the registry (history, version tags, an MLflow run)
    and in the Prefect run. With --to-version N, roll back to version N instead.
    """
    settings = {
        "model_name": model_name,
        "to_version": to_version,
        "metric": metric,
        "margin": margin,
        "floor": floor,
        "data": data,
        "target": target,
    }
    _promote({key: value for key, value in settings.items() if value is not None}, verbose)


def rollback(
    to_version: Annotated[int, typer.Option(help="The version to make champion again.")],
    model_name: ModelName = DEFAULT_MODEL,
    data: EvalData = None,
    target: Target = "Exited",
    verbose: Verbose = False,
) -> None:
    """Move champion back to version N (same as promote --to-version N), recorded the same way."""
    settings = {"model_name": model_name, "to_version": to_version, "target": target}
    if data is not None:
        settings["data"] = data
    _promote(settings, verbose)


def _quiet_unless(verbose: bool) -> None:
    """Keep Prefect's INFO lines off the console, as ``sweepflow sweep`` does."""
    if not verbose:
        common.quiet_console_logs()


def _promote(raw: dict[str, Any], verbose: bool = False) -> None:
    try:
        config = parse_promote_config(raw)
    except ConfigError as error:
        raise fail(one_line(error)) from None
    if config.data is not None:
        try:
            check_columns(read_header(config.data), str(config.data))
        except DataValidationError as error:
            raise fail(one_line(error)) from None

    def run() -> Decision:
        from flows.promote.steps import plan_promotion
        from tracking.store import resolve_target

        plan_promotion(config, resolve_target())  # a missing model or version: before Prefect
        from flows.promote.flow import promote as promote_flow

        _quiet_unless(verbose)
        return promote_flow(config=config)

    decision = run_reporting_failures(run)
    print_decision(decision)
    if decision.outcome == REFUSED:
        raise typer.Exit(EXIT_REFUSED)


def print_decision(decision: Decision) -> None:
    """The decision as a table: outcome, why, both versions' metrics, what was checked."""
    from rich.table import Table

    table = Table(
        title=f"{decision.model_name}: {decision.action} v{decision.candidate}",
        show_header=False,
        title_justify="left",
    )
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row("outcome", decision.outcome)
    table.add_row("reason", decision.reason)
    table.add_row(
        "champion", f"before v{decision.champion_before}, after v{decision.champion_after}"
    )
    for role, version, values in (
        ("candidate", decision.candidate, decision.candidate_metrics),
        ("champion before", decision.champion_before, decision.champion_metrics),
    ):
        if values:
            shown = ", ".join(
                f"{key} {values[key]:.4f}"
                for key in ("roc_auc", "accuracy", "f1", "precision", "recall", "log_loss")
                if key in values
            )
            table.add_row(f"{role} v{version}", shown)
    table.add_row("data", f"{decision.data_source} (digest {decision.data_digest})")
    for version, text in decision.checks.items():
        table.add_row(f"checks v{version}", text)
    for note in decision.notes:
        table.add_row("note", note)
    table.add_row("recorded", f"MLflow run {decision.mlflow_run_id}; {decision.time}")
    common.console.print(table)


# --------------------------------------------------------------------------- history


def history(model_name: ModelName = DEFAULT_MODEL) -> None:
    """Which version was champion, from when to when, and why; then every recorded decision."""

    def run() -> History:
        from flows.promote.steps import read_history
        from tracking.store import resolve_target

        return read_history(model_name, resolve_target())

    print_history(run_reporting_failures(run))


def _when(text: str | None) -> str:
    """ISO time text as ``YYYY-MM-DD HH:MM:SS`` (UTC), ``?`` when unknown."""
    return text.replace("T", " ")[:19] if text else "?"


def print_history(found: History) -> None:
    """Two tables: the champion periods, and the decisions behind them."""
    from rich.table import Table

    periods = Table(title=f"{found.model_name}: champion periods (UTC)", title_justify="left")
    for column in ("version", "from", "to"):
        periods.add_column(column, no_wrap=True)
    periods.add_column("why", overflow="fold", ratio=1)
    for period in found.periods:
        periods.add_row(
            f"v{period.version}",
            _when(period.start),
            "now" if period.end is None else _when(period.end),
            period.reason,
        )
    if not found.periods:
        periods.add_row("-", "-", "-", "no champion yet")
    common.console.print(periods)
    decisions = Table(title="decisions (UTC)", title_justify="left")
    for column in ("time", "decision", "champion"):
        decisions.add_column(column, no_wrap=True)
    decisions.add_column("reason", overflow="fold", ratio=1)
    for item in found.decisions:
        decisions.add_row(
            _when(item.time),
            f"{item.action} v{item.candidate}: {item.outcome}",
            f"v{item.champion_before} -> v{item.champion_after}",
            item.reason,
        )
    if not found.decisions:
        decisions.add_row("-", "-", "-", "none recorded yet (sweepflow promote)")
    common.console.print(decisions)
