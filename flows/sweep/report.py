"""Text a person reads: the Prefect summary and leaderboard, and where to look next.

Plain functions over plain data, so they are tested without Prefect or MLflow.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from churnml.model import feature_importances
from flows.sweep.trial_steps import TrialContext, TrialResult
from sweepflow import settings
from sweepflow.settings import mask_uri
from tracking.plots import PlotReport
from tracking.store import console_script

PREFECT_UI_DEFAULT = "http://127.0.0.1:4200"


class SweepSummary(BaseModel):
    """What a sweep found and where it put it; returned by the flow and printed by the CLI."""

    study_name: str
    study_note: str
    study_trials: int
    experiment_name: str
    experiment_id: str
    parent_run_id: str
    flow_run_id: str | None
    data_source: str
    data_digest: str
    data_rows: int
    trials_complete: int
    trials_pruned: int
    trials_failed: int
    best_trial: int
    best_cv_auc: float
    best_params: dict[str, Any]
    holdout: dict[str, float]
    selected_features: list[str]
    model_name: str
    model_version: str
    model_aliases: list[str]
    model_uri: str
    skops_path: str
    skops_sha256: str
    tracking_uri: str
    mlflow_ui_command: str
    mlflow_run_url: str
    mlflow_model_url: str
    prefect_ui_hint: str
    plots: PlotReport | None = None
    #: Why the sweep stopped asking for trials (its budget, or a stopping rule).
    stop_reason: str = ""
    #: Best params on a bound of the search space that could be widened.
    on_bounds: list[str] = []


def summarize(
    *,
    context: TrialContext,
    experiment_name: str,
    data: Any,
    plan: Any,
    study: Any,
    results: list[TrialResult],
    best: Any,
    holdout: dict[str, float],
    model: Any,
    version: Any,
    skops_file: Any,
    sha256: str,
    plots: PlotReport | None,
    stop_reason: str = "",
    on_bounds: list[str] | None = None,
) -> SweepSummary:
    """The sweep's :class:`SweepSummary` from what its steps returned."""
    complete = sum(1 for r in results if r.state == "COMPLETE")
    failed = sum(1 for r in results if r.state == "FAIL")
    target = context.target
    return SweepSummary(
        study_name=context.study_name,
        study_note=plan.note,
        study_trials=len(study.trials),
        experiment_name=experiment_name,
        experiment_id=context.experiment_id,
        parent_run_id=context.parent_run_id,
        flow_run_id=context.flow_run_id,
        data_source=data.source,
        data_digest=data.digest,
        data_rows=data.rows,
        trials_complete=complete,
        trials_pruned=len(results) - complete - failed,
        trials_failed=failed,
        best_trial=best.number,
        best_cv_auc=best.value,
        best_params=best.params,
        holdout=holdout,
        selected_features=list(feature_importances(model)),
        model_name=version.name,
        model_version=version.version,
        model_aliases=list(version.aliases),
        model_uri=version.model_uri,
        skops_path=str(skops_file),
        skops_sha256=sha256,
        tracking_uri=mask_uri(target.tracking_uri),
        mlflow_ui_command=target.ui_command,
        mlflow_run_url=target.run_url(context.experiment_id, context.parent_run_id),
        mlflow_model_url=target.model_version_url(version.name, version.version),
        prefect_ui_hint=prefect_ui_hint(context.flow_run_id),
        plots=plots,
        stop_reason=stop_reason,
        on_bounds=on_bounds or [],
    )


def completion_message(summary: SweepSummary) -> str | None:
    """The flow's final message when trials failed (it still completes), else None."""
    if not summary.trials_failed:
        return None
    done = summary.trials_complete + summary.trials_pruned + summary.trials_failed
    return (
        f"{summary.trials_failed} of {done} trials failed; best of the "
        f"{summary.trials_complete} completed registered as v{summary.model_version}"
    )


def study_records(study: Any) -> list[TrialResult]:
    """The completed trials of an Optuna study (every sweep's) as records."""
    import optuna

    return [
        TrialResult(
            number=t.number,
            state="COMPLETE",
            value=t.value,
            params=dict(t.user_attrs.get("params", t.params)),
            fold_scores=[t.intermediate_values[k] for k in sorted(t.intermediate_values)],
        )
        for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    ]


def history_markdown(note: str, rows: list[dict[str, Any]], schedules: list[str]) -> str:
    """The study across sweeps (best per sweep, trials so far) and the active schedule."""
    lines = [f"# Study history\n\n{note}.\n"]
    lines.append(
        "| sweep run | flow run | trials | complete | best in sweep | best so far | trials so far |"
    )
    lines.append("|---|---|---|---|---|---|---|")
    for row in rows:
        lines.append(
            f"| {row['sweep_run'][:12]} | {str(row['flow_run'])[:8]} | {row['trials']} "
            f"| {row['complete']} | {row['best_in_sweep']} | {row['best_so_far']} "
            f"| {row['trials_so_far']} |"
        )
    lines.append("")
    if schedules:
        lines.append("Schedule: " + "; ".join(schedules))
    else:
        lines.append("Schedule: none (an ad-hoc run, not from a scheduled deployment)")
    return "\n".join(lines)


