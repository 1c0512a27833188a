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
        f"Trials: **{summary.trials_complete} complete**, {summary.trials_pruned} pruned, "
        f"{summary.trials_failed} failed.",
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
    return "\n\n".join(parts)
