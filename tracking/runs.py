"""Sweep (parent) and trial (child) runs, logged through ``MlflowClient`` with explicit run ids.

Parallel trials never touch MLflow's fluent "active run": each call names its run.
"""

from __future__ import annotations

import json
import math
import subprocess
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.data import from_pandas
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.entities import Dataset as DatasetEntity
from mlflow.entities import DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.utils.mlflow_tags import MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NOTE

from tracking.store import retry_insert_race
from tracking.tags import (
    TAG_DATA_DIGEST,
    TAG_ERROR,
    TAG_KIND,
    TAG_STUDY,
    TAG_TRIAL,
    TAG_TRIAL_STATE,
    param_value,
    tag_value,
)


def _now_ms() -> int:
    return int(time.time() * 1000)


def _params(values: Mapping[str, Any]) -> list[Param]:
    return [Param(key, param_value(value)) for key, value in values.items()]


def _tags(values: Mapping[str, Any]) -> list[RunTag]:
    return [RunTag(key, str(value)) for key, value in values.items() if value is not None]


def git_commit(folder: str | Path = ".") -> str | None:
    """The commit checked out in ``folder``, or None outside a git work tree."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None if result.returncode == 0 else None


def start_sweep_run(
    client: MlflowClient,
    experiment_id: str,
    *,
    run_name: str,
    params: Mapping[str, Any],
    tags: Mapping[str, Any],
) -> str:
    """Create the sweep's parent run and return its id."""
    run = client.create_run(
        experiment_id,
        run_name=run_name,
        tags={TAG_KIND: "sweep", **{k: str(v) for k, v in tags.items() if v is not None}},
    )
    commit = git_commit()
    extra_tags = {MLFLOW_GIT_COMMIT: commit} if commit else {}
    client.log_batch(run.info.run_id, params=_params(params), tags=_tags(extra_tags))
    return run.info.run_id


def log_training_data(
    client: MlflowClient,
    run_id: str,
    parts: pd.DataFrame | Sequence[pd.DataFrame],
    *,
    source: str | None,
    name: str,
    digest: str,
    target: str,
    generator: Mapping[str, Any] | None = None,
) -> None:
    """Record the data as an MLflow dataset input (source and digest) of the run.

    ``parts`` is the data, or its pieces with the same columns (the sweep's training and holdout
    rows): they are never concatenated, so no copy of the data is made for MLflow.
    """
    frames = [parts] if isinstance(parts, pd.DataFrame) else list(parts)
    dataset_source: Any = source
    if source is None:
        dataset_source = CodeDatasetSource(tags={k: str(v) for k, v in (generator or {}).items()})
    # MLflow infers the schema value by value in Python: ~5 s on 165k rows, before the first
    # trial of every sweep. A sample holding each column's missing values, if any, gives the same
    # schema; the profile (row and value counts) still covers every row of every part.
    sample = pd.concat([_schema_sample(frame) for frame in frames], ignore_index=True)
    with warnings.catch_warnings():
        # The integer target cannot hold NaN: true and harmless.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        # A local path matches MLflow's two registrations of its local-file source (schemes ""
        # and "file", the same class): it says so, and the choice is the same either way.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interp")
        dataset = from_pandas(
            sample, source=dataset_source, targets=target, name=name, digest=digest
        )
        entity = dataset._to_mlflow_entity()
    entity = DatasetEntity(
        name=entity.name,
        digest=entity.digest,
        source_type=entity.source_type,
        source=entity.source,
        schema=entity.schema,
        profile=json.dumps(
            {
                "num_rows": sum(len(frame) for frame in frames),
                "num_elements": sum(int(frame.size) for frame in frames),
            }
        ),
    )
    # Two sweeps of one experiment starting on the same data at once both insert its dataset
    # row on a SQL server store: the loser's retry finds the row and links the run to it.
    inputs = [DatasetInput(entity, tags=[InputTag("mlflow.data.context", "training")])]
    retry_insert_race(lambda: client.log_inputs(run_id, datasets=inputs))
    client.set_tag(run_id, TAG_DATA_DIGEST, digest)


def _schema_sample(frame: pd.DataFrame, rows: int = 1000) -> pd.DataFrame:
    """The first ``rows`` rows plus, per column with missing values, its first such row."""
    missing = frame.isna().to_numpy()
    extra = [int(missing[:, j].argmax()) for j in range(missing.shape[1]) if missing[:, j].any()]
    index = sorted(set(range(min(rows, len(frame)))) | set(extra))
    return frame.iloc[index]