def leaderboard_rows(records: list[TrialResult], top: int = 10) -> list[dict[str, Any]]:
    """The best completed trials first, then a count of the rest, as table rows."""
    ranked = sorted((r for r in records if r.state == "COMPLETE"), key=lambda r: -(r.value or 0.0))[
        :top
    ]
    return [
        {
            "rank": rank,
            "trial": f"trial-{r.number:03d}",
            "cv_auc": round(r.value or 0.0, 5),
            **{key: str(value) for key, value in r.params.items()},
            "fit_seconds": round(r.fit_seconds, 2),
        }
        for rank, r in enumerate(ranked, start=1)
    ]


def prefect_ui_hint(flow_run_id: str | None) -> str:
    """How to see this flow run in the Prefect UI."""
    found = settings.current()
    ui = found.prefect_ui_url or ""
    api = found.prefect_api_url or ""
    if not ui and api:
        ui = api.removesuffix("/").removesuffix("/api")
    page = f"/runs/flow-run/{flow_run_id}" if flow_run_id else ""
    if ui:
        return f"open {ui}{page}"
    # The temporary server stopped with the flow; this one keeps running (same Prefect home,
    # so the run is there), and later sweeps find it instead of starting their own.
    return (
        f"{console_script('sweepflow')} server start   # then open {PREFECT_UI_DEFAULT}{page}"
        " (later sweeps use this server, and start in its warm process: ~6 s sooner)"
    )


def _table(rows: list[tuple[str, Any]]) -> str:
    lines = ["| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in rows]
    return "\n".join(lines)


def summary_markdown(summary: Any) -> str:
    """Markdown for the Prefect run: best params, CV and holdout metrics, model and file."""
    holdout = summary.holdout
    parts = [
        f"# Sweep `{summary.study_name}`",
        f"Data: {summary.data_source} ({summary.data_rows} rows, digest `{summary.data_digest}`)",
        f"Trials this sweep: **{summary.trials_complete} complete**, "
        f"{summary.trials_pruned} pruned, {summary.trials_failed} failed. "
        f"Study: {summary.study_note}; {summary.study_trials} trials in all.",
        f"Stopped: {summary.stop_reason or 'n/a'}.",
        *(
            [f"Best on a bound of the search space: {'; '.join(summary.on_bounds)}; widen it."]
            if summary.on_bounds
            else []
        ),
        "## Best trial",
        _table(
            [
                ("trial", f"trial-{summary.best_trial:03d}"),
                ("CV ROC AUC", f"{summary.best_cv_auc:.4f}"),
            ]
            + [(key, f"`{value}`") for key, value in summary.best_params.items()]
        ),
        "## Holdout (never seen by the search)",
        _table(
            [
                (key, f"{holdout[key]:.4f}")
                for key in ("roc_auc", "accuracy", "f1", "precision", "recall", "log_loss")
            ]
            + [
                (
                    "confusion [tn fp; fn tp]",
                    f"[{holdout['true_negatives']:.0f} {holdout['false_positives']:.0f}; "
                    f"{holdout['false_negatives']:.0f} {holdout['true_positives']:.0f}]",
                )
            ]
        ),
        f"Selected features: {', '.join(summary.selected_features)}",
        "## Model",
        _table(
            [
                ("registered", f"`{summary.model_name}` version {summary.model_version}"),
                ("aliases", ", ".join(summary.model_aliases) or "none"),
                ("skops file", f"`{summary.skops_path}`"),
                ("sha256", f"`{summary.skops_sha256}`"),
                ("MLflow run", f"[{summary.parent_run_id}]({summary.mlflow_run_url})"),
                (
                    "MLflow model",
                    f"[{summary.model_name} v{summary.model_version}]({summary.mlflow_model_url})",
                ),
            ]
        ),
        f"Open the MLflow UI with `{summary.mlflow_ui_command}`.",
    ]
    plots = getattr(summary, "plots", None)
    if plots is not None:
        parts.append(plots_markdown(plots, summary.mlflow_ui_command))
    return "\n\n".join(parts)


#: The plots shown inline in the summary; the others are linked.
KEY_PLOTS = (
    "model/roc_curve.png",
    "optuna/optimization_history.png",
    "optuna/param_importances.png",
)


def plots_markdown(report: Any, ui_command: str) -> str:
    """The key plots inline and every plot linked into the MLflow UI, plus what was skipped.

    Args:
        report: a :class:`tracking.plots.PlotReport` (links and skip reasons).
        ui_command: the command that serves the MLflow UI the links point into.
    """
    parts = ["## Plots"]
    if report.links:
        # Images and links are served by the MLflow UI, so they show while it runs.
        parts.append(
            f"Served by the MLflow UI (`{ui_command}`); artifacts `model/` and `optuna/` of "
            "the sweep run."
        )
        inline = [report.link(path) for path in KEY_PLOTS]
        parts += [f"![{link.title}]({link.image_url})" for link in inline if link is not None]
        parts.append(
            _table([(link.title, f"[open in MLflow]({link.page_url})") for link in report.links])
        )
    else:
        parts.append("No plot was logged.")
    if report.skipped:
        parts.append(
            "Not drawn: "
            + "; ".join(f"{name} ({reason})" for name, reason in report.skipped.items())
        )
    return "\n\n".join(parts)
