"""Text a person reads: the Prefect summary and leaderboard, and where to look next.

Plain functions over plain data, so they are tested without Prefect or MLflow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from flows.steps import TrialOutcome
from tracking.store import console_script

PREFECT_UI_DEFAULT = "http://127.0.0.1:4200"


@dataclass(frozen=True)
class TrialRecord:
    """One trial as the sweep saw it end: COMPLETE, PRUNED or FAIL."""

    number: int
    state: str
    value: float | None
    params: dict[str, Any]
    fold_scores: list[float] = field(default_factory=list)
    fit_seconds: float = 0.0
    run_id: str | None = None
    error: str | None = None

    @classmethod
    def from_outcome(cls, outcome: TrialOutcome) -> TrialRecord:
        return cls(
            number=outcome.number,
            state=outcome.state,
            value=outcome.value,
            params=outcome.params,
            fold_scores=outcome.fold_scores,
            fit_seconds=outcome.fit_seconds,
            run_id=outcome.run_id,
        )


def study_records(study: Any) -> list[TrialRecord]:
    """The completed trials of an Optuna study (every sweep's) as records."""
    import optuna

    return [
        TrialRecord(
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


def leaderboard_rows(records: list[TrialRecord], top: int = 10) -> list[dict[str, Any]]:
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
    ui = os.environ.get("PREFECT_UI_URL") or ""
    api = os.environ.get("PREFECT_API_URL") or ""
    if not ui and api:
        ui = api.removesuffix("/").removesuffix("/api")
    page = f"/runs/flow-run/{flow_run_id}" if flow_run_id else ""
    if ui:
        return f"open {ui}{page}"
    return f"{console_script('prefect')} server start   # then open {PREFECT_UI_DEFAULT}{page}"


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
