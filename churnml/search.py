"""The search space and the Optuna pieces that stay free of orchestration and tracking."""

from __future__ import annotations

import statistics
from typing import Any, Protocol

import optuna
import pandas as pd

from churnml.config import IntRange, SearchSpace
from churnml.evaluate import CVResult, ThreadsFor, cross_validate_auc, screen_fold_auc

#: With ``follow_data_size``, the upper bounds of ``min_samples_leaf`` and ``min_samples_split``
#: are at least (training rows) / this. On the 165k-row churn file (132k training rows, 88k per
#: CV fold) the best leaves held 64-128 rows, above the default bound of 32; this makes the
#: bound 264 there and leaves it at 32 below 16,000 rows.
ROWS_PER_LEAF_BOUND = 500

#: A trial first runs a cheap screening fit (see :func:`screening_rows`) when a CV fold trains
#: on at least this many rows; smaller data goes straight to the folds.
SCREEN_MIN_ROWS = 20_000
#: The screening fit uses this share of the first fold's training rows ...
SCREEN_SHARE = 1 / 8
#: ... but never fewer rows than this ...
SCREEN_LEAST_ROWS = 10_000
#: ... and at most this many trees.
SCREEN_MAX_TREES = 64


class TrialLike(Protocol):
    """What the search space needs from a trial (an ``optuna.Trial`` is one)."""

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def space_for_rows(space: SearchSpace, n_rows: int | None) -> SearchSpace:
    """The space a search on ``n_rows`` training rows uses: with ``follow_data_size``, the upper
    bounds of ``min_samples_leaf`` and ``min_samples_split`` are raised to
    ``n_rows // ROWS_PER_LEAF_BOUND`` when that is larger. Unchanged when ``n_rows`` is None.
    """
    if n_rows is None or not space.follow_data_size:
        return space
    high = n_rows // ROWS_PER_LEAF_BOUND
    update = {
        name: IntRange(low=bounds.low, high=high, log=bounds.log)
        for name in ("min_samples_leaf", "min_samples_split")
        if high > (bounds := getattr(space, name)).high
    }
    return space.model_copy(update=update) if update else space


def suggest_params(
    trial: TrialLike, space: SearchSpace, n_features: int, *, n_rows: int | None = None
) -> dict[str, Any]:
    """Draw one point of the search space; the returned dict holds the values actually used.

    ``max_depth`` is drawn from ``low .. high + 1`` where ``high + 1`` stands for no depth limit,
    so the space keeps one fixed shape (multivariate TPE models it jointly).

    Args:
        trial: the Optuna trial asking.
        space: bounds from the configuration.
        n_features: number of encoded features; ``k`` never exceeds it.
        n_rows: training rows (the holdout left out); with the space's ``follow_data_size``
            the leaf and split bounds follow it (:func:`space_for_rows`). None: bounds as given.
    """
    space = space_for_rows(space, n_rows)
    k_high = min(space.k_max or n_features, n_features)
    k_low = min(space.k_min, k_high)
    depth = space.max_depth
    depth_high = depth.high + 1 if space.allow_unlimited_depth else depth.high
    drawn_depth = trial.suggest_int("max_depth", depth.low, depth_high)
    return {
        "k": trial.suggest_int("k", k_low, k_high),
        "n_estimators": trial.suggest_int(
            "n_estimators",
            space.n_estimators.low,
            space.n_estimators.high,
            log=space.n_estimators.log,
        ),
        "max_depth": None if drawn_depth > depth.high else drawn_depth,
        "min_samples_split": trial.suggest_int(
            "min_samples_split",
            max(2, space.min_samples_split.low),
            max(2, space.min_samples_split.high),
            log=space.min_samples_split.log,
        ),
        "min_samples_leaf": trial.suggest_int(
            "min_samples_leaf",
            space.min_samples_leaf.low,
            space.min_samples_leaf.high,
            log=space.min_samples_leaf.log,
        ),
        "max_features": trial.suggest_categorical("max_features", list(space.max_features)),
        "class_weight": trial.suggest_categorical("class_weight", list(space.class_weight)),
        "criterion": trial.suggest_categorical("criterion", list(space.criterion)),
        "max_samples": trial.suggest_categorical("max_samples", list(space.max_samples)),
    }


def make_sampler(seed: int) -> optuna.samplers.BaseSampler:
    """Seeded multivariate TPE; constant_liar keeps parallel asks from piling on one point."""
    return optuna.samplers.TPESampler(
        seed=seed, multivariate=True, constant_liar=True, n_startup_trials=5
    )


class ScreeningPruner(optuna.pruners.BasePruner):
    """Stops a trial after its screening fit when that looks worse than most, then over folds
    as Optuna's median pruner does.

    Step 0 is asked about only after a screening fit (:func:`score_trial`): the trial stops when
    its screening AUC is below the median of every other trial's screening AUC (running, pruned
    or complete), once at least ``n_min_screens`` others have one. Screens are cheap, so this
    rule needs no completed trial to start, and the population it ranks against is every point
    the sampler proposed, not only the survivors. Later steps go to ``MedianPruner``: below the
    median of the completed trials' AUC at that step, once 3 trials have completed.
    """

    def __init__(self, n_min_screens: int = 2) -> None:
        self.n_min_screens = n_min_screens
        self.folds = optuna.pruners.MedianPruner(
            n_startup_trials=3, n_warmup_steps=0, interval_steps=1, n_min_trials=3
        )

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if trial.last_step != 0:
            return self.folds.prune(study, trial)
        others = [
            other.intermediate_values[0]
            for other in study.get_trials(deepcopy=False)
            if other.number != trial.number and 0 in other.intermediate_values
        ]
        if len(others) < self.n_min_screens:
            return False
        return trial.intermediate_values[0] < statistics.median(others)


