"""The one schema of bank-churn rows, and the one cleaning of their values.

Training, the holdout, batch scoring, the MLflow pyfunc model and the serving service all turn
raw rows into the model's input here, so they cannot drift apart. A pure module: pandas and
numpy only (never Prefect or MLflow).

API:
    ``NUMERIC_COLUMNS``, ``CATEGORICAL_COLUMNS``, ``FEATURE_COLUMNS`` (numeric then categorical,
    the model's input order), ``ID_COLUMNS`` (identifiers a file may carry, never features),
    ``PASSTHROUGH_COLUMNS`` (identifiers copied to predictions), ``DEFAULT_TARGET``.

    ``DataValidationError``: bad input; ``str(err)`` is one line naming the source, the column
    and/or the value (and the row when known) and saying what to fix.

    ``check_feature_columns(columns, *, source, noun="feature column(s)") -> None``: raise unless
    every feature column is present (extra columns are fine; hints at case/space typos).

    ``to_features(raw, *, source, first_row=0, line_offset=1, partial=False) -> DataFrame``:
    raw rows as pandas reads any file (ints or floats, numbers as text, strings with stray
    spaces, identifier and label columns present or not, any column order) to the feature frame:
    ``FEATURE_COLUMNS`` in that order, numeric columns ``float64`` (NaN when missing), categorical
    columns ``object`` holding stripped ``str`` (NaN when missing or blank), same index as
    ``raw``. ``first_row`` is the number of data rows before ``raw`` (for chunks), so errors
    name the row in the whole file; ``line_offset`` turns a 1-based data row into a file line
    (1 for a CSV with one header line; None where lines mean nothing, e.g. Parquet or JSON).

    ``clean_target(values, *, source, target, first_row=0, line_offset=1) -> ndarray``: the
    label as int64 0/1 (0/1, 0.0/1.0, True/False, "1"), or one line naming the bad values.

Example (serving a JSON request)::

    features = to_features(pd.DataFrame(records), source="request body", line_offset=None)
    probabilities = model.predict_proba(features)[:, 1]
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

NUMERIC_COLUMNS = (
    "CreditScore",
    "Age",
    "Tenure",
    "Balance",
    "NumOfProducts",
    "HasCrCard",
    "IsActiveMember",
    "EstimatedSalary",
)
CATEGORICAL_COLUMNS = ("Geography", "Gender")
FEATURE_COLUMNS = NUMERIC_COLUMNS + CATEGORICAL_COLUMNS
ID_COLUMNS = ("id", "RowNumber", "CustomerId", "Surname")
PASSTHROUGH_COLUMNS = ("id", "RowNumber", "CustomerId")
DEFAULT_TARGET = "Exited"

#: Text columns that readers should read as strings whatever they look like.
TEXT_COLUMNS = ("Surname", *CATEGORICAL_COLUMNS)

_MAX_SHOWN = 5


class DataValidationError(ValueError):
    """Bad input data.

    ``str(err)`` is one line that names the file (or other source), the column and/or the value,
    and says what to fix.
    """


def check_feature_columns(
    columns: Iterable[object], *, source: str, noun: str = "feature column(s)"
) -> None:
    """Raise unless every feature column is present (extra columns are fine).

    Args:
        columns: The column names found.
        source: Where they come from, named in the error.
        noun: How the message names the missing columns.

    Raises:
        DataValidationError: One line naming the missing columns, with a hint when a column
            differs only in case or surrounding spaces.
    """
    present = [str(name) for name in columns]
    missing = [name for name in FEATURE_COLUMNS if name not in present]
    if missing:
        raise DataValidationError(
            f"{source}: missing {noun} {', '.join(map(repr, missing))}"
            f"{near_matches(missing, present)}; the data needs all of "
            f"{', '.join(FEATURE_COLUMNS)} (other columns are ignored)"
        )


def near_matches(wanted: Iterable[str], present: list[str]) -> str:
    """Hint at columns that differ only in case or surrounding spaces ('' when none)."""
    folded = {name.strip().casefold(): name for name in present}
    pairs = [
        f"{folded[name.casefold()]!r} for {name!r}" for name in wanted if name.casefold() in folded
    ]
    return f" (found {', '.join(pairs)}: fix the spelling)" if pairs else ""


def to_features(
    raw: pd.DataFrame,
    *,
    source: str,
    first_row: int = 0,
    line_offset: int | None = 1,
    partial: bool = False,
) -> pd.DataFrame:
    """Turn raw rows into the model's feature frame (see the module docstring).

    Args:
        raw: Raw rows; identifier, label and other extra columns are ignored.
        source: Where the rows come from (a file path, "request body"), named in errors.
        first_row: Data rows before ``raw`` in its source (for chunks).
        line_offset: Added to a 1-based data row to give its file line; None: no lines.
        partial: ``raw`` is one chunk of the source (errors then count bad values per chunk).

    Returns:
        ``FEATURE_COLUMNS`` in order: numeric ``float64``, categorical ``object`` (``str`` or
        NaN), indexed like ``raw``.

    Raises:
        DataValidationError: A feature column is missing or repeated, or a numeric column holds
            text or an infinite value.
    """
    check_feature_columns(raw.columns, source=source)
    repeated = sorted({str(c) for c in raw.columns if c in FEATURE_COLUMNS and _count(raw, c) > 1})
    if repeated:
        raise DataValidationError(
            f"{source}: column(s) {', '.join(map(repr, repeated))} appear more than once; "
            f"keep one of each"
        )
    where = _Where(source, first_row, line_offset, partial, len(raw))
    columns: dict[str, pd.Series] = {}
    for name in NUMERIC_COLUMNS:
        columns[name] = pd.Series(_numeric(raw[name], name, where), index=raw.index)
    for name in CATEGORICAL_COLUMNS:
        columns[name] = pd.Series(_categorical(raw[name]), index=raw.index, dtype=object)
    return pd.DataFrame(columns, index=raw.index)


def clean_target(
    values: pd.Series,
    *,
    source: str,
    target: str,
    first_row: int = 0,
    line_offset: int | None = 1,
) -> np.ndarray:
    """Return the label as an int64 0/1 array, or raise naming the bad values.

    Raises:
        DataValidationError: The label is empty in some rows or not binary.
    """
    where = _Where(source, first_row, line_offset, False, len(values))
    missing = values.isna().to_numpy()
    if values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
        missing = missing | values.astype(str).str.strip().eq("").to_numpy()
    if missing.any():
        raise DataValidationError(
            f"{source}: target column {target!r} is empty in {int(missing.sum()):,} row(s), "
            f"first at {where.row(int(np.argmax(missing)))}; fill in 0 or 1 or drop those rows"
        )
    if pd.api.types.is_bool_dtype(values.dtype):
        return values.to_numpy(dtype=np.int64)
    numbers = (
        values
        if pd.api.types.is_numeric_dtype(values.dtype)
        else pd.to_numeric(values, errors="coerce")
    )
    numbers = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    bad = ~np.isin(numbers, (0.0, 1.0))
    if bad.any():
        offending = pd.unique(values[bad])
        shown = ", ".join(short(value) for value in offending[:_MAX_SHOWN])
        more = f" and {len(offending) - _MAX_SHOWN} more" if len(offending) > _MAX_SHOWN else ""
        raise DataValidationError(
            f"{source}: target column {target!r} must be binary 0/1 (or True/False) but has "
            f"{shown}{more} in {int(bad.sum()):,} row(s), first at "
            f"{where.row(int(np.argmax(bad)))}; map the labels to 0/1"
        )
    return numbers.astype(np.int64)


def short(value: object, limit: int = 40) -> str:
    """A one-line, length-limited repr of a value for error messages."""
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def one_line(error: BaseException) -> str:
    """An error's text on one line (runs of whitespace, line breaks included, become a space)."""
    return " ".join(str(error).split())


