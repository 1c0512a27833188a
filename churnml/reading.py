"""Read a bank-churn data file into a raw frame, and load it as the clean, validated dataset.

A pure module: it imports pandas and the pure churnml modules only (never Prefect or MLflow).

Two CSV variants of the same schema are supported: the Kaggle Playground S4E1 training file (first
column ``id``, floats such as ``33.0``) and the classic ``Churn_Modelling.csv`` (first column
``RowNumber``, integer-typed columns). :func:`load_dataset` turns either into the same clean frame
(see :func:`churnml.data.validate_frame`).

Every problem with the input raises :class:`~churnml.schema.DataValidationError` whose message is
one line naming the file, the column and/or the value, and saying what to fix.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from churnml import inputs, parquet
from churnml.csv_checks import check_csv_stream
from churnml.data import validate_frame
from churnml.formats import DataFile
from churnml.schema import DEFAULT_TARGET, TEXT_COLUMNS, DataValidationError, one_line


def read_csv(
    path: str | Path,
    *,
    target: str = DEFAULT_TARGET,
    max_field_bytes: int = 100_000,
    max_bytes: int | None = None,
) -> pd.DataFrame:
    """Read a bank-churn data file and return the raw frame after file-level checks.

    Despite the name, every format of :mod:`churnml.inputs` is accepted: CSV, CSV compressed
    as ``.gz``, ``.bz2``, ``.xz`` or a ``.zip`` holding one CSV (decompressed on the fly), and
    Parquet; the content decides, not the file name. Another kind of file (a workbook, a PDF, an
    image, a pickle, other binary data) is refused with one line saying what it seems to be.

    Both schema variants are accepted (Kaggle S4E1 with ``id``; ``Churn_Modelling.csv`` with
    ``RowNumber`` and integer-typed columns). The frame keeps every column of the file; use
    :func:`churnml.data.validate_frame` (or :func:`load_dataset`) for schema and value checks.

    Memory stays bounded: a CSV is checked in chunks of a few MiB (UTF-8, separators, field
    counts and lengths, with vectorised byte counts) and then parsed by ``pandas.read_csv``
    from a second stream, so no second whole copy of the bytes is held beside the frame. Text
    columns (``Surname``, ``Geography``, ``Gender``) are read as strings; other columns are left
    to pandas, so a numeric column that holds text comes back as strings and
    :func:`churnml.data.validate_frame` can name the first bad value.

    Args:
        path: The data file (a CSV is UTF-8, comma-separated, one header row; a UTF-8 BOM is
            tolerated).
        target: Name of the target column. It is read as found, without a forced dtype, so that
            :func:`churnml.data.validate_frame` can report non-binary values.
        max_field_bytes: Longest field accepted, in bytes.
        max_bytes: Largest data accepted, in (decompressed) bytes; None:
            :func:`churnml.inputs.default_max_data_bytes`. The ``SWEEPFLOW_MAX_DATA_BYTES``
            setting is parsed by :func:`churnml.inputs.max_data_bytes`.

    Returns:
        The raw frame with every column of the file.

    Raises:
        DataValidationError: The path is missing, a dangling symlink, a symlink loop, a
            directory or unreadable; the file is another kind of file, damaged, larger than
            ``max_bytes``, not UTF-8, empty, header-only, not comma-separated, has duplicate
            column names, a row with the wrong number of fields, or a field longer than
            ``max_field_bytes``.
    """
    limit = inputs.default_max_data_bytes() if max_bytes is None else max_bytes
    file = inputs.inspect(path, max_bytes=limit)
    if file.kind == "parquet":
        return _read_parquet(file)
    with inputs.open_bytes(file) as stream:
        columns = check_csv_stream(stream, file, max_field_bytes)

    dtypes = {name: object for name in TEXT_COLUMNS if name in columns and name != target}
    try:
        with inputs.open_bytes(file) as stream:
            return pd.read_csv(stream, dtype=dtypes, encoding="utf-8-sig", low_memory=False)
    except DataValidationError:
        raise
    except (pd.errors.ParserError, ValueError) as error:  # a malformed file the checks missed
        raise DataValidationError(
            f"{file.source}: could not parse as CSV: {one_line(error)}"
        ) from None


def _read_parquet(file: DataFile) -> pd.DataFrame:
    """A Parquet file's frame, with the checks a CSV header gets."""
    frame = parquet.read_parquet(file)
    names = [str(name) for name in frame.columns]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise DataValidationError(
            f"{file.source}: duplicate column name(s) {', '.join(map(repr, repeated))}; "
            f"give every column a unique name"
        )
    if frame.empty:
        raise DataValidationError(
            f"{file.source}: Parquet file has no data rows; write the rows into it"
        )
    return frame


def load_dataset(
    path: str | Path,
    *,
    target: str = DEFAULT_TARGET,
    cv_folds: int = 5,
    max_bytes: int | None = None,
) -> pd.DataFrame:
    """Read and validate a bank-churn data file (CSV, compressed CSV or Parquet).

    Args:
        path: The data file.
        target: Name of the binary target column.
        cv_folds: Number of cross-validation folds the data must support.
        max_bytes: Largest data accepted (see :func:`read_csv`).

    Returns:
        The clean frame described in :func:`churnml.data.validate_frame`.

    Raises:
        DataValidationError: See :func:`read_csv` and :func:`churnml.data.validate_frame`.
    """
    raw = read_csv(path, target=target, max_bytes=max_bytes)
    return validate_frame(raw, source=str(path), target=target, cv_folds=cv_folds)
