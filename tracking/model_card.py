"""A model card for each registered version: short markdown, logged with the model and set as
the version's description in the registry (the MLflow UI shows it on the version's page).

:func:`write_model_card` is the one call after registration (once the sweep run holds its final
params and metrics). Everything on the card is read back from what the sweep recorded: the
parent run's params (data source and rows, holdout split, search budget, best params), metrics
(CV and holdout), tags (data digest), artifacts (plots) and the version's tags (skops sha256).
Only the selected features come from the fitted model, when the caller passes it.
:func:`render_model_card` is the pure part: facts in, markdown out.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from tracking import tags
from tracking.plots import MODEL_DIR, STUDY_PAGE, plot_links
from tracking.store import TrackingTarget, resolve_target

#: File name of the card among the logged model's artifacts.
CARD_FILE = "model_card.md"
#: MLflow's SQL stores keep at most 5000 characters of a version's description.
MAX_DESCRIPTION = 5000

INTENDED_USE = (
    "Rank existing retail-bank customers by their probability of leaving (`Exited = 1`) so a "
    "retention team can decide whom to contact first. The output is a score for people to act "
    "on, not an automated decision about a customer."
)
LIMITS = (
    "Trained on the data named above only (the Kaggle bank-churn files are partly synthetic); "
    "scores drift as customers and products change: re-run the sweep and compare. "
    "Probabilities come from a random forest and are not calibrated. A category the model "
    "never saw (a new country) is scored as if missing. Gender and geography are inputs: check "
    "outcomes per group before using the score for anything that affects a customer."
)


@dataclass
class CardFacts:
    """What a card says, gathered from the registry and the sweep run."""

    name: str
    version: str
    run_id: str | None = None
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    data_digest: str | None = None
    skops_sha256: str | None = None
    artifact_sha256: str | None = None
    selected_features: dict[str, float] | None = None
    #: (title, link) of each plot on the sweep run.
    plots: list[tuple[str, str]] = field(default_factory=list)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _best_params(params: Mapping[str, str]) -> str:
    best = {k.removeprefix("best_"): v for k, v in params.items() if k.startswith("best_")}
    best.pop("trial", None)
    return ", ".join(f"`{k}={v}`" for k, v in sorted(best.items())) or "-"


def _search_space(params: Mapping[str, str]) -> str:
    try:
        space = json.loads(params.get("search_space", "{}"))
    except json.JSONDecodeError:
        return "-"
    parts = []
    for key, value in space.items():
        if isinstance(value, dict) and {"low", "high"} <= set(value):
            parts.append(f"{key} {value['low']}-{value['high']}")
        elif key in ("k_min", "k_max") and value is not None:
            parts.append(f"{key} {value}")
    return ", ".join(parts) or "-"


def render_model_card(facts: CardFacts) -> str:
    """The card as markdown (under :data:`MAX_DESCRIPTION` characters)."""
    p, m = facts.params, facts.metrics
    holdout = {k.removeprefix("holdout_"): v for k, v in m.items() if k.startswith("holdout_")}
    trials = [m.get(f"trials_{state}") for state in ("complete", "pruned", "failed")]
    trial_text = (
        f"{int(trials[0] or 0)} complete, {int(trials[1] or 0)} pruned, {int(trials[2] or 0)} "
        "failed"
        if any(t is not None for t in trials)
        else "-"
    )
    lines = [
        f"## {facts.name} v{facts.version}: model card",
        "",
        "| | |",
        "|---|---|",
        f"| Data | {p.get('data_source', '-')} ({p.get('data_rows', '?')} rows, "
        f"target `{p.get('target', 'Exited')}`) |",
        f"| Data digest | `{facts.data_digest or '-'}` |",
        f"| Holdout | {p.get('test_size', '?')} of the rows, stratified, seed "
        f"{p.get('seed', '?')}; never seen by the search |",
        f"| Search | {p.get('n_trials', '?')} trials ({trial_text}), {p.get('cv_folds', '?')}-"
        f"fold CV, pruner {p.get('pruner', '?')}; space: {_search_space(p)} |",
        f"| Best params | {_best_params(p)} (trial {p.get('best_trial', '?')}) |",
        f"| CV ROC AUC (best trial) | {_fmt(m.get('best_cv_auc'))} |",
        "| Holdout | "
        + (", ".join(f"{k} {_fmt(v)}" for k, v in sorted(holdout.items())) or "-")
        + " |",
    ]
    if facts.selected_features is not None:
        ranked = sorted(facts.selected_features.items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{name} ({value:.2f})" for name, value in ranked)
        lines.append(f"| Selected features (importance) | {shown or '-'} |")
    lines += [
        f"| skops sha256 (standalone file) | `{facts.skops_sha256 or '-'}` |",
        f"| skops sha256 (MLflow artifact) | `{facts.artifact_sha256 or '-'}` |",
        f"| Sweep run | `{facts.run_id or '-'}` |",
        "",
    ]
    if facts.plots:
        lines.append("**Plots**: " + " · ".join(f"[{t}]({u})" for t, u in facts.plots))
        lines.append("")
    lines += [
        f"**Intended use.** {INTENDED_USE}",
        "",
        f"**Limits.** {LIMITS}",
        "",
        '**Use it**: `mlflow.pyfunc.load_model("models:/'
        f'{facts.name}/{facts.version}").predict(df)` gives P(churn) per raw row; '
        "`sweepflow serve` serves the champion (see docs/serve.md).",
    ]
    text = "\n".join(lines)
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 2] + " …"


def gather_facts(
    client: MlflowClient,
    name: str,
    version: str,
    *,
    target: TrackingTarget | None = None,
    model: Any = None,
) -> CardFacts:
    """Read what the card needs from the registry and the version's sweep run."""
    found = client.get_model_version(name, str(version))
    version_tags = dict(found.tags or {})
    facts = CardFacts(
        name=name,
        version=str(found.version),
        run_id=found.run_id,
        data_digest=version_tags.get(tags.TAG_VERSION_DATA_DIGEST),
        skops_sha256=version_tags.get(tags.TAG_SKOPS_SHA256),
        artifact_sha256=version_tags.get(tags.TAG_ARTIFACT_SHA256),
    )
    if model is not None:
        from churnml.model import feature_importances

        try:
            facts.selected_features = dict(feature_importances(model))
        except (AttributeError, KeyError, ValueError):
            facts.selected_features = None
    if not found.run_id:
        return facts
    run = client.get_run(found.run_id)
    facts.params = dict(run.data.params)
    facts.metrics = dict(run.data.metrics)
    facts.data_digest = facts.data_digest or run.data.tags.get(tags.TAG_DATA_DIGEST)
    facts.skops_sha256 = facts.skops_sha256 or run.data.tags.get(tags.TAG_SKOPS_SHA256_RUN)
    paths = [a.path for a in client.list_artifacts(found.run_id, MODEL_DIR) if not a.is_dir]
    paths += [a.path for a in client.list_artifacts(found.run_id, "optuna") if a.path == STUDY_PAGE]
    links = plot_links(target or resolve_target(), run.info.experiment_id, found.run_id, paths)
    facts.plots = [(link.title, link.page_url) for link in links if link.artifact_path]
    return facts


def write_model_card(
    client: MlflowClient,
    name: str,
    version: str,
    *,
    model: Any = None,
    target: TrackingTarget | None = None,
) -> str:
    """Build the card of ``name`` v``version``, log it with the model and set it as the
    version's description. Returns the markdown. Safe to call again (it is overwritten).

    Args:
        client: The registry and tracking store.
        name: Registered model name.
        version: The version just registered.
        model: The fitted pipeline, for its selected features (optional).
        target: For links into the MLflow UI; default: the environment's.
    """
    facts = gather_facts(client, name, version, target=target, model=model)
    card = render_model_card(facts)
    found = client.get_model_version(name, str(version))
    model_id = getattr(found, "model_id", None)
    if not model_id and str(found.source or "").startswith("models:/m-"):
        model_id = str(found.source).removeprefix("models:/")
    with tempfile.TemporaryDirectory(prefix="sweepflow-card-") as folder:
        path = Path(folder) / CARD_FILE
        path.write_text(card + "\n", encoding="utf-8")
        if model_id:
            client.log_model_artifacts(model_id, folder)
        if facts.run_id:
            client.log_artifact(facts.run_id, str(path), f"model_card/v{facts.version}")
    client.update_model_version(name, str(version), description=card)
    return card