def finish_sweep_run(
    client: MlflowClient,
    run_id: str,
    *,
    status: str,
    metrics: Mapping[str, float],
    params: Mapping[str, Any] = {},
    tags: Mapping[str, Any] = {},
    note: str | None = None,
) -> None:
    """Log the sweep's results and close the parent run with ``status`` (FINISHED/FAILED)."""
    timestamp = _now_ms()
    all_tags = dict(tags)
    if note:
        all_tags[MLFLOW_RUN_NOTE] = note
    client.log_batch(
        run_id,
        metrics=[
            Metric(key, float(value), timestamp, 0)
            for key, value in metrics.items()
            if value is not None and math.isfinite(float(value))
        ],
        params=_params(params),
        tags=_tags(all_tags),
    )
    client.set_terminated(run_id, status=status)


def trial_run_name(number: int) -> str:
    """Readable child run name, sorted correctly as text: ``trial-007``."""
    return f"trial-{number:03d}"


def find_trial_run(
    client: MlflowClient, experiment_id: str, *, study_name: str, number: int
) -> str | None:
    """The run already made for this study's trial ``number`` (e.g. before a retry), if any."""
    runs = client.search_runs(
        [experiment_id],
        filter_string=(f"tags.`{TAG_STUDY}` = '{study_name}' and tags.`{TAG_TRIAL}` = '{number}'"),
        max_results=1,
    )
    return runs[0].info.run_id if runs else None


def start_trial_run(
    client: MlflowClient,
    experiment_id: str,
    *,
    parent_run_id: str,
    study_name: str,
    number: int,
    params: Mapping[str, Any],
    tags: Mapping[str, Any],
    reuse_existing: bool = False,
) -> str:
    """Create the child run of one trial (or, on a retry, find the one already made)."""
    if reuse_existing:
        existing = find_trial_run(client, experiment_id, study_name=study_name, number=number)
        if existing is not None:
            client.update_run(existing, status="RUNNING")
            return existing
    run = client.create_run(
        experiment_id,
        run_name=trial_run_name(number),
        tags={
            MLFLOW_PARENT_RUN_ID: parent_run_id,
            TAG_KIND: "trial",
            TAG_STUDY: study_name,
            TAG_TRIAL: str(number),
            **{k: str(v) for k, v in tags.items() if v is not None},
        },
    )
    client.log_batch(run.info.run_id, params=_params(params))
    return run.info.run_id


def finish_trial_run(
    client: MlflowClient,
    run_id: str,
    *,
    state: str,
    fold_scores: Sequence[float],
    metrics: Mapping[str, float],
    error: str | None = None,
) -> None:
    """Log per-fold AUC as step metrics plus summary metrics, and close the child run.

    ``state`` is the Optuna outcome: COMPLETE -> FINISHED, PRUNED -> KILLED, FAIL -> FAILED.
    """
    timestamp = _now_ms()
    batch = [Metric("fold_auc", float(s), timestamp, step) for step, s in enumerate(fold_scores)]
    batch += [
        Metric(key, float(value), timestamp, 0)
        for key, value in metrics.items()
        if value is not None and math.isfinite(float(value))
    ]
    tags = {TAG_TRIAL_STATE: state}
    if error:
        tags[TAG_ERROR] = tag_value(error)
    client.log_batch(run_id, metrics=batch, tags=_tags(tags))
    status = {"COMPLETE": "FINISHED", "PRUNED": "KILLED"}.get(state, "FAILED")
    client.set_terminated(run_id, status=status)


def latest_sweep_study(client: MlflowClient, experiment_id: str) -> str | None:
    """The study name of the experiment's most recent sweep run, if there is one."""
    found = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`{TAG_KIND}` = 'sweep'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return found[0].data.tags.get(TAG_STUDY) if found else None


def mark_killed(
    client: MlflowClient, run_id: str, reason: str, *, even_if_finished: bool = False
) -> bool:
    """Close a run left RUNNING by a crashed process as KILLED; False if it was not open.

    ``even_if_finished`` also turns a closed run KILLED: a trial whose result came too late,
    after its heartbeat had gone stale and it had been failed and queued for a retry.
    """
    status = client.get_run(run_id).info.status
    if status == "KILLED" or (status != "RUNNING" and not even_if_finished):
        return False  # already closed as killed (say, noticed by an earlier recovery)
    client.set_tag(run_id, TAG_ERROR, tag_value(reason))
    client.set_terminated(run_id, status="KILLED")
    return True
