"""Deciding which registered version is champion: settings, the rule, and the audit trail.

A pure module (pydantic and the standard library, never Prefect or MLflow): the promote flow
measures both versions, :func:`decide` applies the rule, and ``tracking/promotion.py`` stores the
resulting :class:`Decision` in the registry. :func:`champion_periods` turns the stored decisions
back into "which version was champion, from when to when, and why".

The sweep records :func:`holdout_spec` on its MLflow run, so a later promotion can rebuild the
exact holdout the sweep set aside (:func:`parse_holdout_spec` gives back the settings).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from churnml.config import (
    ConfigError,
    DataConfig,
    StrictModel,
    SweepConfig,
    describe_validation_error,
)

Metric = Literal["roc_auc", "accuracy", "f1", "precision", "recall", "log_loss"]

#: Metrics where a smaller value is better; every other metric is better when larger.
LOWER_IS_BETTER: frozenset[str] = frozenset({"log_loss"})

#: Decision outcomes. ``refused``: the candidate's model file failed its checks.
PROMOTED = "promoted"
KEPT = "kept"
ROLLED_BACK = "rolled_back"
REFUSED = "refused"
UNCHANGED = "unchanged"

#: Version of the holdout spec's JSON layout, so a later reader can tell what it holds.
HOLDOUT_SPEC_VERSION = 1


class PromoteConfig(StrictModel):
    """Settings of one promotion (or, with ``to_version``, one rollback)."""

    model_name: str = Field(default="bank-churn-classifier", min_length=1, max_length=200)
    metric: Metric = Field(default="roc_auc", description="The primary metric compared.")
    margin: float = Field(
        default=0.0,
        ge=0.0,
        le=1.0,
        description="The challenger must beat the champion by more than this on the metric.",
    )
    floor: float | None = Field(
        default=None,
        description="The worst metric value a new champion may have (a ceiling for log_loss).",
    )
    to_version: int | None = Field(
        default=None,
        ge=1,
        description="Roll back: make this version champion (no metric rule, checks still apply).",
    )
    data: Path | None = Field(
        default=None,
        description="Labelled evaluation CSV (bank-churn schema); None: the sweep's holdout.",
    )
    target: str = Field(default="Exited", min_length=1, description="Target column of `data`.")

    @model_validator(mode="after")
    def _floor_in_range(self) -> PromoteConfig:
        upper = None if self.metric in LOWER_IS_BETTER else 1.0
        if self.floor is not None and (self.floor < 0.0 or (upper and self.floor > upper)):
            bounds = "0 or more" if upper is None else "in [0, 1]"
            raise ValueError(f"floor {self.floor} for {self.metric} must be {bounds}")
        return self

    @property
    def action(self) -> str:
        return "rollback" if self.to_version is not None else "promote"


def parse_promote_config(raw: dict | PromoteConfig | None) -> PromoteConfig:
    """Validate raw settings into a :class:`PromoteConfig`, raising :class:`ConfigError`."""
    if isinstance(raw, PromoteConfig):
        return raw
    try:
        return PromoteConfig.model_validate(raw or {})
    except ValidationError as error:
        raise ConfigError(
            f"invalid promotion settings: {describe_validation_error(error)}"
        ) from None


# --------------------------------------------------------------------------- the holdout


def holdout_spec(config: SweepConfig) -> str:
    """JSON of everything needed to rebuild a sweep's holdout (recorded on the sweep run).

    The data path is made absolute, so the spec does not depend on the working directory.

    Args:
        config: The sweep's settings.

    Returns:
        Compact JSON: the data settings, ``test_size``, ``seed`` and ``cv_folds``.
    """
    data = config.data.model_dump(mode="json")
    if config.data.path is not None:
        data["path"] = str(Path(config.data.path).resolve())
    spec = {
        "spec": HOLDOUT_SPEC_VERSION,
        "data": data,
        "test_size": config.test_size,
        "seed": config.seed,
        "cv_folds": config.cv_folds,
    }
    return json.dumps(spec, separators=(",", ":"), sort_keys=True)


def parse_holdout_spec(text: str) -> SweepConfig:
    """The sweep settings that rebuild a holdout, from :func:`holdout_spec`'s JSON.

    Raises:
        ConfigError: The text is not a holdout spec this version understands.
    """
    try:
        raw = json.loads(text)
        if not isinstance(raw, dict) or raw.get("spec") != HOLDOUT_SPEC_VERSION:
            raise ValueError(f"not a version-{HOLDOUT_SPEC_VERSION} holdout spec")
        return SweepConfig(
            data=DataConfig.model_validate(raw["data"]),
            test_size=raw["test_size"],
            seed=raw["seed"],
            cv_folds=raw["cv_folds"],
        )
    except (ValueError, KeyError, TypeError) as error:
        message = " ".join(str(error).split())
        raise ConfigError(f"unreadable holdout spec ({message})") from None


# --------------------------------------------------------------------------- the rule


@dataclass(frozen=True)
class Verdict:
    """What the rule says: the outcome and a one-line reason a person can read."""

    outcome: str
    reason: str


def gain(metric: str, candidate: float, champion: float) -> float:
    """How much better the candidate is (negative when worse), in the metric's units."""
    return champion - candidate if metric in LOWER_IS_BETTER else candidate - champion


def meets_floor(metric: str, value: float, floor: float | None) -> bool:
    """True when there is no floor, or ``value`` is at least as good as it."""
    if floor is None:
        return True
    return value <= floor if metric in LOWER_IS_BETTER else value >= floor


