"""Which Optuna study a sweep continues, how a new one is warm-started, and its history.

A scheduled sweep resumes one study: its name carries a fingerprint of the data and of the
scoring setup, so trials stay comparable, and changed data starts a new study. Plain functions
(no Prefect): the flow wraps them in tasks.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import optuna
from filelock import FileLock

from churnml.config import ConfigError, SweepConfig
from churnml.search import (
    make_pruner,
    make_storage,
    open_study,
    study_fingerprint,
    to_trial_values,
)
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
    #: This sweep's hold on the study (heartbeats, budget, recovery) while its trials run.
    keeper: SweepKeeper | None = field(default=None, compare=False, repr=False)

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
    interval, grace = heartbeat_seconds(), grace_seconds()
    # Two processes creating Optuna's tables in an empty database at once collide (CREATE TYPE
    # twice): the first creates them under the lock, the others then find them.
    with storage_lock("schema"):
        storage = make_storage(
            storage_url(),
            mlruns_dir() / "optuna.journal",
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
        warm_start_version=warm_start,
        recovery=recovery,
        keeper=keeper,
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
#
# Two mechanisms find trials whose process died, and they share one way to fail and retry them:
#
# - Optuna's heartbeat (database storages only): every running trial's heartbeat is recorded by
#   the sweep that runs it (:class:`SweepKeeper`), and ``optuna.storages.fail_stale_trials``
#   fails a trial whose heartbeat is older than the grace period, then calls the storage's
#   callback, :class:`RetryLostTrialOnce`. It works per trial and across machines.
# - Sweep records (every storage): each sweep records its budget, host, pid and a heartbeat on
#   the study. A sweep whose process is gone (same host) or whose heartbeat is stale (another
#   host) is dead: its unfinished budget moves to a live sweep, and on a storage without
#   heartbeats (the journal file) its running trials are failed and retried at once.
#
# A trial moves from RUNNING to FAIL once (the storage refuses a second time), so whichever
# mechanism fails it first is the only one that retries it: no double retries. A trial failed
# either way is "lost": it did not use budget, so the study still ends with exactly its budget.

ATTR_SWEEP_PREFIX = "sweep:"
ATTR_REAPED = "reaped"
ATTR_RETRY_OF = "retry_of"
#: Why a trial failed, set by the sweep that tells Optuna so. A FAIL trial without it was failed
#: for its dead process (by the heartbeat or the reaper), not by its own error.
ATTR_FAIL_REASON = "fail_reason"
#: Optuna's own system attribute naming the trial a heartbeat retry repeats.
OPTUNA_FAILED_TRIAL = "failed_trial"
#: Sweep records of this format mark failed trials with ATTR_FAIL_REASON.
RECORD_FORMAT = 2

#: A sweep on another host counts as dead when its heartbeat is older than this.
STALE_AFTER_SECONDS = float(os.environ.get("SWEEPFLOW_STALE_SECONDS", "600"))

#: Attributes of one run of a trial rather than of its point: a retry starts without them.
_RUN_ATTRS = frozenset({ATTR_SWEEP_RUN, ATTR_FLOW_RUN, ATTR_REAPED, ATTR_FAIL_REASON})


def _env_seconds(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or int(raw) < 1:
        raise ConfigError(f"{name}={raw!r}: expected a whole number of seconds, 1 or more")
    return int(raw)


def heartbeat_seconds() -> int:
    """Seconds between heartbeats of running trials (``SWEEPFLOW_HEARTBEAT_SECONDS``, 30)."""
    return _env_seconds("SWEEPFLOW_HEARTBEAT_SECONDS", 30)


def grace_seconds() -> int:
    """Seconds without a heartbeat before a running trial is failed (``SWEEPFLOW_GRACE_SECONDS``,
    90): several heartbeats, so a busy process is not mistaken for a dead one."""
    return _env_seconds("SWEEPFLOW_GRACE_SECONDS", 90)


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
            key: value for key, value in trial.user_attrs.items() if key not in _RUN_ATTRS
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
    get = getattr(study._storage, "get_heartbeat_stale_trial_callback", None)
    callback = get() if get is not None else None
    return callback if isinstance(callback, RetryLostTrialOnce) else RetryLostTrialOnce()


def _uses_heartbeat(study: optuna.Study) -> bool:
    return optuna.storages._heartbeat.is_heartbeat_enabled(study._storage)


def fail_stale_trials(study: optuna.Study) -> tuple[int, ...]:
    """Fail the study's running trials whose heartbeat went stale; Optuna retries each once.

    With ask/tell Optuna never calls this itself (``Study.optimize`` does), so sweeps call it at
    start and between trials. Returns the numbers of the trials failed by this call.
    """
    if not _uses_heartbeat(study):
        return ()
    callback = _retry_callback(study)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    return tuple(sorted(callback.drain()))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - another user's live process
        return True
    # A killed process whose parent died too may linger as a zombie nobody reaps: it is dead.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rpartition(")")[2].split()[0] != "Z"


def _is_alive(record: dict[str, Any], now: float) -> bool:
    if record.get("adopted_by") or record.get("finished"):
        return False
    if record.get("host") == socket.gethostname():
        return _pid_alive(int(record["pid"]))
    return now - float(record.get("heartbeat", 0)) < STALE_AFTER_SECONDS


def _sweep_records(study: optuna.Study) -> dict[str, dict[str, Any]]:
    return {
        key.removeprefix(ATTR_SWEEP_PREFIX): value
        for key, value in study.user_attrs.items()
        if key.startswith(ATTR_SWEEP_PREFIX)
    }


def _owner() -> dict[str, Any]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "heartbeat": time.time(),
        "format": RECORD_FORMAT,
    }


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
    for other, record in _sweep_records(study).items():
        if other != sweep_id and record.get("pid") != os.getpid() and _is_alive(record, now):
            raise ConfigError(
                f"OPTUNA_STORAGE={mask_uri(url)}: sweep {other} (pid {record.get('pid')}) is "
                "writing to this SQLite study now, and SQLite is not safe for several writer "
                "processes; wait for it, or unset OPTUNA_STORAGE (journal file) or use PostgreSQL"
            )


def _lost(trial: optuna.trial.FrozenTrial, modern: set[str]) -> bool:
    """A trial failed because its process died, not by its own error: it used no budget.

    Reaped trials carry a mark. A trial failed by Optuna's heartbeat cannot (a finished trial
    takes no attributes), so it is told apart by what it lacks: sweeps since
    :data:`RECORD_FORMAT` 2 record why every trial they fail failed.
    """
    if trial.state != optuna.trial.TrialState.FAIL:
        return False
    if trial.user_attrs.get(ATTR_REAPED):
        return True
    owner = trial.user_attrs.get(ATTR_SWEEP_RUN)
    return ATTR_FAIL_REASON not in trial.user_attrs and (owner is None or owner in modern)


def _modern(records: dict[str, dict[str, Any]]) -> set[str]:
    return {sid for sid, record in records.items() if record.get("format", 1) >= RECORD_FORMAT}


def _consumed(trial: optuna.trial.FrozenTrial, modern: set[str]) -> bool:
    """A trial that used up budget: it ended, and not because its process died."""
    return trial.state.is_finished() and not _lost(trial, modern)


def _fail_lost_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
    """Mark a dead sweep's running trial reaped and fail it; False if it finished meanwhile."""
    storage = study._storage
    try:
        storage.set_trial_user_attr(trial._trial_id, ATTR_REAPED, True)
        storage.set_trial_state_values(trial._trial_id, optuna.trial.TrialState.FAIL)
    except optuna.exceptions.UpdateFinishedTrialError:
        return False  # failed by a heartbeat (or finished) first: that one retries it
    return True


