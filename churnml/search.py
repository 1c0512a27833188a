"""The search space and the Optuna pieces that stay free of orchestration and tracking."""

from __future__ import annotations

from typing import Any, Protocol

import optuna
import pandas as pd

from churnml.config import SearchSpace
from churnml.evaluate import CVResult, cross_validate_auc


class TrialLike(Protocol):
    """What the search space needs from a trial (an ``optuna.Trial`` is one)."""

    def suggest_int(self, name: str, low: int, high: int, *, log: bool = False) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def suggest_params(trial: TrialLike, space: SearchSpace, n_features: int) -> dict[str, Any]:
    """Draw one point of the search space; the returned dict holds the values actually used.

    ``max_depth`` is drawn from ``low .. high + 1`` where ``high + 1`` stands for no depth limit,
    so the space keeps one fixed shape (multivariate TPE models it jointly).

    Args:
        trial: the Optuna trial asking.
        space: bounds from the configuration.
        n_features: number of encoded features; ``k`` never exceeds it.
    """
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


def make_pruner(kind: str, n_folds: int) -> optuna.pruners.BasePruner:
    """A median pruner over per-fold AUC (the first fold always runs), or none."""
    if kind == "none":
        return optuna.pruners.NopPruner()
    return (
        optuna.pruners.MedianPruner(
            n_startup_trials=5, n_warmup_steps=1, interval_steps=1, n_min_trials=3
        )
        if n_folds > 1
        else optuna.pruners.NopPruner()
    )


def score_trial(
    trial: optuna.Trial,
    params: dict[str, Any],
    features: pd.DataFrame,
    target: pd.Series,
    *,
    folds: int,
    seed: int,
) -> CVResult:
    """Cross-validate one point, reporting each fold's AUC so the pruner can stop it early.

    Raises:
        optuna.TrialPruned: the pruner stopped the trial; ``partial_scores`` holds the folds run.
    """
    scores: list[float] = []

    def report(fold: int, score: float) -> None:
        scores.append(score)
        trial.report(score, step=fold)
        if fold + 1 < folds and trial.should_prune():
            pruned = optuna.TrialPruned(f"pruned after fold {fold} (AUC {score:.4f})")
            pruned.partial_scores = list(scores)  # type: ignore[attr-defined]
            raise pruned

    return cross_validate_auc(params, features, target, folds=folds, seed=seed, on_fold=report)


def to_trial_values(params: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    """The raw Optuna values that make :func:`suggest_params` return ``params`` again.

    Used to enqueue a known point (the current champion's) as the first trial of a new study.
    """
    values = {name: params[name] for name in params if name != "max_depth"}
    depth = params.get("max_depth")
    values["max_depth"] = space.max_depth.high + 1 if depth is None else int(depth)
    return values
