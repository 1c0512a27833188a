"""Which Optuna study a sweep continues, how a new one is warm-started, and its history.

A scheduled sweep resumes one study: its name carries a fingerprint of the data and of the
scoring setup, so trials stay comparable, and changed data starts a new study. Plain functions
(no Prefect): the flow wraps them in tasks.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass
from typing import Any

import optuna

from churnml.config import ConfigError, SweepConfig
from churnml.search import make_storage, open_study, study_fingerprint, to_trial_values
from tracking.store import mask_uri, mlruns_dir

#: Trial user attributes the sweep writes (the params as used, and which sweep ran the trial).
ATTR_PARAMS = "params"
ATTR_SWEEP_RUN = "sweep_run_id"
ATTR_FLOW_RUN = "flow_run_id"
ATTR_WARM_START = "warm_start_from"


@dataclass(frozen=True)
class StudyPlan:
    """The study a sweep works on and why."""

    name: str
    storage: str
    trials_before: int
    note: str
    budget: int
    warm_start_version: str | None = None
    recovery: Recovery | None = None

    @property
    def is_new(self) -> bool:
        return self.trials_before == 0


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


def study_name_for(config: SweepConfig, data_digest: str) -> str:
    """``<study or experiment name>-<fingerprint of data and scoring setup>``."""
    base = config.study_name or config.experiment_name
    return f"{base}-{study_fingerprint(data_digest, scoring_settings(config))}"


def storage_url() -> str | None:
    """``OPTUNA_STORAGE`` when set (a database URL); None means the local journal file."""
    return os.environ.get("OPTUNA_STORAGE", "").strip() or None


def describe_storage() -> str:
    url = storage_url()
    return mask_uri(url) if url else f"journal file {mlruns_dir() / 'optuna.journal'}"


def open_sweep_study(
    config: SweepConfig,
    data_digest: str,
    *,
    sweep_id: str,
    previous_study: str | None,
    champion: tuple[str, dict[str, Any]] | None,
) -> tuple[optuna.Study, StudyPlan]:
    """Open (or create) the sweep's study, recover crashed sweeps, warm-start a new study.

    Args:
        config: the sweep's settings.
        data_digest: digest of the validated data.
        sweep_id: this sweep's id (its MLflow parent run id).
        previous_study: the study the experiment's last sweep used, if any.
        champion: (version, params) of the registry's current champion, if any.
    """
    name = study_name_for(config, data_digest)
    storage = make_storage(storage_url(), mlruns_dir() / "optuna.journal")
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
    warm_start = None
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
        warm_start = version
        note += f", warm-started with the champion's params (v{version})"
    refuse_unsafe_sharing(study, sweep_id)
    recovery = recover_dead_sweeps(study, sweep_id)
    if recovery.dead_sweeps:
        note += f"; {recovery.describe()}"
    budget = config.n_trials + recovery.owed_trials
    register_sweep(study, sweep_id, budget)
    return study, StudyPlan(
        name=name,
        storage=describe_storage(),
        trials_before=trials_before,
        note=note,
        budget=budget,
        warm_start_version=warm_start,
        recovery=recovery,
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


# --------------------------------------------------------------------------- crash recovery

ATTR_SWEEP_PREFIX = "sweep:"
ATTR_REAPED = "reaped"
ATTR_RETRY_OF = "retry_of"

#: A sweep on another host counts as dead when its heartbeat is older than this.
STALE_AFTER_SECONDS = float(os.environ.get("SWEEPFLOW_STALE_SECONDS", "600"))


@dataclass(frozen=True)
class Recovery:
    """What a sweep found left behind by sweeps that died, and what it took over."""

    dead_sweeps: tuple[str, ...] = ()
    reaped_trials: tuple[int, ...] = ()
    retried_trials: tuple[int, ...] = ()
    owed_trials: int = 0

    def describe(self) -> str:
        if not self.dead_sweeps:
            return ""
        return (
            f"recovered {len(self.dead_sweeps)} crashed sweep(s): failed the trials they left "
            f"running ({', '.join(map(str, self.reaped_trials)) or 'none'}), retrying "
            f"{len(self.retried_trials)} of them, and took over {self.owed_trials} unfinished "
            "trials of their budget"
        )


def _owner() -> dict[str, Any]:
    return {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}


def register_sweep(study: optuna.Study, sweep_id: str, n_trials: int) -> None:
    """Record this sweep's trial budget and owner (host, pid, heartbeat) on the study."""
    study.set_user_attr(ATTR_SWEEP_PREFIX + sweep_id, {"n_trials": n_trials, **_owner()})


