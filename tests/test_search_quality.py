"""The search's time-to-quality pieces: bounds that follow the data size, the screening fit and
its pruner, params on a bound, and the warm start from an earlier study's best trials."""

from __future__ import annotations

import optuna
import pandas as pd
import pytest

from churnml import search
from churnml.config import IntRange, SearchSpace
from churnml.data import validate_frame
from churnml.evaluate import cross_validate_auc, screen_fold_auc
from churnml.search import (
    ScreeningPruner,
    make_pruner,
    params_on_bounds,
    score_trial,
    screening_rows,
    space_for_rows,
    suggest_params,
)
from churnml.synthetic import generate_bank_churn
from studies.attrs import ATTR_PARAMS
from studies.plan import best_points, fits_space

PARAMS = {
    "k": 8,
    "n_estimators": 60,
    "max_depth": 6,
    "min_samples_split": 4,
    "min_samples_leaf": 2,
    "max_features": "sqrt",
    "class_weight": None,
    "criterion": "gini",
    "max_samples": None,
}


@pytest.fixture(scope="module")
def clean() -> pd.DataFrame:
    return validate_frame(generate_bank_churn(1200, seed=3), source="test", cv_folds=3)


def features_target(clean: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    return clean.drop(columns="Exited"), clean["Exited"]


# --------------------------------------------------------------------------- bounds


def test_small_data_keeps_the_bounds_as_given():
    space = SearchSpace()
    assert space_for_rows(space, 2_000) == space
    assert space_for_rows(space, None) == space


def test_large_data_raises_the_leaf_and_split_bounds():
    space = space_for_rows(SearchSpace(), 132_027)
    assert space.min_samples_leaf == IntRange(low=1, high=264, log=True)
    assert space.min_samples_split == IntRange(low=2, high=264, log=True)
    assert space.n_estimators == SearchSpace().n_estimators


def test_bounds_stay_as_given_when_the_space_does_not_follow_the_data():
    space = SearchSpace(follow_data_size=False)
    assert space_for_rows(space, 1_000_000) == space


def test_a_bound_above_the_rows_rule_is_kept():
    space = SearchSpace(min_samples_leaf=IntRange(low=1, high=1000))
    assert space_for_rows(space, 132_027).min_samples_leaf.high == 1000


def test_suggested_leaf_sizes_follow_the_rows():
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    leaves = [
        suggest_params(study.ask(), SearchSpace(), 13, n_rows=200_000)["min_samples_leaf"]
        for _ in range(60)
    ]
    assert all(1 <= leaf <= 400 for leaf in leaves)
    assert max(leaves) > 32


# --------------------------------------------------------------------------- screening


def test_no_screening_below_the_threshold():
    assert screening_rows(2_500, 3) is None
    rows = screening_rows(132_027, 3)
    assert rows is not None and 10_000 <= rows < 132_027 * 2 // 3


def test_small_data_trial_reports_folds_only(clean):
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median", 3))
    trial = study.ask()
    features, target = features_target(clean)
    result = score_trial(trial, PARAMS, features, target, folds=3, seed=0)
    assert sorted(study.trials[-1].intermediate_values) == [0, 1, 2]
    plain = cross_validate_auc(PARAMS, features, target, folds=3, seed=0)
    assert result.mean_auc == pytest.approx(plain.mean_auc)


def test_screened_trial_reports_the_screen_first_and_scores_the_folds_only(clean, monkeypatch):
    monkeypatch.setattr(search, "SCREEN_MIN_ROWS", 100)
    monkeypatch.setattr(search, "SCREEN_LEAST_ROWS", 200)
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median", 3))
    features, target = features_target(clean)
    trial = study.ask()
    result = score_trial(trial, PARAMS, features, target, folds=3, seed=0)
    steps = study.trials[-1].intermediate_values
    assert sorted(steps) == [0, 1, 2, 3]
    assert [steps[i] for i in (1, 2, 3)] == pytest.approx(result.fold_scores)
    plain = cross_validate_auc(PARAMS, features, target, folds=3, seed=0)
    assert result.mean_auc == pytest.approx(plain.mean_auc)


def test_trial_stopped_by_its_screen_has_no_fold_scores(clean, monkeypatch):
    monkeypatch.setattr(search, "SCREEN_MIN_ROWS", 100)
    monkeypatch.setattr(search, "SCREEN_LEAST_ROWS", 200)
    study = optuna.create_study(
        direction="maximize", pruner=optuna.pruners.ThresholdPruner(lower=0.999)
    )
    features, target = features_target(clean)
    with pytest.raises(optuna.TrialPruned, match="screening") as pruned:
        score_trial(study.ask(), PARAMS, features, target, folds=3, seed=0)
    assert pruned.value.partial_scores == []


def test_screen_scores_the_first_validation_fold(clean):
    features, target = features_target(clean)
    score = screen_fold_auc(PARAMS, features, target, folds=3, seed=0, rows=300, max_trees=10)
    assert 0.5 < score <= 1.0


def test_screen_refuses_a_non_finite_auc(clean, monkeypatch):
    import churnml.evaluate as evaluate

    monkeypatch.setattr(evaluate, "roc_auc_score", lambda *_: float("nan"))
    features, target = features_target(clean)
    with pytest.raises(evaluate.TrialScoreError, match="screening"):
        screen_fold_auc(PARAMS, features, target, folds=3, seed=0, rows=300, max_trees=10)


def _trial_with(study: optuna.Study, steps: dict[int, float], *, complete: bool) -> None:
    trial = study.ask()
    for step, value in steps.items():
        trial.report(value, step)
    if complete:
        study.tell(trial, sum(steps.values()) / len(steps))
    else:
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)


