"""The few places sweepflow needs more of Optuna than its public API gives, in one module.

Ask/tell runs trials outside ``Study.optimize``, so the heartbeat that ``optimize`` keeps must be
kept by us (``studies.keeper``), on the study's own storage. Optuna has no public accessor for a
study's storage: :func:`storage_of` is the one reach into a private attribute (no other module
touches one). Trial ids go through the storage's public API.
"""

from __future__ import annotations

import optuna
from optuna.storages import BaseStorage


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage ``study`` reads and writes (Optuna keeps it private)."""
    return study._storage


def uses_heartbeat(study: optuna.Study) -> bool:
    """True when the study's storage records heartbeats (database storages we opened so)."""
    storage = storage_of(study)
    # Duck-typed: Optuna's BaseHeartbeat is not public; storages without heartbeats lack these.
    interval = getattr(storage, "get_heartbeat_interval", None)
    return (
        callable(getattr(storage, "record_heartbeat", None))
        and callable(interval)
        and (interval() is not None)
    )


def trial_id(study: optuna.Study, number: int) -> int:
    """The storage's id of the study's trial ``number``."""
    storage = storage_of(study)
    study_id = storage.get_study_id_from_name(study.study_name)
    return storage.get_trial_id_from_study_id_trial_number(study_id, number)
