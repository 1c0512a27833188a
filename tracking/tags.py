"""Every key sweepflow writes on MLflow runs, model versions and registered models, the aliases
it moves, and MLflow's limits on values: one home, so writing and finding agree."""

from __future__ import annotations

from typing import Any

# --------------------------------------------------------------------------- run tags
#: What a run is: ``sweep``, ``trial`` or ``promotion``.
TAG_KIND = "sweepflow.kind"
TAG_STUDY = "sweepflow.study_name"
TAG_STUDY_NOTE = "sweepflow.study_note"
TAG_TRIAL = "sweepflow.trial_number"
TAG_TRIAL_STATE = "sweepflow.trial_state"
TAG_DATA_DIGEST = "sweepflow.data_digest"
TAG_ERROR = "sweepflow.error"
#: Where a trial ran: host:pid, and the Dask worker's address on a Dask cluster.
TAG_WORKER = "sweepflow.worker"
#: What the sweep recovered from crashed sweeps.
TAG_RECOVERED = "sweepflow.recovered"
TAG_SKOPS_SHA256_RUN = "sweepflow.skops_sha256"
TAG_SKOPS_PATH_RUN = "sweepflow.skops_path"
TAG_MODEL_VERSION = "sweepflow.model_version"
#: Why the sweep stopped asking for trials (its budget, time, patience or target).
TAG_STOP_REASON = "sweepflow.stop_reason"
TAG_FLOW_RUN = "prefect.flow_run_id"
TAG_FLOW_RUN_URL = "prefect.flow_run_url"
TAG_TASK_RUN = "prefect.task_run_id"
#: A promotion run's decision.
TAG_OUTCOME = "sweepflow.outcome"
TAG_REASON = "sweepflow.reason"
TAG_MODEL = "sweepflow.model"
#: ``sweepflow.check.v<version>``: the file checks of a version, on a promotion run.
TAG_CHECK_PREFIX = "sweepflow.check.v"

# --------------------------------------------------------------------------- model versions
#: Written by the sweep (standalone file) and at registration (logged artifact).
TAG_SKOPS_PATH = "skops_path"
TAG_SKOPS_SHA256 = "skops_sha256"
TAG_ARTIFACT_SHA256 = "artifact_skops_sha256"
#: The params (JSON) the version was trained with.
TAG_PARAMS = "params_json"
TAG_SWEEP_RUN = "sweep_run_id"
TAG_VERSION_STUDY = "study_name"
TAG_BEST_TRIAL = "best_trial"
TAG_CV_AUC = "cv_auc"
TAG_HOLDOUT_ROC_AUC = "holdout_roc_auc"
TAG_VERSION_DATA_DIGEST = "data_digest"
TAG_VERSION_FLOW_RUN = "prefect_flow_run_id"
#: Model-version tags describing the last decision about the version.
VERSION_PREFIX = "promotion."

# --------------------------------------------------------------------------- registered models
#: Registered-model tags holding the audit history, one decision each.
HISTORY_PREFIX = "sweepflow.history."

#: Aliases sweepflow moves.
CHAMPION = "champion"
CHALLENGER = "challenger"

# --------------------------------------------------------------------------- MLflow's limits
#: Longest tag value we write (MLflow's limit is 8000 on most stores; 5000 is safe on all).
MAX_TAG_LENGTH = 5000
#: Longest param value we write (MLflow 3 accepts 6000).
MAX_PARAM_LENGTH = 6000


def tag_value(value: Any) -> str:
    """``value`` as a tag: text, cut to :data:`MAX_TAG_LENGTH`."""
    return str(value)[:MAX_TAG_LENGTH]


def tag_tail(value: Any) -> str:
    """The end of ``value`` as a tag: for logs that grow, the latest part is kept."""
    return str(value)[-MAX_TAG_LENGTH:]


def param_value(value: Any) -> str:
    """``value`` as a param: text, cut to :data:`MAX_PARAM_LENGTH`."""
    return str(value)[:MAX_PARAM_LENGTH]
