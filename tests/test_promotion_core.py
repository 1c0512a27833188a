"""The promotion rule, the audit periods and the holdout spec: plain functions, no servers."""

from __future__ import annotations

import pytest

from churnml import prepare
from churnml.config import ConfigError, DataConfig, SweepConfig
from churnml.digests import frame_digest
from churnml.promotion import (
    KEPT,
    PROMOTED,
    REFUSED,
    UNCHANGED,
    Decision,
    champion_periods,
    decide,
    holdout_spec,
    parse_holdout_spec,
    parse_promote_config,
)


def rule(**overrides):
    settings = {
        "metric": "roc_auc",
        "margin": 0.0,
        "floor": None,
        "candidate_version": "2",
        "candidate_value": 0.85,
        "champion_version": "1",
        "champion_value": 0.80,
    }
    settings.update(overrides)
    return decide(**settings)


def test_a_better_challenger_wins():
    verdict = rule()
    assert verdict.outcome == PROMOTED
    assert "v2 roc_auc 0.8500 vs champion v1 0.8000" in verdict.reason


def test_the_margin_must_be_exceeded():
    assert rule(margin=0.05).outcome == KEPT
    assert rule(margin=0.049).outcome == PROMOTED
    assert rule(candidate_value=0.80).outcome == KEPT  # a tie never moves the champion


def test_the_floor_applies_even_without_a_champion():
    assert rule(floor=0.9).outcome == KEPT
    assert rule(champion_version=None, champion_value=None).outcome == PROMOTED
    verdict = rule(champion_version=None, champion_value=None, floor=0.9)
    assert verdict.outcome == KEPT and "below the floor 0.9" in verdict.reason


def test_log_loss_is_better_when_lower():
    assert rule(metric="log_loss", candidate_value=0.30, champion_value=0.40).outcome == PROMOTED
    assert rule(metric="log_loss", candidate_value=0.40, champion_value=0.30).outcome == KEPT
    verdict = rule(metric="log_loss", candidate_value=0.30, champion_value=0.40, floor=0.2)
    assert verdict.outcome == KEPT and "above the ceiling" in verdict.reason


def test_a_refused_file_is_never_promoted():
    verdict = rule(candidate_value=None, candidate_error="sha256 does not match")
    assert verdict.outcome == REFUSED and "sha256 does not match" in verdict.reason


def test_a_broken_champion_keeps_everything_still():
    verdict = rule(champion_value=None, champion_error="holds untrusted types")
    assert verdict.outcome == KEPT and "--to-version" in verdict.reason


def test_the_champion_itself_is_unchanged():
    assert rule(champion_version="2").outcome == UNCHANGED


def test_promote_config_is_strict():
    with pytest.raises(ConfigError, match=r"config\.marginn: unknown key"):
        parse_promote_config({"marginn": 0.1})
    with pytest.raises(ConfigError, match=r"config\.margin"):
        parse_promote_config({"margin": -0.1})
    with pytest.raises(ConfigError, match=r"floor 1\.5 for roc_auc"):
        parse_promote_config({"floor": 1.5})
    assert parse_promote_config({"metric": "log_loss", "floor": 1.5}).floor == 1.5
    assert parse_promote_config({"to_version": 3}).action == "rollback"


def test_holdout_spec_rebuilds_the_same_holdout(tmp_path, monkeypatch):
    config = SweepConfig(
        data=DataConfig(synthetic_rows=400, synthetic_seed=5, sample_rows=300),
        test_size=0.25,
        seed=9,
        cv_folds=3,
    )
    rebuilt = parse_holdout_spec(holdout_spec(config))
    assert rebuilt.data == config.data
    assert (rebuilt.test_size, rebuilt.seed, rebuilt.cv_folds) == (0.25, 9, 3)

    def holdout(settings: SweepConfig):
        clean = prepare.validate(prepare.load_raw(settings.data), settings)
        return prepare.split(clean, settings, digest=frame_digest(clean)).test

    assert frame_digest(holdout(rebuilt)) == frame_digest(holdout(config))


def test_holdout_spec_records_an_absolute_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = holdout_spec(SweepConfig(data=DataConfig(path="data/train.csv")))
    assert str(parse_holdout_spec(spec).data.path) == str(tmp_path / "data" / "train.csv")


def test_an_unreadable_holdout_spec_is_one_clear_error():
    with pytest.raises(ConfigError, match="unreadable holdout spec"):
        parse_holdout_spec('{"spec": 99}')
    with pytest.raises(ConfigError, match="unreadable holdout spec"):
        parse_holdout_spec("not json")


def moved(time: str, before: str | None, after: str, action: str = "promote") -> Decision:
    return Decision(
        action=action,
        outcome="promoted" if action == "promote" else "rolled_back",
        model_name="m",
        candidate=after,
        champion_before=before,
        champion_after=after,
        metric="roc_auc",
        reason=f"reason for v{after}",
        time=time,
    )


def test_periods_follow_the_decisions():
    kept = moved("t2", "2", "2")
    kept.outcome, kept.candidate = KEPT, "3"
    decisions = [moved("t1", "1", "2"), kept, moved("t3", "2", "1", action="rollback")]
    periods = champion_periods(decisions, current="1", registered={"1": "t0", "2": "t0b", "3": "x"})
    assert [(p.version, p.start, p.end) for p in periods] == [
        ("1", "t0", "t1"),
        ("2", "t1", "t3"),
        ("1", "t3", None),
    ]
    assert "first registered version" in periods[0].reason
    assert periods[1].reason == "promote: reason for v2"
    assert periods[2].reason.startswith("rollback:")


def test_periods_without_decisions_and_with_an_outside_move():
    only = champion_periods([], current="1", registered={"1": "t0"})
    assert [(p.version, p.start, p.end) for p in only] == [("1", "t0", None)]
    outside = champion_periods([moved("t1", "1", "2")], current="3", registered={"1": "t0"})
    assert [(p.version, p.end) for p in outside] == [("1", "t1"), ("2", "?"), ("3", None)]
    assert "outside sweepflow" in outside[-1].reason
    assert champion_periods([], current=None, registered={}) == []


def test_decisions_round_trip_through_json():
    decision = moved("t1", "1", "2")
    decision.candidate_metrics = {"roc_auc": 0.9}
    decision.checks = {"2": "standalone skops file"}
    assert Decision.from_json(decision.to_json()) == decision
    assert Decision.from_json(decision.to_json()[:-1] + ',"from_the_future":1}') == decision