def test_screening_pruner_ranks_against_every_screen_not_only_completed_trials():
    study = optuna.create_study(direction="maximize", pruner=ScreeningPruner(n_min_screens=2))
    _trial_with(study, {0: 0.80}, complete=False)
    _trial_with(study, {0: 0.90}, complete=False)
    low, high = study.ask(), study.ask()
    low.report(0.70, 0)
    high.report(0.95, 0)
    assert low.should_prune()
    assert not high.should_prune()


def test_screening_pruner_waits_for_enough_screens():
    study = optuna.create_study(direction="maximize", pruner=ScreeningPruner(n_min_screens=2))
    _trial_with(study, {0: 0.90}, complete=False)
    trial = study.ask()
    trial.report(0.10, 0)
    assert not trial.should_prune()


def test_screening_pruner_uses_the_median_rule_over_folds():
    study = optuna.create_study(direction="maximize", pruner=ScreeningPruner())
    for value in (0.85, 0.86, 0.87):
        _trial_with(study, {0: 0.8, 1: value, 2: value}, complete=True)
    better = study.ask()
    better.report(0.80, 0)
    better.report(0.90, 1)
    assert not better.should_prune()
    worse = study.ask()
    worse.report(0.70, 0)
    worse.report(0.70, 1)
    assert worse.should_prune()


# --------------------------------------------------------------------------- bounds hint


def test_params_on_a_movable_bound_are_named():
    params = dict(PARAMS, min_samples_leaf=32, n_estimators=50)
    found = params_on_bounds(params, SearchSpace(), 13)
    assert "min_samples_leaf=32 is the upper bound" in found
    assert "n_estimators=50 is the lower bound" in found


def test_bounds_that_cannot_move_are_not_named():
    params = dict(
        PARAMS, k=13, n_estimators=100, min_samples_leaf=1, min_samples_split=2, max_depth=None
    )
    assert params_on_bounds(params, SearchSpace(), 13) == []
    # with no depth limit allowed, the top depth has "unlimited" above it
    assert params_on_bounds(dict(params, max_depth=24), SearchSpace(), 13) == []


def test_bounds_hint_uses_the_bounds_that_followed_the_rows():
    params = dict(PARAMS, min_samples_leaf=32)
    assert params_on_bounds(params, SearchSpace(), 13, n_rows=132_027) == []
    at_top = dict(PARAMS, min_samples_leaf=264)
    assert params_on_bounds(at_top, SearchSpace(), 13, n_rows=132_027) == [
        "min_samples_leaf=264 is the upper bound"
    ]


# --------------------------------------------------------------------------- warm start


def _finished_study(storage: optuna.storages.BaseStorage, name: str) -> None:
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    for value, leaf in ((0.80, 2), (0.90, 60), (0.85, 3), (0.88, 4)):
        trial = study.ask()
        trial.set_user_attr(ATTR_PARAMS, dict(PARAMS, min_samples_leaf=leaf))
        study.tell(trial, value)


def test_best_points_of_an_earlier_study_best_first():
    storage = optuna.storages.InMemoryStorage()
    _finished_study(storage, "earlier")
    points = best_points(storage, "earlier", SearchSpace(), count=2)
    assert [number for number, _ in points] == [1, 3]
    assert points[0][1]["min_samples_leaf"] == 60  # above 32: the bound follows the rows


def test_best_points_skip_what_the_space_cannot_draw():
    storage = optuna.storages.InMemoryStorage()
    _finished_study(storage, "earlier")
    points = best_points(storage, "earlier", SearchSpace(follow_data_size=False), count=3)
    assert [number for number, _ in points] == [3, 2, 0]
    assert not fits_space(dict(PARAMS, criterion="log_loss"), SearchSpace(), None)


def test_best_points_of_a_missing_study_are_none():
    assert best_points(optuna.storages.InMemoryStorage(), "nowhere", SearchSpace()) == []
