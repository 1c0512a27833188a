"""Batch scoring core: column checks, chunks, unseen categories, clear errors (no servers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnml.config import ConfigError
from churnml.data import validate_frame
from churnml.model import build_pipeline, fit_quietly
from churnml.schema import FEATURE_COLUMNS, DataValidationError
from churnml.scoring import (
    PROBABILITY_COLUMN,
    VERSION_COLUMN,
    parse_score_config,
    score_csv,
)
from churnml.synthetic import generate_bank_churn

PARAMS = {"k": 8, "n_estimators": 10, "max_depth": 6}


@pytest.fixture(scope="module")
def model():
    clean = validate_frame(generate_bank_churn(500, seed=2), source="test", cv_folds=3)
    return fit_quietly(build_pipeline(PARAMS, seed=0), clean.drop(columns="Exited"), clean.Exited)


@pytest.fixture
def rows() -> pd.DataFrame:
    frame = generate_bank_churn(230, seed=7).drop(columns="Exited")
    frame["Notes"] = "an extra column"
    frame.loc[3, "Geography"] = "Atlantis"
    return frame


class CountingModel:
    """Wraps a model and records how many rows each predict_proba call got."""

    def __init__(self, model) -> None:
        self.model = model
        self.calls: list[int] = []

    def predict_proba(self, features):
        self.calls.append(len(features))
        return self.model.predict_proba(features)

    def __getattr__(self, name):
        return getattr(self.model, name)


def test_scores_every_row_in_chunks(model, rows, tmp_path):
    source = tmp_path / "in.csv"
    rows.to_csv(source, index=False)
    counting = CountingModel(model)
    stats = score_csv(
        counting, source, tmp_path / "out" / "p.csv", model_version="7", chunk_rows=50
    )
    assert counting.calls == [50, 50, 50, 50, 30]  # never the whole file at once
    assert (stats.rows, stats.chunks, stats.largest_chunk) == (230, 5, 50)
    written = pd.read_csv(tmp_path / "out" / "p.csv")
    assert list(written.columns) == ["id", "CustomerId", PROBABILITY_COLUMN, VERSION_COLUMN]
    assert written[VERSION_COLUMN].eq(7).all()
    assert written["id"].tolist() == rows["id"].tolist()
    reread = pd.read_csv(source, dtype={"Geography": object, "Gender": object})
    expected = model.predict_proba(reread[list(FEATURE_COLUMNS)])[:, 1]
    np.testing.assert_allclose(written[PROBABILITY_COLUMN], expected)
    assert stats.unknown_categories == {"Geography": 1}
    assert 0.0 <= written.loc[3, PROBABILITY_COLUMN] <= 1.0  # Geography=Atlantis still scored
    assert not (tmp_path / "out" / "p.csv.partial").exists()


def test_a_missing_column_is_one_clear_error(model, rows, tmp_path):
    source = tmp_path / "in.csv"
    rows.drop(columns=["Age"]).rename(columns={"Gender": "gender"}).to_csv(source, index=False)
    with pytest.raises(DataValidationError) as caught:
        score_csv(model, source, tmp_path / "p.csv", model_version="1")
    message = str(caught.value)
    assert "\n" not in message
    assert "missing column(s) 'Age', 'Gender'" in message
    assert "'gender' for 'Gender'" in message
    assert not (tmp_path / "p.csv").exists()


def test_a_text_value_in_a_numeric_column_names_the_row(model, rows, tmp_path):
    source = tmp_path / "in.csv"
    frame = rows.astype({"Balance": object})
    frame.loc[120, "Balance"] = "lots"
    frame.to_csv(source, index=False)
    with pytest.raises(DataValidationError, match=r"'Balance' must be numeric but data row 121"):
        score_csv(model, source, tmp_path / "p.csv", model_version="1", chunk_rows=50)
    assert not (tmp_path / "p.csv").exists()
    assert not (tmp_path / "p.csv.partial").exists()


def test_missing_values_and_no_identifier_columns(model, tmp_path):
    frame = generate_bank_churn(20, seed=1)[list(FEATURE_COLUMNS)]
    frame.loc[0, ["Age", "Geography"]] = np.nan
    source = tmp_path / "in.csv"
    frame.to_csv(source, index=False)
    stats = score_csv(model, source, tmp_path / "p.csv", model_version="2")
    written = pd.read_csv(tmp_path / "p.csv")
    assert list(written.columns) == [PROBABILITY_COLUMN, VERSION_COLUMN]
    assert stats.rows == 20 and written[PROBABILITY_COLUMN].between(0, 1).all()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("", "the file is empty"),
        (",".join(FEATURE_COLUMNS) + "\n", "no data rows"),
    ],
)
def test_empty_inputs(model, tmp_path, content, fragment):
    source = tmp_path / "in.csv"
    source.write_text(content)
    with pytest.raises(DataValidationError, match=fragment):
        score_csv(model, source, tmp_path / "p.csv", model_version="1")


def test_score_config_is_strict(tmp_path):
    base = {"data": tmp_path / "a.csv", "out": tmp_path / "b.csv"}
    assert parse_score_config(base).selector == "@champion"
    assert parse_score_config({**base, "version": 3}).selector == "v3"
    with pytest.raises(ConfigError, match="not both"):
        parse_score_config({**base, "alias": "champion", "version": 3})
    with pytest.raises(ConfigError, match="must not be the input file"):
        parse_score_config({**base, "out": tmp_path / "a.csv"})
    with pytest.raises(ConfigError, match=r"config\.alias"):
        parse_score_config({**base, "alias": "../x"})
