"""In-process handles that tasks share by reference instead of by value.

The training frame is registered once per process and tasks receive only its key, so a mapped
trial never copies, hashes or persists the frame (that cost ~190 ms a task on 165k rows).
Trials in other processes (Dask workers) get a :class:`DataRef` beside the key and rebuild the
data once per process from it. Progress listeners are the same idea the other way: code that
runs the flow in-process (the command line) hears about each finished trial without polling the
Prefect API.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from churnml import prepare
from churnml.config import SweepConfig
from churnml.digests import frame_digest
from churnml.prepare import PreparedData
from sweepflow import settings

_lock = threading.Lock()
_prepared: dict[str, PreparedData] = {}


def remember(key: str, prepared: PreparedData) -> str:
    """Keep ``prepared`` under ``key`` for tasks of this process; returns the key."""
    with _lock:
        _prepared[key] = prepared
    return key


def lookup(key: str) -> PreparedData | None:
    """The prepared data under ``key``, or None when this process has not seen it."""
    with _lock:
        return _prepared.get(key)


def forget(key: str) -> None:
    """Drop the data under ``key`` (end of a sweep)."""
    with _lock:
        _prepared.pop(key, None)


@contextmanager
def held(key: str) -> Iterator[str]:
    """Keep the data under ``key`` while the block runs, and drop it at the end."""
    try:
        yield key
    finally:
        forget(key)


# --------------------------------------------------------------------------- trial progress


@dataclass(frozen=True)
class TrialProgress:
    """How far a sweep's trials are: sent to progress listeners as each trial ends."""

    study_name: str
    done: int
    total: int
    #: Best CV ROC AUC of this sweep's completed trials so far, None before the first.
    best: float | None


#: Called with each :class:`TrialProgress`, on the thread that runs the flow.
ProgressListener = Callable[[TrialProgress], None]

_listeners: list[ProgressListener] = []


@contextmanager
def progress_listener(listener: ProgressListener) -> Iterator[ProgressListener]:
    """Send the progress of every sweep in this process to ``listener`` inside the block.

    This is how the command line draws its progress bar: the flow runs in-process, and the
    listener sees trial ends as the flow tells them to Optuna.
    """
    with _lock:
        _listeners.append(listener)
    try:
        yield listener
    finally:
        with _lock:
            _listeners.remove(listener)


def report_progress(progress: TrialProgress) -> None:
    """Tell every listener; an error in one is swallowed, so a display never stops a sweep."""
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(progress)
        except Exception:  # a progress display must not stop a sweep
            continue


# --------------------------------------------------------------------------- data by reference


class DataMismatchError(RuntimeError):
    """The data rebuilt in this process differs from the data the sweep validated."""


@dataclass(frozen=True)
class DataRef:
    """How another process (a Dask worker) rebuilds a sweep's prepared data: what to load
    (the data settings, a path made absolute) and the digest the sweep validated."""

    config: SweepConfig
    digest: str

    @property
    def key(self) -> str:
        """Same data and split settings, same key: sweeps on one worker share the entry."""
        settings = self.config.model_dump_json(
            include={"data", "cv_folds", "test_size", "seed", "search_space"}
        )
        return f"{self.digest}-{hashlib.sha256(settings.encode()).hexdigest()[:12]}"


def data_ref(config: SweepConfig, digest: str) -> DataRef:
    """A :class:`DataRef` of the sweep's data, its path made absolute for other processes."""
    if config.data.path is not None:
        absolute = Path(config.data.path).expanduser().resolve()
        config = config.model_copy(
            update={"data": config.data.model_copy(update={"path": absolute})}
        )
    return DataRef(config=config, digest=digest)


#: Rebuilt entries a worker keeps: enough for the sweeps that share it, bounded in memory.
MAX_REBUILT = 2
_rebuilt: list[str] = []
_building: dict[str, threading.Lock] = {}


def prepared(key: str, ref: DataRef | None) -> PreparedData:
    """The prepared data for a trial: this process's entry under ``key`` (the sweep's own
    process), else the one rebuilt from ``ref``, loading, validating and splitting once.

    Raises:
        DataMismatchError: the rows this process reads are not the rows the sweep validated
            (say, a different file at the same path on a worker machine).
        RuntimeError: neither the key nor a reference is there.
    """
    found = lookup(key) or (lookup(ref.key) if ref is not None else None)
    if found is not None:
        return found
    if ref is None:
        raise RuntimeError(f"prepared data {key} is not in this process and has no reference")
    with _lock:
        building = _building.setdefault(ref.key, threading.Lock())
    with building:  # the worker's other threads wait for this load instead of repeating it
        found = lookup(ref.key)
        if found is not None:
            return found
        clean = prepare.validate(
            prepare.load_raw(
                ref.config.data, max_bytes=settings.current().sweepflow_max_data_bytes
            ),
            ref.config,
        )
        digest = frame_digest(clean)
        if digest != ref.digest:
            raise DataMismatchError(
                f"{prepare.describe_source(ref.config.data)}: the rows read here (digest "
                f"{digest}) are not the rows the sweep validated (digest {ref.digest}); give "
                "every worker the same file"
            )
        data = prepare.split(clean, ref.config, digest=digest)
        remember(ref.key, data)
        with _lock:
            _rebuilt.append(ref.key)
            while len(_rebuilt) > MAX_REBUILT:
                _prepared.pop(_rebuilt.pop(0), None)
        return data
