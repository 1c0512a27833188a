"""Bank-churn CSV rows and files made in a test, the real files' folder, and the one-line check
of an error message: what the data tests share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from churnml.schema import CATEGORICAL_COLUMNS, DEFAULT_TARGET, NUMERIC_COLUMNS

SHARED_DATA = Path(__file__).parents[2] / "shared" / "data"
S4E1_COLUMNS = [
    "id",
    "CustomerId",
    "Surname",
    "CreditScore",
    "Geography",
    "Gender",
    "Age",
    "Tenure",
    "Balance",
    "NumOfProducts",
    "HasCrCard",
    "IsActiveMember",
    "EstimatedSalary",
    "Exited",
]
HEADER = ",".join(S4E1_COLUMNS)
CLEAN_DTYPES = {
    **{name: np.dtype("float64") for name in NUMERIC_COLUMNS},
    **{name: np.dtype("object") for name in CATEGORICAL_COLUMNS},
    DEFAULT_TARGET: np.dtype("int64"),
}


def s4e1_row(i: int, exited: int | None = None) -> list[str]:
    """One valid S4E1 row as strings; the label alternates 0/1 unless given."""
    label = i % 2 if exited is None else exited
    return [
        str(i),
        str(15_600_000 + i),
        f"Name{i}",
        str(600 + i),
        ("France", "Spain", "Germany")[i % 3],
        ("Male", "Female")[i % 2],
        f"{30 + i}.0",
        str(i % 11),
        "0.0" if i % 2 else f"{100_000 + i}.5",
        str(1 + i % 2),
        "1.0",
        f"{i % 2}.0",
        f"{50_000 + i}.25",
        str(label),
    ]


def csv_text(rows: list[list[str]], header: str = HEADER) -> str:
    return "\n".join([header, *(",".join(row) for row in rows)]) + "\n"


def write(tmp_path: Path, text: str | bytes, name: str = "bank.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def tiny_csv(tmp_path: Path, n_rows: int = 12, name: str = "bank.csv") -> Path:
    return write(tmp_path, csv_text([s4e1_row(i) for i in range(n_rows)]), name)


def message(error: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(error.value)
    assert "\n" not in text, "error messages are one line"
    return text
