"""Trials that run in another process (a Dask worker): a handle to rebuild their trial there."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import optuna

from churnml.config import SweepConfig
from churnml.search import make_pruner
from studies._optuna import trial_id
from studies.storage import journal_path, make_storage, storage_url


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
        trial_id=trial_id(trial.study, trial.number),
        number=trial.number,
        storage_url=storage_url(),
        journal_path=str(journal_path()),
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
