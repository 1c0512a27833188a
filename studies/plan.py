"""Which study a sweep works on: its name and resume, the warm start of a new one, and what the
study holds (best trial, params as used, history across sweeps)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import optuna

from churnml.config import SearchSpace, SweepConfig
from churnml.search import make_pruner, make_sampler, space_for_rows, to_trial_values
from studies.attrs import ATTR_FLOW_RUN, ATTR_PARAMS, ATTR_SWEEP_RUN, ATTR_WARM_START
from studies.keeper import SweepKeeper, grace_seconds, heartbeat_seconds
from studies.recovery import Recovery, RetryLostTrialOnce, refuse_unsafe_sharing
from studies.storage import (
    describe_storage,
    journal_path,
    make_storage,
    storage_lock,
    storage_url,
)

#: A new study starts with this many of the best trials of the study the experiment's last sweep
#: used (the data or scoring setup changed since, so its trials do not carry over themselves).
WARM_START_FROM_PREVIOUS = 3


@dataclass(frozen=True)
class StudyPlan:
    """The study a sweep works on and why."""

    name: str
    storage: str
    trials_before: int
    note: str
    budget: int
    recovery: Recovery | None = None
    #: This sweep's hold on the study (heartbeats, budget, recovery) while its trials run.
    keeper: SweepKeeper | None = field(default=None, compare=False, repr=False)


def scoring_settings(config: SweepConfig) -> dict[str, Any]:
    """What, beside the data, makes two trials' scores comparable."""
    return {
        "target": config.data.target,
        "sample_rows": config.data.sample_rows,
        "cv_folds": config.cv_folds,
        "test_size": config.test_size,
        "seed": config.seed,
        "search_space": config.search_space.model_dump(mode="json"),
    }