def _lock_engine(url: str) -> Any:
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    return sqlalchemy.create_engine(url, poolclass=NullPool)


@contextmanager
def storage_lock(name: str) -> Iterator[None]:
    """Hold the lock ``name`` across every process using the study storage.

    PostgreSQL and MySQL give an advisory lock on the storage database itself; local files (the
    journal, SQLite) a lock file beside them. Other databases take no lock.
    """
    url = storage_url()
    if url is None:
        mlruns_dir().mkdir(parents=True, exist_ok=True)
        with FileLock(str(mlruns_dir() / f"optuna.journal.{name}.lock"), timeout=600):
            yield
        return
    import sqlalchemy

    parsed = sqlalchemy.engine.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        database = parsed.database or ""
        if not database or database == ":memory:":
            yield
            return
        with FileLock(f"{database}.{name}.lock", timeout=600):
            yield
        return
    key = int(hashlib.sha256(f"sweepflow:{name}".encode()).hexdigest()[:15], 16)
    statements = {
        "postgresql": ("SELECT pg_advisory_lock(:key)", "SELECT pg_advisory_unlock(:key)"),
        "mysql": ("SELECT GET_LOCK(:key, 600)", "SELECT RELEASE_LOCK(:key)"),
        "mariadb": ("SELECT GET_LOCK(:key, 600)", "SELECT RELEASE_LOCK(:key)"),
    }
    if backend not in statements:
        yield
        return
    lock, unlock = statements[backend]
    params = {"key": key if backend == "postgresql" else f"sweepflow-{key}"}
    engine = _lock_engine(url)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text(lock), params)
            connection.commit()
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text(unlock), params)
                connection.commit()
    finally:
        engine.dispose()


