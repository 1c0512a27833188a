"""The skops loader: our allowlist decides, and nothing of a refused file runs."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from churnml.data import validate_frame
from churnml.digests import file_sha256
from churnml.model import build_pipeline, fit_quietly
from churnml.synthetic import generate_bank_churn
from tracking.model_files import (
    TRUSTED_TYPES,
    ModelFileError,
    load_model_file,
    save_model_file,
)

PARAMS = {
    "k": 6,
    "n_estimators": 15,
    "max_depth": None,
    "min_samples_split": 2,
    "min_samples_leaf": 1,
    "max_features": "sqrt",
    "class_weight": "balanced",
    "criterion": "gini",
    "max_samples": 0.8,
}


@pytest.fixture(scope="module")
def fitted() -> tuple[Pipeline, pd.DataFrame]:
    clean = validate_frame(generate_bank_churn(600, seed=3), source="test", cv_folds=3)
    features = clean.drop(columns="Exited")
    return fit_quietly(build_pipeline(PARAMS, seed=0), features, clean["Exited"]), features


class Payload:
    """Pickling this runs a command: what a malicious "model" would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_round_trip_predicts_exactly_as_in_memory(fitted, tmp_path):
    model, features = fitted
    path = tmp_path / "model.skops"
    digest = save_model_file(model, path)
    assert digest == file_sha256(path)
    loaded = load_model_file(path, expected_sha256=digest)
    np.testing.assert_array_equal(loaded.predict_proba(features), model.predict_proba(features))


def test_our_pipeline_needs_only_allowlisted_types(fitted, tmp_path):
    model, _ = fitted
    path = tmp_path / "model.skops"
    save_model_file(model, path)
    assert set(sio.get_untrusted_types(file=path)) <= set(TRUSTED_TYPES)


def test_refuses_a_file_naming_a_dangerous_type(tmp_path):
    path = tmp_path / "crafted.skops"
    sio.dump(Pipeline([("run", FunctionTransformer(func=os.system))]), path)
    with pytest.raises(ModelFileError, match=r"posix\.system"):
        load_model_file(path)


def test_refuses_a_pickle_renamed_skops_without_running_it(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.skops"
    path.write_bytes(pickle.dumps(Payload(marker)))
    with pytest.raises(ModelFileError, match="not a skops file"):
        load_model_file(path)
    assert not marker.exists()


def test_refuses_a_file_whose_sha256_differs(fitted, tmp_path):
    path = tmp_path / "model.skops"
    save_model_file(fitted[0], path)
    with pytest.raises(ModelFileError, match="does not match the recorded"):
        load_model_file(path, expected_sha256="0" * 64)


def test_refuses_an_oversized_file(fitted, tmp_path):
    path = tmp_path / "model.skops"
    save_model_file(fitted[0], path)
    with pytest.raises(ModelFileError, match="byte limit"):
        load_model_file(path, max_bytes=1024)


def test_refuses_a_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such model file"):
        load_model_file(tmp_path / "absent.skops")
