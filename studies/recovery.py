"""Crash recovery: trials whose process died are failed, retried once, and their budget kept.

Two mechanisms find trials whose process died, and they share one way to fail and retry them:

- Optuna's heartbeat (database storages only): every running trial's heartbeat is recorded by
  the sweep that runs it (``studies.keeper``), and ``optuna.storages.fail_stale_trials`` fails a
  trial whose heartbeat is older than the grace period, then calls the storage's callback,
  :class:`RetryLostTrialOnce` (Optuna's ``RetryHeartbeatStaleTrialCallback``). It works per
  trial and across machines.
- Sweep records (every storage): each sweep records its budget, host, pid and a heartbeat on the
  study. A sweep whose process is gone (same host) or whose record is stale (another host) is
  dead: its unfinished budget moves to a live sweep, and on a storage without heartbeats (the
  journal file) its running trials are failed and retried at once.

A trial moves from RUNNING to FAIL once (the storage refuses a second time), so whichever
mechanism fails it first is the only one that retries it: no double retries. A trial failed
either way is "lost": it did not use budget, so the study still ends with exactly its budget.
"""

from __future__ import annotations

import copy
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import optuna
import psutil

from studies._optuna import storage_of, trial_id, uses_heartbeat
from studies.attrs import (
    ATTR_FAIL_REASON,
    ATTR_REAPED,
    ATTR_RETRY_OF,
    ATTR_SWEEP_PREFIX,
    ATTR_SWEEP_RUN,
    OPTUNA_FAILED_TRIAL,
    RUN_ATTRS,
)
from studies.storage import recovery_lock, storage_url
from sweepflow import settings
from sweepflow.settings import ConfigError, mask_uri


@dataclass(frozen=True)
class Recovery:
    """What a sweep found left behind by sweeps that died, and what it took over."""

    dead_sweeps: tuple[str, ...] = ()
    reaped_trials: tuple[int, ...] = ()
    retried_trials: tuple[int, ...] = ()
    owed_trials: int = 0
    #: Trials failed because their heartbeat went stale (Optuna retries them once).
    stale_trials: tuple[int, ...] = ()
    #: Running trials of dead sweeps left to the heartbeat to fail (within the grace period).
    pending_trials: tuple[int, ...] = ()

    @property
    def lost_trials(self) -> tuple[int, ...]:
        """Every trial this recovery failed, by heartbeat or by reaping."""
        return tuple(sorted({*self.reaped_trials, *self.stale_trials}))

    def describe(self) -> str:
        parts = []
        if self.dead_sweeps:
            parts.append(
                f"recovered {len(self.dead_sweeps)} crashed sweep(s): failed the trials they "
                f"left running ({', '.join(map(str, self.reaped_trials)) or 'none'}), retrying "
                f"{len(self.retried_trials)} of them, and took over {self.owed_trials} "
                "unfinished trials of their budget"
            )
        if self.stale_trials:
            parts.append(
                "failed trials whose heartbeat went stale "
                f"({', '.join(map(str, self.stale_trials))}); each is retried once"
            )
        if self.pending_trials:
            parts.append(
                f"waiting for the heartbeat of trials {', '.join(map(str, self.pending_trials))} "
                "of crashed sweeps to go stale"
            )
        return "; ".join(parts)


class RetryLostTrialOnce(optuna.storages.RetryHeartbeatStaleTrialCallback):
    """Retry a trial whose process died, once. Optuna's heartbeat callback, shared by our reaper.

    Optuna calls it for each trial ``fail_stale_trials`` failed; :func:`recover_dead_sweeps`
    calls it for each trial it failed itself. Either way the retry is one WAITING trial with the
    same params, marked ``retry_of`` (and Optuna's ``failed_trial``), which the next ``ask`` of
    any sweep on the study takes. A trial that is itself a retry is not retried again.
    """

    def __init__(self) -> None:
        with warnings.catch_warnings():  # experimental in Optuna 5, and the API we want
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(max_retry=1)
        self._lock = threading.Lock()
        self._failed: list[int] = []

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        with self._lock:
            self._failed.append(trial.number)
        if is_retry(trial):
            return
        retry = copy.deepcopy(trial)
        retry.user_attrs = {
            key: value for key, value in trial.user_attrs.items() if key not in RUN_ATTRS
        } | {ATTR_RETRY_OF: trial.number}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__call__(study, retry)

    def drain(self) -> list[int]:
        """Numbers of the trials failed through this callback since the last call."""
        with self._lock:
            failed, self._failed = self._failed, []
        return failed