def make_pruner(kind: str, n_folds: int) -> optuna.pruners.BasePruner:
    """The :class:`ScreeningPruner` over the steps :func:`score_trial` reports, or none.

    :func:`score_trial` decides at which steps to ask: after the screening fit (large data),
    then after every fold but the last; on data without screening not after the first fold
    either (only the median rule over folds applies there).
    """
    if kind == "none" or n_folds < 2:
        return optuna.pruners.NopPruner()
    return ScreeningPruner()


def screening_rows(n_rows: int, folds: int) -> int | None:
    """Rows of the screening fit for data of ``n_rows`` training rows, or None for no screening.

    A CV fold of large data trains on many rows, and most points a search tries are clearly
    worse than the best: a fit on an eighth of the first fold's training rows (at least
    :data:`SCREEN_LEAST_ROWS`) says so at a fraction of the cost, and the pruner stops them.
    """
    fold_rows = n_rows * (folds - 1) // folds
    if fold_rows < SCREEN_MIN_ROWS:
        return None
    return max(SCREEN_LEAST_ROWS, int(fold_rows * SCREEN_SHARE))


def score_trial(
    trial: optuna.Trial,
    params: dict[str, Any],
    features: pd.DataFrame,
    target: pd.Series,
    *,
    folds: int,
    seed: int,
    threads: ThreadsFor | None = None,
) -> CVResult:
    """Cross-validate one point, reporting each step's AUC so the pruner can stop it early.

    On large data (:func:`screening_rows`) the first step is a cheap screening fit on a sample
    of the first fold's rows (:func:`churnml.evaluate.screen_fold_auc`), reported as step 0 and
    the folds as steps 1.., and the pruner is asked after the screening fit and after every
    fold but the last. On smaller data the folds are steps 0.. and the pruner is asked after
    every fold but the first and the last. The trial's value is the mean over the folds only.
    ``threads``: the forest's threads per fold (:func:`churnml.evaluate.cross_validate_auc`).

    Raises:
        optuna.TrialPruned: the pruner stopped the trial; ``partial_scores`` holds the folds run
            (none when the screening fit stopped it).
    """
    scores: list[float] = []
    offset = 0
    rows = screening_rows(len(features), folds)
    if rows is not None:
        screen = screen_fold_auc(
            params,
            features,
            target,
            folds=folds,
            seed=seed,
            rows=rows,
            max_trees=SCREEN_MAX_TREES,
        )
        trial.report(screen, step=0)
        if trial.should_prune():
            pruned = optuna.TrialPruned(f"pruned after screening on {rows} rows (AUC {screen:.4f})")
            pruned.partial_scores = []  # type: ignore[attr-defined]
            raise pruned
        offset = 1

    def report(fold: int, score: float) -> None:
        scores.append(score)
        trial.report(score, step=fold + offset)
        if fold + 1 < folds and (offset or fold > 0) and trial.should_prune():
            pruned = optuna.TrialPruned(f"pruned after fold {fold} (AUC {score:.4f})")
            pruned.partial_scores = list(scores)  # type: ignore[attr-defined]
            raise pruned

    return cross_validate_auc(
        params, features, target, folds=folds, seed=seed, on_fold=report, threads=threads
    )


def to_trial_values(params: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """The raw Optuna values that make :func:`suggest_params` return ``params`` again.

    Used to enqueue a known point (the current champion's) as the first trial of a new study.
    """
    values = {name: params[name] for name in params if name != "max_depth"}
    depth = params.get("max_depth")
    values["max_depth"] = space.max_depth.high + 1 if depth is None else int(depth)
    return values


def params_on_bounds(
    params: dict[str, Any], space: SearchSpace, n_features: int, *, n_rows: int | None = None
) -> list[str]:
    """The params that sit on a bound of the space that could be widened, e.g.
    ``"min_samples_leaf=32 is the upper bound"``: a hint to widen the space.

    Bounds that cannot move are left out: ``k`` at every feature, ``min_samples_leaf`` at 1,
    ``min_samples_split`` at 2, and no depth limit. ``n_rows`` gives the bounds the search used
    when the space follows the data size (:func:`space_for_rows`).
    """
    space = space_for_rows(space, n_rows)
    k_high = min(space.k_max or n_features, n_features)
    split, leaf, depth = space.min_samples_split, space.min_samples_leaf, space.max_depth
    # name: low, high, whether the low bound could move down, whether the high could move up
    ranges = {
        "k": (min(space.k_min, k_high), k_high, space.k_min > 1, k_high < n_features),
        "n_estimators": (space.n_estimators.low, space.n_estimators.high, True, True),
        "min_samples_split": (max(2, split.low), max(2, split.high), split.low > 2, True),
        "min_samples_leaf": (leaf.low, leaf.high, leaf.low > 1, True),
        # With no depth limit allowed, the upper bound has "unlimited" above it.
        "max_depth": (depth.low, depth.high, depth.low > 1, not space.allow_unlimited_depth),
    }
    found = []
    for name, (low, high, low_moves, high_moves) in ranges.items():
        value = params.get(name)
        if value is None or low == high:
            continue
        if value <= low and low_moves:
            found.append(f"{name}={value} is the lower bound")
        elif value >= high and high_moves:
            found.append(f"{name}={value} is the upper bound")
    return found
