"""Stopping rules: a time budget, patience and a target, each counted per sweep."""

from __future__ import annotations

import pytest

from churnml.config import ConfigError, SweepConfig, parse_config
from churnml.stopping import Stopper, StoppingRules


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def rules(**overrides) -> StoppingRules:
    return StoppingRules(**{"n_trials": 100, **overrides})


def test_without_rules_only_the_trial_budget_stops():
    stopper = Stopper(rules())
    for value in (0.7, 0.6, 0.5, 0.4):
        stopper.record("COMPLETE", value, 1.0)
        assert stopper.may_launch()
    assert stopper.final_reason(4) == "trial budget: all 4 trials ran"


def test_no_trial_starts_that_the_time_budget_cannot_hold():
    clock = Clock()
    stopper = Stopper(rules(timeout=100), started=0.0, clock=clock)
    assert stopper.may_launch()  # nothing known yet: the first trials start
    clock.now = 30.0
    stopper.record("COMPLETE", 0.8, 30.0)
    assert stopper.may_launch()  # 70 s left, a trial takes 30 s
    clock.now = 75.0
    stopper.record("PRUNED", None, 30.0)
    assert not stopper.may_launch()  # 25 s left, a trial takes 30 s
    assert "time budget: 100 s" in stopper.reason and "about 30 s" in stopper.reason


def test_patience_counts_trials_without_a_gain_above_the_threshold():
    stopper = Stopper(rules(patience=3, min_improvement=0.01))
    stopper.record("COMPLETE", 0.80, 1)
    stopper.record("COMPLETE", 0.805, 1)  # +0.005: not enough
    stopper.record("PRUNED", None, 1)
    assert stopper.may_launch()
    stopper.record("COMPLETE", 0.79, 1)
    assert not stopper.may_launch()
    assert stopper.reason.startswith("no improvement: 3 trials in a row")


def test_an_improvement_resets_patience_and_failures_do_not_count():
    stopper = Stopper(rules(patience=2))
    stopper.record("COMPLETE", 0.80, 1)
    stopper.record("COMPLETE", 0.70, 1)
    stopper.record("FAIL", None, 1)
    stopper.record("COMPLETE", 0.81, 1)
    stopper.record("COMPLETE", 0.70, 1)
    assert stopper.may_launch()


def test_a_resumed_study_starts_its_patience_afresh_against_the_study_best():
    # The study's earlier sweeps reached 0.9: this sweep's trials must beat that.
    stopper = Stopper(rules(patience=2), best_before=0.90)
    stopper.record("COMPLETE", 0.85, 1)
    assert stopper.may_launch()  # one trial of its own, not the earlier sweeps' trials
    stopper.record("COMPLETE", 0.88, 1)
    assert not stopper.may_launch()
    assert "(0.9000)" in stopper.reason


def test_the_target_stops_the_sweep():
    stopper = Stopper(rules(target_value=0.85))
    stopper.record("COMPLETE", 0.84, 1)
    assert stopper.may_launch()
    stopper.record("COMPLETE", 0.86, 1)
    assert not stopper.may_launch()
    assert stopper.final_reason(2).startswith("target reached: a trial scored CV ROC AUC 0.8600")


def test_rules_come_from_the_config_and_are_validated():
    config = SweepConfig(timeout=600, patience=10, min_improvement=0.001, target_value=0.9)
    assert StoppingRules.of(config) == StoppingRules(20, 600, 10, 0.001, 0.9)
    for bad in ({"timeout": 0}, {"patience": 0}, {"min_improvement": -1}, {"target_value": 2}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            parse_config(bad)