def recovery_lock(study_name: str) -> contextlib.AbstractContextManager[None]:
    """The study's recovery lock: two live sweeps never adopt one dead sweep's budget."""
    return storage_lock(f"recovery-{hashlib.sha256(study_name.encode()).hexdigest()[:16]}")


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
        sweeps = _sweep_records(study)
        modern = _modern(sweeps)
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
            if not _fail_lost_trial(study, trial):
                continue
            reaped.append(trial.number)
            if not is_retry(trial):
                retried.append(trial.number)
            callback(study, study._storage.get_trial(trial._trial_id))
        callback.drain()
        owed, dead = 0, []
        for sid in sorted(gone):
            record = sweeps[sid]
            if record.get("adopted_by") or record.get("finished"):
                continue
            consumed = sum(
                1
                for t in trials
                if t.user_attrs.get(ATTR_SWEEP_RUN) == sid and _consumed(t, modern)
            )
            owed += max(0, int(record.get("n_trials", 0)) - consumed)
            dead.append(sid)
            # Hand the rest of its budget over: it now asks only for what it finished.
            study.set_user_attr(
                ATTR_SWEEP_PREFIX + sid, {**record, "n_trials": consumed, "adopted_by": sweep_id}
            )
    return Recovery(
        dead_sweeps=tuple(dead),
        reaped_trials=tuple(reaped),
        retried_trials=tuple(retried),
        owed_trials=owed,
        pending_trials=tuple(pending),
    )


def study_budget(study: optuna.Study) -> tuple[int, int]:
    """(trials the study's sweeps asked for, trials that used budget so far)."""
    sweeps = _sweep_records(study)
    modern = _modern(sweeps)
    asked = sum(int(value.get("n_trials", 0)) for value in sweeps.values())
    return asked, sum(1 for t in study.get_trials(deepcopy=False) if _consumed(t, modern))


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


# --------------------------------------------------------------------------- trials elsewhere


@dataclass(frozen=True)
class TrialHandle:
    """What a trial task in another process needs to rebuild its ``optuna.Trial``.

    A trial object holds its study and storage, which belong to the process that asked it; a
    Dask worker gets this instead and reopens the study from the same storage.
    """

    study_name: str
    trial_id: int
    number: int
    #: Database URL of the study (None: the journal file below); never shown, it may hold a
    #: password.
    storage_url: str | None = field(repr=False)
    journal_path: str
    pruner: str
    cv_folds: int

    def open(self) -> optuna.Trial:
        """The live trial, on a study opened once per process, storage and pruner."""
        study = _open_remote_study(
            self.study_name, self.storage_url, self.journal_path, self.pruner, self.cv_folds
        )
        return optuna.trial.Trial(study, self.trial_id)