class _Where:
    """Names rows in messages: data row (and file line) in the whole source."""

    def __init__(
        self, source: str, first_row: int, line_offset: int | None, partial: bool, rows: int
    ) -> None:
        self.source, self.first_row, self.line_offset = source, first_row, line_offset
        self.partial, self.rows = partial, rows

    def row(self, index: int) -> str:
        number = self.first_row + index + 1
        line = "" if self.line_offset is None else f" (line {number + self.line_offset})"
        return f"data row {number}{line}"

    def scope(self) -> str:
        if self.partial:
            return f"in rows {self.first_row + 1}-{self.first_row + self.rows}"
        return "in all"


def _count(raw: pd.DataFrame, name: object) -> int:
    return sum(1 for column in raw.columns if column == name)


def _numeric(values: pd.Series, name: str, where: _Where) -> np.ndarray:
    """float64 (NaN for missing or blank), or raise naming the first non-numeric value."""
    if pd.api.types.is_bool_dtype(values.dtype) or pd.api.types.is_numeric_dtype(values.dtype):
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        bad = np.isinf(numbers)
    else:
        numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        given = values.notna().to_numpy()
        blank = values.astype(str).str.strip().eq("").to_numpy()
        bad = (np.isnan(numbers) & given & ~blank) | np.isinf(numbers)
    if bad.any():
        first = int(np.argmax(bad))
        count = int(bad.sum())
        others = f" ({count:,} bad values {where.scope()})" if count > 1 else ""
        raise DataValidationError(
            f"{where.source}: column {name!r} must be numeric but {where.row(first)} has "
            f"{short(values.iloc[first])}{others}; fix the value or leave it empty"
        )
    return numbers


def _categorical(values: pd.Series) -> np.ndarray:
    """An object array of stripped ``str``, NaN where missing or blank."""
    out = values.to_numpy(dtype=object, na_value=np.nan).copy()
    present = ~pd.isna(out)
    if present.any():
        texts = np.array([str(value).strip() for value in out[present]], dtype=object)
        texts[texts == ""] = np.nan
        out[present] = texts
    return out
