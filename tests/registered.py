"""Register small churn models the way a sweep does, for the serving and pyfunc tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient

from churnml.data import DEFAULT_TARGET, generate_bank_churn, validate_frame
from churnml.model import build_pipeline, fit_quietly
from tracking import registry, runs
from tracking.model_files import save_model_file
from tracking.store import ensure_experiment, resolve_target


def fit_small_model(raw: pd.DataFrame | None = None, *, seed: int = 0, trees: int = 8) -> Any:
    """A fitted pipeline on ``raw`` rows (default: 600 synthetic ones)."""
    raw = generate_bank_churn(600, seed=seed) if raw is None else raw
    clean = validate_frame(raw, source="test", cv_folds=2)
    features = clean.drop(columns=DEFAULT_TARGET)
    params = {"k": 8, "n_estimators": trees, "max_depth": 5}
    return fit_quietly(build_pipeline(params, seed=seed), features, clean[DEFAULT_TARGET])


def register(
    client: MlflowClient,
    name: str,
    model: Any,
    *,
    experiment: str = "serving-tests",
    standalone: Path | None = None,
    example: pd.DataFrame | None = None,
) -> registry.RegisteredVersion:
    """Log and register ``model`` under a fresh parent run, as the sweep's final steps do.

    With ``standalone``, also write the standalone skops file and tag the version with it.
    """
    experiment_id = ensure_experiment(client, experiment, resolve_target())
    run_id = runs.start_sweep_run(client, experiment_id, run_name="ad-hoc", params={}, tags={})
    if example is None:
        example = generate_bank_churn(5, seed=99).drop(columns=DEFAULT_TARGET)
    version = registry.register_best_model(
        client, run_id=run_id, model=model, model_name=name, input_example=example, tags={}
    )
    if standalone is not None:
        sha256 = save_model_file(model, standalone)
        registry.tag_version(
            client, name, version.version, {"skops_sha256": sha256, "skops_path": standalone}
        )
    return version