def heartbeat(study: optuna.Study, sweep_id: str) -> None:
    """Refresh this sweep's heartbeat (how other hosts tell it is alive)."""
    record = dict(study.user_attrs.get(ATTR_SWEEP_PREFIX + sweep_id, {}))
    if record:
        record["heartbeat"] = time.time()
        study.set_user_attr(ATTR_SWEEP_PREFIX + sweep_id, record)


def _is_alive(record: dict[str, Any], now: float) -> bool:
    if record.get("adopted_by"):
        return False
    if record.get("host") == socket.gethostname():
        try:
            os.kill(int(record["pid"]), 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # pragma: no cover - another user's live process
            return True
        return True
    return now - float(record.get("heartbeat", 0)) < STALE_AFTER_SECONDS


def refuse_unsafe_sharing(study: optuna.Study, sweep_id: str) -> None:
    """Refuse a second live writer process on a SQLite study: SQLite would lose its writes.

    The default journal file and PostgreSQL take several writers safely.

    Raises:
        ConfigError: another live sweep (another process) works on this SQLite study now.
    """
    url = storage_url() or ""
    if not url.startswith("sqlite"):
        return
    now = time.time()
    for key, record in study.user_attrs.items():
        other = key.removeprefix(ATTR_SWEEP_PREFIX)
        if (
            key.startswith(ATTR_SWEEP_PREFIX)
            and other != sweep_id
            and record.get("pid") != os.getpid()
            and _is_alive(record, now)
        ):
            raise ConfigError(
                f"OPTUNA_STORAGE={mask_uri(url)}: sweep {other} (pid {record.get('pid')}) is "
                "writing to this SQLite study now, and SQLite is not safe for several writer "
                "processes; wait for it, or unset OPTUNA_STORAGE (journal file) or use PostgreSQL"
            )


def _consumed(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial that used up budget: it ended, and was not failed by the reaper."""
    return trial.state.is_finished() and not trial.user_attrs.get(ATTR_REAPED)


def recover_dead_sweeps(study: optuna.Study, sweep_id: str) -> Recovery:
    """Fail the trials that crashed sweeps left RUNNING, retry each once, adopt their budget.

    A sweep is dead when its process is gone (same host) or its heartbeat is stale (another
    host). Its RUNNING trials become FAIL (marked ``reaped``) and are enqueued again once; the
    trials it still owed move to the current sweep, so the study ends with exactly the budget
    that its sweeps asked for.
    """
    now = time.time()
    sweeps = {
        key.removeprefix(ATTR_SWEEP_PREFIX): value
        for key, value in study.user_attrs.items()
        if key.startswith(ATTR_SWEEP_PREFIX)
    }
    dead = {sid for sid, record in sweeps.items() if sid != sweep_id and not _is_alive(record, now)}
    live_others = set(sweeps) - dead - {sweep_id}
    trials = study.get_trials(deepcopy=False)
    reaped, retried = [], []
    for trial in trials:
        owner = trial.user_attrs.get(ATTR_SWEEP_RUN)
        orphan = owner is None and not live_others
        if trial.state != optuna.trial.TrialState.RUNNING or not (owner in dead or orphan):
            continue
        study._storage.set_trial_user_attr(trial._trial_id, ATTR_REAPED, True)
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL, skip_if_finished=True)
        reaped.append(trial.number)
        if trial.user_attrs.get(ATTR_RETRY_OF) is None:
            study.enqueue_trial(trial.params, user_attrs={ATTR_RETRY_OF: trial.number})
            retried.append(trial.number)
    owed = 0
    for sid in sorted(dead):
        record = sweeps[sid]
        if record.get("adopted_by"):
            continue
        consumed = sum(
            1 for t in trials if t.user_attrs.get(ATTR_SWEEP_RUN) == sid and _consumed(t)
        )
        owed += max(0, int(record.get("n_trials", 0)) - consumed)
        # Hand the rest of its budget over: it now asks only for what it finished.
        study.set_user_attr(
            ATTR_SWEEP_PREFIX + sid, {**record, "n_trials": consumed, "adopted_by": sweep_id}
        )
    return Recovery(
        dead_sweeps=tuple(sorted(dead)),
        reaped_trials=tuple(reaped),
        retried_trials=tuple(retried),
        owed_trials=owed,
    )


def study_budget(study: optuna.Study) -> tuple[int, int]:
    """(trials the study's sweeps asked for, trials that used budget so far)."""
    asked = sum(
        int(value.get("n_trials", 0))
        for key, value in study.user_attrs.items()
        if key.startswith(ATTR_SWEEP_PREFIX)
    )
    return asked, sum(1 for t in study.get_trials(deepcopy=False) if _consumed(t))