def is_retry(trial: optuna.trial.FrozenTrial) -> bool:
    """True for a retry of a lost trial (ours, or one made by Optuna's heartbeat callback)."""
    return (
        trial.user_attrs.get(ATTR_RETRY_OF) is not None
        or trial.system_attrs.get(OPTUNA_FAILED_TRIAL) is not None
    )


def _retry_callback(study: optuna.Study) -> RetryLostTrialOnce:
    get = getattr(storage_of(study), "get_heartbeat_stale_trial_callback", None)
    callback = get() if get is not None else None
    return callback if isinstance(callback, RetryLostTrialOnce) else RetryLostTrialOnce()


def fail_stale_trials(study: optuna.Study) -> tuple[int, ...]:
    """Fail the study's running trials whose heartbeat went stale; Optuna retries each once.

    With ask/tell Optuna never calls this itself (``Study.optimize`` does), so sweeps call it at
    start and between trials. Returns the numbers of the trials failed by this call.
    """
    if not uses_heartbeat(study):
        return ()
    callback = _retry_callback(study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return tuple(sorted(callback.drain()))


# --------------------------------------------------------------------------- sweep records


def _pid_alive(pid: int) -> bool:
    """True while process ``pid`` runs; a zombie nobody reaps (its parent died too) is dead."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # pragma: no cover - another user's live process
        return True


def _is_alive(record: dict[str, Any], now: float) -> bool:
    if record.get("adopted_by") or record.get("finished"):
        return False
    if record.get("host") == socket.gethostname():
        return _pid_alive(int(record["pid"]))
    return now - float(record.get("heartbeat", 0)) < settings.current().sweepflow_stale_seconds


def sweep_records(study: optuna.Study) -> dict[str, dict[str, Any]]:
    """Each sweep's record on the study, by sweep id."""
    return {
        key.removeprefix(ATTR_SWEEP_PREFIX): value
        for key, value in study.user_attrs.items()
        if key.startswith(ATTR_SWEEP_PREFIX)
    }


def owner_record() -> dict[str, Any]:
    """This process's part of a sweep record: who runs it, and when it was last seen."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}


def write_record(study: optuna.Study, sweep_id: str, record: dict[str, Any]) -> None:
    study.set_user_attr(ATTR_SWEEP_PREFIX + sweep_id, record)


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
    for other, record in sweep_records(study).items():
        if other != sweep_id and record.get("pid") != os.getpid() and _is_alive(record, now):
            raise ConfigError(
                f"OPTUNA_STORAGE={mask_uri(url)}: sweep {other} (pid {record.get('pid')}) is "
                "writing to this SQLite study now, and SQLite is not safe for several writer "
                "processes; wait for it, or unset OPTUNA_STORAGE (journal file) or use PostgreSQL"
            )


def _lost(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial failed because its process died, not by its own error: it used no budget.

    Reaped trials carry a mark. A trial failed by Optuna's heartbeat cannot (a finished trial
    takes no attributes), so it is told apart by what it lacks: a sweep records why every trial
    it fails failed.
    """
    if trial.state != optuna.trial.TrialState.FAIL:
        return False
    return bool(trial.user_attrs.get(ATTR_REAPED)) or ATTR_FAIL_REASON not in trial.user_attrs


def consumed(trial: optuna.trial.FrozenTrial) -> bool:
    """A trial that used up budget: it ended, and not because its process died."""
    return trial.state.is_finished() and not _lost(trial)


def trials_used(study: optuna.Study, sweep_id: str) -> int:
    """Trials of sweep ``sweep_id`` that used budget."""
    return sum(
        1
        for t in study.get_trials(deepcopy=False)
        if t.user_attrs.get(ATTR_SWEEP_RUN) == sweep_id and consumed(t)
    )


def _fail_lost_trial(study: optuna.Study, number: int) -> optuna.trial.FrozenTrial | None:
    """Mark a dead sweep's running trial reaped and fail it: the failed trial, or None if it
    finished meanwhile."""
    storage, found = storage_of(study), trial_id(study, number)
    try:
        storage.set_trial_user_attr(found, ATTR_REAPED, True)
        storage.set_trial_state_values(found, optuna.trial.TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return None  # failed by a heartbeat (or finished) first: that one retries it
    return storage.get_trial(found)


def recover_dead_sweeps(
    study: optuna.Study,
    sweep_id: str,
    *,
    leave_to_heartbeat: Callable[[optuna.trial.FrozenTrial], bool] | None = None,
) -> Recovery:
    """Fail the trials that dead sweeps left RUNNING, retry each once, adopt their budget.

    A sweep is dead when its process is gone (same host) or its heartbeat is stale (another
    host). The trials it owed move to the current sweep, so the study ends with exactly the
    budget that its sweeps asked for. Its RUNNING trials become FAIL (marked ``reaped``) and are
    retried once, unless ``leave_to_heartbeat`` says the storage's heartbeat will fail them.

    Args:
        study: the shared study.
        sweep_id: the sweep recovering (never counted dead).
        leave_to_heartbeat: True for a dead sweep's running trial that the heartbeat should
            fail (and retry) itself; None fails every such trial now.
    """
    with recovery_lock(study.study_name):
        now = time.time()
        sweeps = sweep_records(study)
        gone = {
            sid for sid, record in sweeps.items() if sid != sweep_id and not _is_alive(record, now)
        }
        live_others = set(sweeps) - gone - {sweep_id}
        trials = study.get_trials(deepcopy=False)
        callback = _retry_callback(study)
        reaped, retried, pending = [], [], []
        for trial in trials:
            owner = trial.user_attrs.get(ATTR_SWEEP_RUN)
            orphan = owner is None and not live_others
            if trial.state != optuna.trial.TrialState.RUNNING or not (owner in gone or orphan):
                continue
            if owner is not None and leave_to_heartbeat is not None and leave_to_heartbeat(trial):
                pending.append(trial.number)
                continue
            failed = _fail_lost_trial(study, trial.number)
            if failed is None:
                continue
            reaped.append(trial.number)
            if not is_retry(trial):
                retried.append(trial.number)
            callback(study, failed)
        callback.drain()
        owed, dead = 0, []
        for sid in sorted(gone):
            record = sweeps[sid]
            if record.get("adopted_by") or record.get("finished"):
                continue
            used = sum(1 for t in trials if t.user_attrs.get(ATTR_SWEEP_RUN) == sid and consumed(t))
            owed += max(0, int(record.get("n_trials", 0)) - used)
            dead.append(sid)
            # Hand the rest of its budget over: it now asks only for what it finished.
            write_record(study, sid, {**record, "n_trials": used, "adopted_by": sweep_id})
    return Recovery(
        dead_sweeps=tuple(dead),
        reaped_trials=tuple(reaped),
        retried_trials=tuple(retried),
        owed_trials=owed,
        pending_trials=tuple(pending),
    )


def tell_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    *,
    value: float | None = None,
    state: optuna.trial.TrialState | None = None,
    fail_reason: str | None = None,
) -> bool:
    """Tell Optuna how a trial ended; False when it had been failed as lost meanwhile.

    A trial is lost when its heartbeat went stale while it ran (a stalled process, an
    unreachable database) and another sweep failed it; its retry is queued already, so the
    caller asks for one more trial instead of counting this one.

    Args:
        study: the study.
        trial: the trial that ended.
        value: its score when it completed.
        state: PRUNED or FAIL when it did not complete.
        fail_reason: why it failed (recorded, so the trial counts as one that used budget).
    """
    try:
        if fail_reason is not None:
            trial.set_user_attr(ATTR_FAIL_REASON, fail_reason[:1000])
        frozen = study.tell(trial, value, state=state, skip_if_finished=True)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False
    # This sweep records why each trial it fails failed: a FAIL without a reason was lost.
    if frozen.state != optuna.trial.TrialState.FAIL:
        return True
    return ATTR_FAIL_REASON in frozen.user_attrs and not frozen.user_attrs.get(ATTR_REAPED)
