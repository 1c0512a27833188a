"""One schema, one cleaning: training, holdout and scoring turn the same raw rows into the same
features, and a fitted model gives the same probabilities whichever path the rows took."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnml import schema
from churnml.data import validate_frame
from churnml.model import build_pipeline, fit_quietly
from churnml.reading import load_dataset
from churnml.schema import (
    CATEGORICAL_COLUMNS,
    FEATURE_COLUMNS,
    NUMERIC_COLUMNS,
    DataValidationError,
    to_features,
)
from churnml.scoring import PROBABILITY_COLUMN, features_from_chunk, score_csv
from churnml.synthetic import generate_bank_churn

PARAMS = {"k": 8, "n_estimators": 10, "max_depth": 6}


@pytest.fixture(scope="module")
def model():
    clean = validate_frame(generate_bank_churn(500, seed=2), source="test", cv_folds=3)
    return fit_quietly(build_pipeline(PARAMS, seed=0), clean.drop(columns="Exited"), clean.Exited)


def messy(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows as users hold them: stray spaces, ints, numbers as text, shuffled."""
    out = frame.copy()
    out["Geography"] = "  " + out["Geography"] + " "
    out["Gender"] = out["Gender"] + "\t"
    out["Age"] = out["Age"].round().astype("Int64")  # 33 instead of 33.0
    out["HasCrCard"] = out["HasCrCard"].astype("int64")
    out["Balance"] = out["Balance"].map(lambda v: f" {v} ")  # numbers as text with spaces
    return out[list(reversed(out.columns))]


def test_training_and_scoring_clean_the_same_rows_identically(model):
    tidy = generate_bank_churn(120, seed=4)
    tidy.loc[0, "Age"] = np.nan
    tidy.loc[1, "Geography"] = np.nan
    raw = messy(tidy)
    trained = validate_frame(raw, source="rows", cv_folds=2).drop(columns="Exited")
    scored = features_from_chunk(raw.drop(columns="Exited"), source="rows", first_row=0)
    without_ids = to_features(raw.drop(columns=["id", "CustomerId", "Surname"]), source="rows")
    tidy_features = validate_frame(tidy, source="rows", cv_folds=2).drop(columns="Exited")

    for frame in (scored, without_ids, tidy_features):
        pd.testing.assert_frame_equal(frame.reset_index(drop=True), trained)
    assert list(trained.columns) == list(FEATURE_COLUMNS)
    assert trained["Geography"].iloc[2] == tidy["Geography"].iloc[2]  # spaces stripped
    assert all(trained[name].dtype == np.float64 for name in NUMERIC_COLUMNS)
    assert all(trained[name].dtype == object for name in CATEGORICAL_COLUMNS)

    expected = model.predict_proba(tidy_features)[:, 1]
    for frame in (trained, scored, without_ids):
        np.testing.assert_array_equal(model.predict_proba(frame)[:, 1], expected)


def test_files_through_training_and_score_give_the_same_probabilities(model, tmp_path):
    tidy = generate_bank_churn(150, seed=6)
    source = tmp_path / "rows.csv"
    messy(tidy).to_csv(source, index=False)
    trained = load_dataset(source, cv_folds=2).drop(columns="Exited")
    stats = score_csv(model, source, tmp_path / "p.csv", model_version="1", chunk_rows=40)
    written = pd.read_csv(tmp_path / "p.csv")
    assert stats.rows == 150
    np.testing.assert_allclose(written[PROBABILITY_COLUMN], model.predict_proba(trained)[:, 1])
    pd.testing.assert_frame_equal(trained, schema.to_features(tidy, source="tidy"))


def test_blank_categories_are_missing_and_blank_numbers_are_nan():
    raw = generate_bank_churn(3, seed=1)
    raw = raw.astype({"Balance": object})
    raw.loc[0, "Geography"] = "   "
    raw.loc[1, "Balance"] = "  "
    features = to_features(raw, source="rows")
    assert pd.isna(features.loc[0, "Geography"])
    assert np.isnan(features.loc[1, "Balance"])


def test_errors_are_one_line_naming_column_value_and_row():
    raw = generate_bank_churn(10, seed=1).astype({"Tenure": object})
    raw.loc[4, "Tenure"] = "ten"
    with pytest.raises(DataValidationError) as caught:
        to_features(raw, source="f.parquet", first_row=100, line_offset=None, partial=True)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith("f.parquet: column 'Tenure' must be numeric but data row 105 has 'ten'")
    assert "line" not in text
    with pytest.raises(DataValidationError, match=r"missing feature column\(s\) 'Gender'"):
        to_features(raw.drop(columns="Gender"), source="f")
    doubled = pd.concat([raw, raw[["Age"]]], axis=1)
    with pytest.raises(DataValidationError, match="'Age' appear more than once"):
        to_features(doubled, source="f")


def test_target_cleaning_accepts_the_usual_spellings():
    values = pd.Series(["1", "0", " 1 ", "0.0"], dtype=object)
    assert schema.clean_target(values, source="f", target="y").tolist() == [1, 0, 1, 0]
    with pytest.raises(DataValidationError, match=r"'y' must be binary .* data row 2 \(line 3\)"):
        schema.clean_target(pd.Series([0, 2]), source="f", target="y")


def test_schema_imports_only_pandas_and_numpy():
    tree = ast.parse(Path(schema.__file__).read_text(encoding="utf-8"))
    roots = {
        name.split(".")[0]
        for node in ast.walk(tree)
        for name in (
            [alias.name for alias in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    }
    assert roots - set(sys.stdlib_module_names) <= {"numpy", "pandas"}
