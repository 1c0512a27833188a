"""Tests for churnml.data: validation and the generator (reading files: test_reading.py;
splits and digests: test_splits.py)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import StratifiedKFold, cross_val_score

from churnml import data
from churnml.data import validate_frame
from churnml.digests import frame_digest
from churnml.reading import load_dataset, read_csv
from churnml.schema import (
    CATEGORICAL_COLUMNS,
    DEFAULT_TARGET,
    FEATURE_COLUMNS,
    ID_COLUMNS,
    NUMERIC_COLUMNS,
    DataValidationError,
)
from churnml.synthetic import generate_bank_churn
from tests.bank_rows import (
    CLEAN_DTYPES,
    HEADER,
    S4E1_COLUMNS,
    SHARED_DATA,
    csv_text,
    message,
    s4e1_row,
    tiny_csv,
    write,
)


@pytest.fixture
def raw(tmp_path: Path) -> pd.DataFrame:
    """A valid raw S4E1 frame of 12 rows (6 per class), as read from a CSV."""
    return read_csv(tiny_csv(tmp_path))


# ------------------------------------------------------------------------------------------
# The module stays pure
# ------------------------------------------------------------------------------------------


def test_module_imports_only_pandas_numpy_sklearn() -> None:
    tree = ast.parse(Path(data.__file__).read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert not roots & {"prefect", "mlflow", "optuna", "skops"}
    # The standard library, numpy/pandas/sklearn, and the pure churnml modules it is built on
    # (churnml.schema: the one cleaning; churnml.inputs: file formats), which obey this same
    # rule (tested in tests/test_schema.py and tests/test_inputs.py).
    own = {
        node.module if node.module != "churnml" else f"churnml.{alias.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("churnml")
        for alias in node.names
    }
    assert own <= {"churnml.schema", "churnml.inputs"}
    assert roots - set(sys.stdlib_module_names) - {"churnml"} <= {"numpy", "pandas", "sklearn"}


def test_feature_columns_order() -> None:
    assert FEATURE_COLUMNS == NUMERIC_COLUMNS + CATEGORICAL_COLUMNS
    assert not set(FEATURE_COLUMNS) & set(ID_COLUMNS)


def test_read_csv_returns_raw_frame(raw: pd.DataFrame) -> None:
    assert list(raw.columns) == S4E1_COLUMNS
    assert len(raw) == 12


# ------------------------------------------------------------------------------------------
# validate_frame
# ------------------------------------------------------------------------------------------


def test_validate_frame_clean_output(raw: pd.DataFrame) -> None:
    before = raw.copy()
    raw["Extra"] = 1
    clean = validate_frame(raw, source="tiny.csv")
    assert list(clean.columns) == [*FEATURE_COLUMNS, DEFAULT_TARGET]
    assert not set(clean.columns) & set(ID_COLUMNS)
    assert clean.dtypes.to_dict() == CLEAN_DTYPES
    assert isinstance(clean.index, pd.RangeIndex)
    assert all(isinstance(value, str) for value in clean["Geography"])
    assert set(clean[DEFAULT_TARGET]) == {0, 1}
    pd.testing.assert_frame_equal(raw.drop(columns="Extra"), before)  # input left alone


def test_validate_frame_keeps_isolated_missing_values(tmp_path: Path) -> None:
    rows = [s4e1_row(i) for i in range(12)]
    rows[2][8] = ""  # Balance
    rows[3][4] = ""  # Geography
    clean = load_dataset(write(tmp_path, csv_text(rows)))
    assert np.isnan(clean.loc[2, "Balance"])
    assert isinstance(clean.loc[3, "Geography"], float) and np.isnan(clean.loc[3, "Geography"])
    assert clean.dtypes.to_dict() == CLEAN_DTYPES


def test_validate_frame_missing_feature_columns(raw: pd.DataFrame) -> None:
    with pytest.raises(
        DataValidationError, match=r"tiny.csv: missing feature column\(s\) 'Age', 'Gender'"
    ):
        validate_frame(raw.drop(columns=["Gender", "Age"]), source="tiny.csv")


def test_validate_frame_hints_at_misspelled_column(raw: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match=r"found ' age' for 'Age'"):
        validate_frame(raw.rename(columns={"Age": " age"}), source="tiny.csv")


def test_validate_frame_missing_target(raw: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match="target column 'Churn' not found") as error:
        validate_frame(raw, source="tiny.csv", target="Churn")
    text = message(error)
    assert "tiny.csv" in text
    assert "Exited" in text  # lists the columns that exist
    assert "`target` option" in text


def test_validate_frame_target_is_a_feature(raw: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match="target 'Age' is one of the feature columns"):
        validate_frame(raw, source="tiny.csv", target="Age")


def test_validate_frame_target_with_empty_values(tmp_path: Path) -> None:
    rows = [s4e1_row(i) for i in range(12)]
    rows[2][-1] = ""
    rows[7][-1] = ""
    with pytest.raises(
        DataValidationError,
        match=r"bank.csv: target column 'Exited' is empty in 2 row\(s\), first at data row 3",
    ):
        load_dataset(write(tmp_path, csv_text(rows)))


def test_validate_frame_non_binary_target(raw: pd.DataFrame) -> None:
    raw[DEFAULT_TARGET] = raw[DEFAULT_TARGET].astype(object)
    raw.loc[[1, 2, 3, 4, 5, 6, 7], DEFAULT_TARGET] = [2, "yes", 3, 4, 5, 6, 7]
    with pytest.raises(
        DataValidationError,
        match=r"tiny.csv: target column 'Exited' must be binary 0/1 .* 2, 'yes', 3, 4, 5 and "
        r"2 more in 7 row\(s\), first at data row 2",
    ):
        validate_frame(raw, source="tiny.csv")


@pytest.mark.parametrize(
    "labels",
    [
        [False, True] * 6,
        [0.0, 1.0] * 6,
        ["0", "1"] * 6,
        pd.array([0, 1] * 6, dtype="Int64"),
    ],
    ids=["bool", "float", "text", "nullable-int"],
)
def test_validate_frame_accepts_binary_target_variants(raw: pd.DataFrame, labels) -> None:
    raw[DEFAULT_TARGET] = labels
    clean = validate_frame(raw, source="tiny.csv")
    assert clean[DEFAULT_TARGET].dtype == np.int64
    assert clean[DEFAULT_TARGET].tolist() == [0, 1] * 6


def test_validate_frame_single_class(raw: pd.DataFrame) -> None:
    raw[DEFAULT_TARGET] = 0
    with pytest.raises(
        DataValidationError,
        match=r"tiny\.csv: target column 'Exited' has a single class \(all 12 rows are 0\)",
    ):
        validate_frame(raw, source="tiny.csv")


def test_validate_frame_class_smaller_than_cv_folds(raw: pd.DataFrame) -> None:
    raw[DEFAULT_TARGET] = [1, 1] + [0] * 10
    with pytest.raises(
        DataValidationError,
        match=r"tiny.csv: target class 1 has only 2 row\(s\), fewer than cv_folds=5",
    ):
        validate_frame(raw, source="tiny.csv", cv_folds=5)
    assert len(validate_frame(raw, source="tiny.csv", cv_folds=2)) == 12


def test_validate_frame_fewer_rows_than_cv_folds(raw: pd.DataFrame) -> None:
    with pytest.raises(
        DataValidationError, match=r"tiny.csv: only 4 data row\(s\), fewer than cv_folds=5"
    ):
        validate_frame(raw.head(4), source="tiny.csv", cv_folds=5)


def test_validate_frame_no_rows(raw: pd.DataFrame) -> None:
    with pytest.raises(DataValidationError, match=r"tiny\.csv: no data rows"):
        validate_frame(raw.head(0), source="tiny.csv")


def test_validate_frame_rejects_cv_folds_below_two(raw: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="cv_folds must be at least 2"):
        validate_frame(raw, source="tiny.csv", cv_folds=1)


def test_validate_frame_text_in_numeric_column(tmp_path: Path) -> None:
    rows = [s4e1_row(i) for i in range(12)]
    rows[2][6] = "thirty"  # Age, data row 3, line 4
    rows[9][6] = "?"
    with pytest.raises(
        DataValidationError,
        match=r"bank.csv: column 'Age' must be numeric but data row 3 \(line 4\) has 'thirty' "
        r"\(2 bad values in all\)",
    ):
        load_dataset(write(tmp_path, csv_text(rows)))


def test_validate_frame_infinite_value(raw: pd.DataFrame) -> None:
    raw["Balance"] = raw["Balance"].astype(float)
    raw.loc[4, "Balance"] = np.inf
    with pytest.raises(DataValidationError, match=r"column 'Balance' must be numeric.* row 5"):
        validate_frame(raw, source="tiny.csv")


def test_validate_frame_all_empty_feature_column(tmp_path: Path) -> None:
    rows = [s4e1_row(i) for i in range(12)]
    for row in rows:
        row[8] = ""  # Balance
    with pytest.raises(DataValidationError, match=r"bank\.csv: column 'Balance' is empty"):
        load_dataset(write(tmp_path, csv_text(rows)))


def test_validate_frame_all_empty_categorical_column(raw: pd.DataFrame) -> None:
    raw["Gender"] = np.nan
    with pytest.raises(DataValidationError, match=r"tiny\.csv: column 'Gender' is empty"):
        validate_frame(raw, source="tiny.csv")


def test_validate_frame_repeated_column(raw: pd.DataFrame) -> None:
    doubled = pd.concat([raw, raw[["Age"]]], axis=1)
    with pytest.raises(DataValidationError, match="'Age' appear more than once"):
        validate_frame(doubled, source="tiny.csv")


def test_churn_modelling_variant_gives_same_dtypes(tmp_path: Path) -> None:
    header = HEADER.replace("id,", "RowNumber,", 1)
    rows = []
    for i in range(12):
        row = s4e1_row(i)
        row[0] = str(i + 1)
        row[6] = str(30 + i)  # Age, HasCrCard, IsActiveMember and Balance written as integers
        row[8] = "0" if i % 2 else row[8]
        row[10], row[11] = "1", str(i % 2)
        rows.append(row)
    int_variant = load_dataset(write(tmp_path, csv_text(rows, header=header), "int.csv"))
    s4e1 = load_dataset(tiny_csv(tmp_path))
    assert int_variant.dtypes.to_dict() == s4e1.dtypes.to_dict() == CLEAN_DTYPES
    pd.testing.assert_frame_equal(int_variant.drop(columns="Balance"), s4e1.drop(columns="Balance"))


# ------------------------------------------------------------------------------------------
# The generator
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def generated() -> pd.DataFrame:
    return generate_bank_churn(20_000, seed=3)


def test_generator_is_deterministic() -> None:
    first = generate_bank_churn(500, seed=11)
    pd.testing.assert_frame_equal(first, generate_bank_churn(500, seed=11))
    assert frame_digest(first) == frame_digest(generate_bank_churn(500, seed=11))
    assert frame_digest(first) != frame_digest(generate_bank_churn(500, seed=12))


def test_generator_schema_matches_real_file() -> None:
    frame = generate_bank_churn(300, seed=5)
    assert list(frame.columns) == S4E1_COLUMNS
    path = SHARED_DATA / "bank_churn_train.csv"
    if path.is_file():
        real = pd.read_csv(path, nrows=2_000)
        assert list(real.columns) == list(frame.columns)
        assert real.dtypes.to_dict() == frame.dtypes.to_dict()


def test_generator_marginals(generated: pd.DataFrame) -> None:
    frame = generated
    assert frame["id"].tolist() == list(range(len(frame)))
    assert frame["CreditScore"].between(350, 850).all()
    assert frame["Age"].between(18, 92).all()
    assert (frame["Age"] == frame["Age"].round()).all()
    assert 33 <= frame["Age"].median() <= 41
    assert set(frame["Tenure"]) <= set(range(11))
    assert set(frame["NumOfProducts"]) == {1, 2, 3, 4}
    assert set(frame["HasCrCard"]) == set(frame["IsActiveMember"]) == {0.0, 1.0}
    assert frame["Balance"].between(0, 250_898.09).all()
    assert 0.50 <= (frame["Balance"] == 0).mean() <= 0.58
    assert frame["EstimatedSalary"].between(11.58, 199_992.48).all()
    shares = frame["Geography"].value_counts(normalize=True)
    assert shares["France"] > shares["Spain"] > 0.15 and shares["Germany"] > 0.15
    assert 0.52 <= (frame["Gender"] == "Male").mean() <= 0.60
    assert not frame.isna().any().any()


@pytest.mark.parametrize("seed", [0, 1, 7, 2024])
def test_generator_churn_rate(seed: int) -> None:
    rate = generate_bank_churn(4_000, seed=seed)[DEFAULT_TARGET].mean()
    assert 0.18 <= rate <= 0.23


def test_generator_churn_drivers(generated: pd.DataFrame) -> None:
    churn = generated.groupby("Geography")[DEFAULT_TARGET].mean()
    assert churn["Germany"] > churn["France"] + 0.05
    churn = generated.groupby("IsActiveMember")[DEFAULT_TARGET].mean()
    assert churn[0.0] > churn[1.0] + 0.05
    products = generated["NumOfProducts"]
    churn_34 = generated.loc[products >= 3, DEFAULT_TARGET].mean()
    churn_2 = generated.loc[products == 2, DEFAULT_TARGET].mean()
    churn_1 = generated.loc[products == 1, DEFAULT_TARGET].mean()
    assert churn_34 > 0.6 > churn_1 > churn_2
    by_age = generated.groupby(pd.cut(generated["Age"], [17, 35, 45, 60, 92]), observed=True)
    churn = by_age[DEFAULT_TARGET].mean().to_numpy()
    assert churn[2] == churn.max() and churn[2] > churn[0] + 0.2


def test_generator_is_learnable_but_not_trivial() -> None:
    clean = validate_frame(generate_bank_churn(3_000, seed=9), source="generated")
    features = pd.get_dummies(clean[list(FEATURE_COLUMNS)], dtype=float)
    model = RandomForestClassifier(n_estimators=60, min_samples_leaf=5, random_state=0)
    cv = StratifiedKFold(n_splits=3, shuffle=True, random_state=0)
    auc = cross_val_score(model, features, clean[DEFAULT_TARGET], cv=cv, scoring="roc_auc")
    assert 0.78 <= auc.mean() <= 0.95


def test_generated_csv_round_trips(tmp_path: Path) -> None:
    frame = generate_bank_churn(1_000, seed=4)
    path = tmp_path / "generated.csv"
    frame.to_csv(path, index=False)
    loaded = load_dataset(path)
    pd.testing.assert_frame_equal(loaded, validate_frame(frame, source="generated"))
    assert loaded.dtypes.to_dict() == CLEAN_DTYPES


def test_generator_handles_full_size() -> None:
    frame = generate_bank_churn(165_034, seed=1)
    assert len(frame) == 165_034
    assert 0.18 <= frame[DEFAULT_TARGET].mean() <= 0.23


def test_generator_rejects_no_rows() -> None:
    with pytest.raises(ValueError, match="n_rows must be at least 1"):
        generate_bank_churn(0)
