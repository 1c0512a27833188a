"""The Optuna study of a sweep: storage, naming and resume, warm start, heartbeats, recovery.

No Prefect and no MLflow here: the flows call these functions, and only this package touches
Optuna's storage. The public API, by module:

- ``plan``: :func:`open_sweep_study` (the study a sweep works on, and its :class:`StudyPlan`),
  :func:`study_name_for`, :func:`best_trial`, :func:`used_params`, :func:`history_rows`;
- ``keeper``: :class:`SweepKeeper`, a sweep's hold on its study while trials run;
- ``recovery``: what happens to trials whose process died (:func:`tell_trial`,
  :func:`fail_stale_trials`, :func:`recover_dead_sweeps`, :class:`Recovery`);
- ``remote``: :class:`TrialHandle`, a trial rebuilt in another process (Dask);
- ``storage``: where studies live (``OPTUNA_STORAGE`` or the journal file), and locks;
- ``attrs``: the attribute keys written on studies and trials.
"""

from studies.attrs import (
    ATTR_FAIL_REASON,
    ATTR_FLOW_RUN,
    ATTR_PARAMS,
    ATTR_REAPED,
    ATTR_RETRY_OF,
    ATTR_SWEEP_PREFIX,
    ATTR_SWEEP_RUN,
    ATTR_WARM_START,
    OPTUNA_FAILED_TRIAL,
)
from studies.keeper import SweepKeeper, grace_seconds, heartbeat_seconds
from studies.plan import (
    StudyPlan,
    best_trial,
    history_rows,
    open_sweep_study,
    study_name_for,
    used_params,
)
from studies.recovery import (
    Recovery,
    RetryLostTrialOnce,
    fail_stale_trials,
    is_retry,
    recover_dead_sweeps,
    refuse_unsafe_sharing,
    tell_trial,
)
from studies.remote import TrialHandle, handle_for
from studies.storage import describe_storage, make_storage, storage_lock, storage_url

__all__ = [
    "ATTR_FAIL_REASON",
    "ATTR_FLOW_RUN",
    "ATTR_PARAMS",
    "ATTR_REAPED",
    "ATTR_RETRY_OF",
    "ATTR_SWEEP_PREFIX",
    "ATTR_SWEEP_RUN",
    "ATTR_WARM_START",
    "OPTUNA_FAILED_TRIAL",
    "Recovery",
    "RetryLostTrialOnce",
    "StudyPlan",
    "SweepKeeper",
    "TrialHandle",
    "best_trial",
    "describe_storage",
    "fail_stale_trials",
    "grace_seconds",
    "handle_for",
    "heartbeat_seconds",
    "history_rows",
    "is_retry",
    "make_storage",
    "open_sweep_study",
    "recover_dead_sweeps",
    "refuse_unsafe_sharing",
    "storage_lock",
    "storage_url",
    "study_name_for",
    "tell_trial",
    "used_params",
]
