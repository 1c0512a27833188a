"""Parquet files: their columns, their rows by batches, or whole.

A pure module (pyarrow, imported when first needed, and pandas). A damaged file raises
:class:`~churnml.schema.DataValidationError` with one line.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from churnml.formats import EXPECTED, DataFile
from churnml.schema import DataValidationError, one_line


def _parquet_file(path: Path, source: str):  # type: ignore[no-untyped-def] - pyarrow type
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises ArrowInvalid, OSError, ... for a bad file
        raise DataValidationError(
            f"{source}: could not read as Parquet ({one_line(error)[:200]}); "
            f"the file looks damaged; {EXPECTED}"
        ) from None


def parquet_bytes(path: Path, source: str) -> int:
    """The uncompressed size of a Parquet file's data, from its metadata."""
    metadata = _parquet_file(path, source).metadata
    return sum(metadata.row_group(i).total_byte_size for i in range(metadata.num_row_groups))


def parquet_columns(file: DataFile) -> list[str]:
    """The column names of a Parquet file."""
    return list(_parquet_file(file.path, file.source).schema_arrow.names)


def iter_parquet(
    file: DataFile, columns: list[str] | None, batch_rows: int
) -> Iterator[pd.DataFrame]:
    """A Parquet file's rows, ``batch_rows`` at a time, as frames (only ``columns``)."""
    parquet = _parquet_file(file.path, file.source)
    try:
        for batch in parquet.iter_batches(batch_size=batch_rows, columns=columns):
            yield batch.to_pandas()
    except DataValidationError:
        raise
    except Exception as error:  # a damaged row group
        raise DataValidationError(
            f"{file.source}: could not read as Parquet ({one_line(error)[:200]}); "
            f"the file looks damaged"
        ) from None


def read_parquet(file: DataFile) -> pd.DataFrame:
    """A whole Parquet file as a frame; Arrow's buffers are freed as the frame is built."""
    parquet = _parquet_file(file.path, file.source)
    try:
        table = parquet.read()
        return table.to_pandas(self_destruct=True, split_blocks=True)
    except Exception as error:
        raise DataValidationError(
            f"{file.source}: could not read as Parquet ({one_line(error)[:200]}); "
            f"the file looks damaged"
        ) from None