def decide(
    *,
    metric: str,
    margin: float,
    floor: float | None,
    candidate_version: str,
    candidate_value: float | None,
    champion_version: str | None,
    champion_value: float | None,
    candidate_error: str | None = None,
    champion_error: str | None = None,
) -> Verdict:
    """Apply the promotion rule to measured values.

    The candidate (the ``challenger``) becomes champion only when its model file passed every
    check, it meets the floor, and it beats the champion by more than ``margin`` on ``metric``.
    When there is no champion, meeting the floor is enough. When the champion's own file fails
    its checks, nothing moves: a person decides (``--to-version`` rolls back).

    Args:
        metric: The primary metric (see :data:`LOWER_IS_BETTER` for its direction).
        margin: The required lead, in the metric's units (0 means any improvement).
        floor: The worst acceptable value for a new champion, or None.
        candidate_version: The challenger's version.
        candidate_value: The challenger's metric, or None when it could not be measured.
        champion_version: The current champion's version, or None when there is none.
        champion_value: The champion's metric, or None when it could not be measured.
        candidate_error: Why the challenger's model file was refused, if it was.
        champion_error: Why the champion's model file was refused, if it was.

    Returns:
        The outcome (:data:`PROMOTED`, :data:`KEPT`, :data:`REFUSED` or :data:`UNCHANGED`) and a
        one-line reason.
    """
    if candidate_error is not None or candidate_value is None:
        return Verdict(REFUSED, f"v{candidate_version} is never promoted: {candidate_error}")
    shown = f"{metric} {candidate_value:.4f}"
    if champion_version == candidate_version:
        return Verdict(UNCHANGED, f"v{candidate_version} is already champion ({shown})")
    if not meets_floor(metric, candidate_value, floor):
        side = "above the ceiling" if metric in LOWER_IS_BETTER else "below the floor"
        return Verdict(KEPT, f"v{candidate_version} {shown} is {side} {floor}")
    if champion_version is None:
        return Verdict(PROMOTED, f"v{candidate_version} {shown} and there was no champion")
    if champion_error is not None or champion_value is None:
        return Verdict(
            KEPT,
            f"champion v{champion_version} could not be measured ({champion_error}); "
            f"nothing moves until a person decides (sweepflow promote --to-version N)",
        )
    lead = gain(metric, candidate_value, champion_value)
    versus = (
        f"v{candidate_version} {shown} vs champion v{champion_version} {champion_value:.4f}"
        f" (lead {lead:+.4f}, margin {margin})"
    )
    if lead > margin:
        return Verdict(PROMOTED, f"{versus}: challenger wins")
    return Verdict(KEPT, f"{versus}: challenger does not win by more than the margin")


# --------------------------------------------------------------------------- the record


@dataclass
class Decision:
    """One promotion or rollback decision, as stored in the registry and shown by history.

    ``champion_before``/``champion_after`` are version numbers as text (None: no champion).
    Metrics are the full holdout metric dicts of each version on the same evaluation data.
    """

    action: str
    outcome: str
    model_name: str
    candidate: str
    champion_before: str | None
    champion_after: str | None
    metric: str
    reason: str
    time: str
    margin: float | None = None
    floor: float | None = None
    candidate_metrics: dict[str, float] | None = None
    champion_metrics: dict[str, float] | None = None
    data_source: str | None = None
    data_digest: str | None = None
    data_rows: int | None = None
    checks: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    flow_run_id: str | None = None
    mlflow_run_id: str | None = None

    @property
    def moved(self) -> bool:
        """True when the decision moved the ``champion`` alias."""
        return self.champion_after != self.champion_before

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Decision:
        """Read a stored decision; unknown keys (from a newer writer) are ignored."""
        raw: dict[str, Any] = json.loads(text)
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in raw.items() if key in known})


@dataclass(frozen=True)
class Period:
    """A stretch of time one version held ``champion``; ``end`` None means it still does."""

    version: str
    start: str | None
    end: str | None
    reason: str
    flow_run_id: str | None = None
    mlflow_run_id: str | None = None


def champion_periods(
    decisions: list[Decision],
    *,
    current: str | None,
    registered: dict[str, str],
) -> list[Period]:
    """Who was champion, from when to when, and why, oldest first.

    Args:
        decisions: Stored decisions, in time order.
        current: The version holding ``champion`` now (None: no champion).
        registered: Creation time of each version (ISO text), for the first champion, which the
            sweep set when it registered the first version.

    Returns:
        One :class:`Period` per stretch; a final period without a decision behind it means the
        alias was moved outside sweepflow.
    """
    periods: list[Period] = []
    moves = [d for d in decisions if d.moved]
    holder: str | None = moves[0].champion_before if moves else current
    if holder is not None:
        first = min(registered, key=int) if registered else None
        why = (
            "first registered version: the sweep made it champion"
            if holder == first
            else "champion before the recorded history starts"
        )
        periods.append(Period(holder, registered.get(holder), None, why))
    for move in moves:
        if periods and periods[-1].end is None:
            periods[-1] = _ended(periods[-1], move.time)
        if move.champion_after is not None:
            periods.append(
                Period(
                    move.champion_after,
                    move.time,
                    None,
                    f"{move.action}: {move.reason}",
                    move.flow_run_id,
                    move.mlflow_run_id,
                )
            )
    last = periods[-1].version if periods else None
    if current != last:
        if periods and periods[-1].end is None:
            periods[-1] = _ended(periods[-1], "?")
        if current is not None:
            periods.append(Period(current, None, None, "alias moved outside sweepflow (no record)"))
    return periods


def _ended(period: Period, end: str) -> Period:
    """The period closed at ``end`` (``?`` when the end is unknown)."""
    return Period(
        period.version, period.start, end, period.reason, period.flow_run_id, period.mlflow_run_id
    )