def study_fingerprint(data_digest: str, settings: dict[str, Any]) -> str:
    """A short hash of what makes trial scores comparable: the data and the scoring setup."""
    text = json.dumps({"data": data_digest, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def study_name_for(config: SweepConfig, data_digest: str) -> str:
    """``<study or experiment name>-<fingerprint of data and scoring setup>``."""
    base = config.study_name or config.experiment_name
    return f"{base}-{study_fingerprint(data_digest, scoring_settings(config))}"


def open_study(
    *, name: str, storage: optuna.storages.BaseStorage, seed: int, pruner: str, n_folds: int
) -> optuna.Study:
    """Create the study, or load it when it exists, maximising CV ROC AUC."""
    return optuna.create_study(
        study_name=name,
        storage=storage,
        sampler=make_sampler(seed),
        pruner=make_pruner(pruner, n_folds),
        direction="maximize",
        load_if_exists=True,
    )


def open_sweep_study(
    config: SweepConfig,
    data_digest: str,
    *,
    sweep_id: str,
    previous_study: str | None,
    champion: tuple[str, dict[str, Any]] | None,
    n_rows: int | None = None,
) -> tuple[optuna.Study, StudyPlan]:
    """Open (or create) the sweep's study, recover crashed sweeps, warm-start a new study.

    Args:
        config: the sweep's settings.
        data_digest: digest of the validated data.
        sweep_id: this sweep's id (its MLflow parent run id).
        previous_study: the study the experiment's last sweep used, if any.
        champion: (version, params) of the registry's current champion, if any.
        n_rows: training rows, for the bounds a warm-start point must fit
            (:func:`churnml.search.space_for_rows`); None: leaf and split sizes above the
            configured bounds are accepted when the space follows the data size.
    """
    name = study_name_for(config, data_digest)
    interval, grace = heartbeat_seconds(), grace_seconds()
    # Two processes creating Optuna's tables in an empty database at once collide (CREATE TYPE
    # twice): the first creates them under the lock, the others then find them.
    with storage_lock("schema"):
        storage = make_storage(
            storage_url(),
            journal_path(),
            heartbeat_interval=interval,
            grace_period=grace,
            stale_trial_callback=RetryLostTrialOnce(),
        )
    existing = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    trials_before = existing.get(name, 0)
    # A resumed study must not replay the first sweep's random draws: offset the seed.
    study = open_study(
        name=name,
        storage=storage,
        seed=config.seed + trials_before,
        pruner=config.pruner,
        n_folds=config.cv_folds,
    )
    if trials_before:
        note = f"resumed study {name}: {trials_before} trials so far"
    elif previous_study and previous_study != name:
        note = f"new study {name}: the data or scoring setup changed since study {previous_study}"
    else:
        note = f"new study {name}"
    if not trials_before and champion is not None:
        version, params = champion
        study.enqueue_trial(
            to_trial_values(params, config.search_space),
            user_attrs={ATTR_WARM_START: f"champion v{version}"},
            skip_if_exists=True,
        )
        note += f", warm-started with the champion's params (v{version})"
    if not trials_before and previous_study and previous_study != name:
        points = best_points(storage, previous_study, config.search_space, n_rows=n_rows)
        for number, params in points:
            study.enqueue_trial(
                to_trial_values(params, config.search_space),
                user_attrs={ATTR_WARM_START: f"trial {number} of study {previous_study}"},
                skip_if_exists=True,
            )
        if points:
            note += f", and with the best {len(points)} trials of study {previous_study}"
    refuse_unsafe_sharing(study, sweep_id)
    keeper = SweepKeeper(study, sweep_id, config.n_trials, interval=interval, grace=grace)
    recovery = keeper.maintain()
    if recovery.describe():
        note += f"; {recovery.describe()}"
    return study, StudyPlan(
        name=name,
        storage=describe_storage(),
        trials_before=trials_before,
        note=note,
        budget=keeper.budget,
        recovery=recovery,
        keeper=keeper,
    )


def best_points(
    storage: optuna.storages.BaseStorage,
    study_name: str,
    space: SearchSpace,
    *,
    n_rows: int | None = None,
    count: int = WARM_START_FROM_PREVIOUS,
) -> list[tuple[int, dict[str, Any]]]:
    """The best ``count`` completed trials of a study (number, params as used) that fit
    ``space``; none when the study is not in this storage.
    """
    try:
        summaries = optuna.get_all_study_summaries(storage, include_best_trial=False)
        if study_name not in {s.study_name for s in summaries}:
            return []
        earlier = optuna.load_study(study_name=study_name, storage=storage)
    except (KeyError, ValueError):
        return []
    complete = earlier.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    ranked = sorted(
        (t for t in complete if ATTR_PARAMS in t.user_attrs), key=lambda t: -float(t.value)
    )
    fitting = [
        (t.number, used_params(t)) for t in ranked if fits_space(used_params(t), space, n_rows)
    ]
    return fitting[:count]


def fits_space(params: dict[str, Any], space: SearchSpace, n_rows: int | None) -> bool:
    """Whether the search could draw ``params`` (so that enqueueing them warns of nothing)."""
    bounds = space_for_rows(space, n_rows)
    follows = n_rows is None and space.follow_data_size
    for name in ("n_estimators", "min_samples_split", "min_samples_leaf"):
        value, low, high = params.get(name), getattr(bounds, name).low, getattr(bounds, name).high
        if name == "min_samples_split":
            low, high = max(2, low), max(2, high)
        if follows and name != "n_estimators":
            high = max(high, value or 0)  # the bound that follows the rows is not known here
        if not isinstance(value, int) or not low <= value <= high:
            return False
    depth = params.get("max_depth")
    if depth is None and not space.allow_unlimited_depth:
        return False
    if depth is not None and not space.max_depth.low <= depth <= space.max_depth.high:
        return False
    k = params.get("k")
    if not isinstance(k, int) or k < space.k_min or (space.k_max is not None and k > space.k_max):
        return False
    return all(
        params.get(name) in getattr(space, name)
        for name in ("max_features", "class_weight", "criterion", "max_samples")
    )


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best completed trial of the whole study (every sweep so far), if any."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    return max(complete, key=lambda t: t.value) if complete else None


def used_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The model params a trial ran with (as recorded when it was asked)."""
    return dict(trial.user_attrs[ATTR_PARAMS])


def history_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """One row per sweep of the study: its trials and best value, and the best so far."""
    sweeps: dict[str, list[optuna.trial.FrozenTrial]] = {}
    for trial in study.get_trials(deepcopy=False):
        sweeps.setdefault(trial.user_attrs.get(ATTR_SWEEP_RUN, "unknown"), []).append(trial)
    rows = []
    best_so_far = None
    total = 0
    for sweep_run, trials in sorted(sweeps.items(), key=lambda kv: kv[1][0].number):
        values = [t.value for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = max(values) if values else None
        if best is not None:
            best_so_far = best if best_so_far is None else max(best_so_far, best)
        total += len(trials)
        rows.append(
            {
                "sweep_run": sweep_run,
                "flow_run": trials[0].user_attrs.get(ATTR_FLOW_RUN, ""),
                "trials": f"{trials[0].number}-{trials[-1].number}",
                "complete": len(values),
                "best_in_sweep": round(best, 5) if best is not None else None,
                "best_so_far": round(best_so_far, 5) if best_so_far is not None else None,
                "trials_so_far": total,
            }
        )
    return rows
