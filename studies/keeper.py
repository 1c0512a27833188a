"""A sweep's hold on its study while trials run: heartbeats, budget and recovery."""

from __future__ import annotations

import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import optuna

from studies._optuna import storage_of, trial_id, uses_heartbeat
from studies.recovery import (
    Recovery,
    fail_stale_trials,
    owner_record,
    recover_dead_sweeps,
    trials_used,
    write_record,
)
from sweepflow import settings


def heartbeat_seconds() -> int:
    """Seconds between heartbeats of running trials (``SWEEPFLOW_HEARTBEAT_SECONDS``, 30)."""
    return settings.current().sweepflow_heartbeat_seconds


def grace_seconds() -> int:
    """Seconds without a heartbeat before a running trial is failed (``SWEEPFLOW_GRACE_SECONDS``,
    90): several heartbeats, so a busy process is not mistaken for a dead one."""
    return settings.current().sweepflow_grace_seconds


class SweepKeeper:
    """This sweep's hold on its study while trials run: heartbeats, budget and recovery.

    Optuna's own heartbeat thread lives in ``Study.optimize``, which ask/tell never calls, so a
    thread here records the heartbeat of every trial this sweep runs (on a database storage,
    through the storage's public ``record_heartbeat``), and refreshes this sweep's record on the
    study, so other sweeps can tell it is alive. :meth:`maintain`, which the trial loop calls
    every :attr:`check_seconds`, fails trials whose heartbeat went stale (Optuna's
    ``fail_stale_trials``) and takes over the budget of sweeps that died, growing :attr:`budget`.
    """

    def __init__(
        self, study: optuna.Study, sweep_id: str, budget: int, *, interval: int, grace: int
    ) -> None:
        self.study = study
        self.sweep_id = sweep_id
        self.check_seconds = float(interval)
        self._interval = interval
        self._grace = grace
        self._budget = budget
        self._lock = threading.Lock()
        self._tracked: dict[int, int] = {}  # trial number -> storage id
        self._noticed: dict[int, float] = {}
        self._pending: tuple[int, ...] = ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_check = time.monotonic()
        self._record = {"n_trials": budget, **owner_record()}
        self._write_record()

    @property
    def budget(self) -> int:
        """Trials this sweep runs: its own, plus what it took over from dead sweeps."""
        return self._budget

    @property
    def pending(self) -> int:
        """Running trials of dead sweeps whose failing (and retry) this sweep waits for."""
        return len(self._pending)

    @property
    def uses_heartbeat(self) -> bool:
        return uses_heartbeat(self.study)

    def _write_record(self) -> None:
        with self._lock:
            record = dict(self._record, heartbeat=time.time())
        write_record(self.study, self.sweep_id, record)

    def ask(self) -> optuna.Trial:
        """Ask a trial (a queued retry first) and start its heartbeat."""
        with warnings.catch_warnings():  # Optuna warns that heartbeats expect optimize()
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = self.study.ask()
        found = trial_id(self.study, trial.number)
        if self.uses_heartbeat:
            # Before the trial names its sweep, so every trial with an owner has a heartbeat.
            storage_of(self.study).record_heartbeat(found)
        with self._lock:
            self._tracked[trial.number] = found
        return trial

    def release(self, trial: optuna.Trial) -> None:
        """Stop the heartbeat of a trial that has been told."""
        with self._lock:
            self._tracked.pop(trial.number, None)

    def beat(self) -> None:
        """Record the heartbeat of every running trial of this sweep, and of the sweep."""
        with self._lock:
            tracked = list(self._tracked.values())
        if self.uses_heartbeat:
            storage = storage_of(self.study)
            for found in tracked:
                storage.record_heartbeat(found)
        self._write_record()

    def _beat_until_stopped(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.beat()
            except Exception as error:  # a database hiccup: the next beat tries again
                warnings.warn(f"heartbeat not recorded: {error}", RuntimeWarning, stacklevel=1)

    def __enter__(self) -> SweepKeeper:
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._beat_until_stopped, name=f"heartbeat-{self.sweep_id[:8]}", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self._interval + 5)

    @contextmanager
    def running(self) -> Iterator[SweepKeeper]:
        """Heartbeats while the block runs; at its end, however it ends, the sweep is marked
        finished (:meth:`finish`): nothing is owed from here on, even if the trials failed."""
        with self:
            try:
                yield self
            finally:
                self.finish()

    def due(self) -> bool:
        """True when :meth:`maintain` should run again."""
        return time.monotonic() - self._last_check >= self.check_seconds

    def seconds_to_check(self) -> float:
        """Seconds until :meth:`maintain` is due."""
        return max(0.0, self.check_seconds - (time.monotonic() - self._last_check))

    def _leave_to_heartbeat(self, trial: optuna.trial.FrozenTrial) -> bool:
        if not self.uses_heartbeat:
            return False
        # Trials with a heartbeat go stale within the grace period of their sweep's death; a
        # trial still running well after that had no heartbeat, and is failed here instead.
        now = time.monotonic()
        noticed = self._noticed.setdefault(trial.number, now)
        return now - noticed < self._grace + 2 * self._interval

    def maintain(self) -> Recovery:
        """Fail stale trials, recover dead sweeps and take over their budget."""
        self._last_check = time.monotonic()
        stale = fail_stale_trials(self.study)
        recovery = recover_dead_sweeps(
            self.study, self.sweep_id, leave_to_heartbeat=self._leave_to_heartbeat
        )
        self._pending = recovery.pending_trials
        if recovery.owed_trials:
            self._budget += recovery.owed_trials
            with self._lock:
                self._record["n_trials"] = self._budget
            self._write_record()
        return replace(recovery, stale_trials=stale)

    def finish(self) -> int:
        """Mark this sweep finished, asking for the trials it used: none are owed any more.

        Returns the number of trials this sweep used.
        """
        used = trials_used(self.study, self.sweep_id)
        with self._lock:
            self._record.update(n_trials=used, finished=True)
        self._write_record()
        return used