def handle_for(trial: optuna.Trial, config: SweepConfig) -> TrialHandle:
    """A :class:`TrialHandle` of ``trial``, asked in this process from the sweep's storage."""
    return TrialHandle(
        study_name=trial.study.study_name,
        trial_id=trial._trial_id,
        number=trial.number,
        storage_url=storage_url(),
        journal_path=str(mlruns_dir() / "optuna.journal"),
        pruner=config.pruner,
        cv_folds=config.cv_folds,
    )


_remote_lock = threading.Lock()
_remote_studies: dict[tuple[str, str | None, str, str, int], optuna.Study] = {}


def _open_remote_study(
    name: str, url: str | None, journal: str, pruner: str, folds: int
) -> optuna.Study:
    key = (name, url, journal, pruner, folds)
    with _remote_lock:
        if key not in _remote_studies:
            # No heartbeat here: the sweep that asked the trial records it. A random sampler,
            # because params were drawn when the trial was asked; nothing samples here.
            storage = make_storage(url, Path(journal), heartbeat_interval=None)
            _remote_studies[key] = optuna.load_study(
                study_name=name,
                storage=storage,
                sampler=optuna.samplers.RandomSampler(),
                pruner=make_pruner(pruner, folds),
            )
        return _remote_studies[key]


# --------------------------------------------------------------------------- the sweep's hold


class SweepKeeper:
    """This sweep's hold on its study while trials run: heartbeats, budget and recovery.

    With ask/tell Optuna's own heartbeat thread (it lives in ``Study.optimize``) never runs, so
    a thread here records the heartbeat of every trial this sweep runs (on a database storage),
    and refreshes this sweep's record on the study, so other sweeps can tell it is alive.
    :meth:`maintain`, which the trial loop calls every :attr:`check_seconds`, fails trials whose
    heartbeat went stale and takes over the budget of sweeps that died, growing :attr:`budget`.
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
        self._tracked: set[int] = set()
        self._noticed: dict[int, float] = {}
        self._pending: tuple[int, ...] = ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_check = time.monotonic()
        self._record = {"n_trials": budget, **_owner()}
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
        return _uses_heartbeat(self.study)

    def _write_record(self) -> None:
        with self._lock:
            record = dict(self._record, heartbeat=time.time())
        self.study.set_user_attr(ATTR_SWEEP_PREFIX + self.sweep_id, record)

    def ask(self) -> optuna.Trial:
        """Ask a trial (a queued retry first) and start its heartbeat."""
        with warnings.catch_warnings():  # Optuna warns that heartbeats expect optimize()
            warnings.filterwarnings("ignore", message="Heartbeat of storage")
            trial = self.study.ask()
        if self.uses_heartbeat:
            # Before the trial names its sweep, so every trial with an owner has a heartbeat.
            self.study._storage.record_heartbeat(trial._trial_id)
        with self._lock:
            self._tracked.add(trial._trial_id)
        return trial

    def release(self, trial: optuna.Trial) -> None:
        """Stop the heartbeat of a trial that has been told."""
        with self._lock:
            self._tracked.discard(trial._trial_id)

    def beat(self) -> None:
        """Record the heartbeat of every running trial of this sweep, and of the sweep."""
        with self._lock:
            tracked = list(self._tracked)
        if self.uses_heartbeat:
            for trial_id in tracked:
                self.study._storage.record_heartbeat(trial_id)
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
        noticed = self._noticed.setdefault(trial._trial_id, now)
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
        modern = _modern(_sweep_records(self.study))
        used = sum(
            1
            for t in self.study.get_trials(deepcopy=False)
            if t.user_attrs.get(ATTR_SWEEP_RUN) == self.sweep_id and _consumed(t, modern)
        )
        with self._lock:
            self._record.update(n_trials=used, finished=True)
        self._write_record()
        return used
