"""Batch scoring: check a file's columns, read it in chunks, write churn probabilities.

A pure module (pandas, numpy, scikit-learn; never Prefect or MLflow). The model arrives in
memory, already loaded and checked by ``tracking/``. The input is read ``chunk_rows`` rows at a
time and each chunk's predictions are appended to the output file before the next chunk is read,
so neither the input nor the prediction table is ever held whole.

Only the feature columns (and identifier columns, which are copied to the output) are read;
other columns are ignored. A category the model never saw (say ``Geography=Atlantis``) is
scored like a missing one: the model's encoder gives it no column.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import Field, ValidationError, model_validator

from churnml import inputs, parquet
from churnml.config import ConfigError, StrictModel, describe_validation_error
from churnml.schema import (
    CATEGORICAL_COLUMNS,
    FEATURE_COLUMNS,
    PASSTHROUGH_COLUMNS,
    DataValidationError,
    check_feature_columns,
    to_features,
)

#: Output column with the probability of churn (class 1).
PROBABILITY_COLUMN = "churn_probability"
#: Output column naming the model version that scored the row.
VERSION_COLUMN = "model_version"
# PASSTHROUGH_COLUMNS (from churnml.schema): identifier columns copied from input to output
# when present, so rows can be joined back.

_ALIAS_PATTERN = r"^[A-Za-z0-9_-]+$"


class ScoreConfig(StrictModel):
    """Settings of one batch-scoring run."""

    data: Path = Field(
        description="Data of the bank-churn schema to score (no target needed): CSV, CSV "
        "compressed as .gz/.bz2/.xz/.zip, or Parquet."
    )
    out: Path = Field(description="CSV of predictions to write (replaced if it exists).")
    model_name: str = Field(default="bank-churn-classifier", min_length=1, max_length=200)
    alias: str | None = Field(
        default=None,
        pattern=_ALIAS_PATTERN,
        description="Registry alias to score with; None (and no version): champion.",
    )
    version: int | None = Field(default=None, ge=1, description="Model version to score with.")
    chunk_rows: int = Field(default=50_000, ge=1, le=5_000_000, description="Rows read at once.")

    @model_validator(mode="after")
    def _consistent(self) -> ScoreConfig:
        if self.alias is not None and self.version is not None:
            raise ValueError("give an alias or a version, not both")
        if Path(self.data).resolve() == Path(self.out).resolve():
            raise ValueError(f"out ({self.out}) must not be the input file")
        return self

    @property
    def selector(self) -> str:
        """``@alias`` or ``vN``: which version to score with, for messages."""
        return f"v{self.version}" if self.version is not None else f"@{self.alias or 'champion'}"


def parse_score_config(raw: dict | ScoreConfig) -> ScoreConfig:
    """Validate raw settings into a :class:`ScoreConfig`, raising :class:`ConfigError`."""
    if isinstance(raw, ScoreConfig):
        return raw
    try:
        return ScoreConfig.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(f"invalid scoring settings: {describe_validation_error(error)}") from None


@dataclass
class ScoreStats:
    """What a scoring run wrote."""

    out: str
    model_version: str
    rows: int = 0
    chunks: int = 0
    largest_chunk: int = 0
    mean_probability: float | None = None
    unknown_categories: dict[str, int] = field(default_factory=dict)


# --------------------------------------------------------------------------- input checks


def read_header(path: str | Path) -> list[str]:
    """The column names of a data file (CSV, compressed CSV or Parquet), after file-level checks.

    Raises:
        DataValidationError: The file is missing, a dangling symlink, a symlink loop, a
            directory, unreadable, another kind of file, damaged, empty, not UTF-8, or its
            header has repeated names.
    """
    file = inputs.inspect(path)
    source = file.source
    if file.kind == "parquet":
        header: list[str] | None = parquet.parquet_columns(file)
    else:
        try:
            with inputs.open_bytes(file) as stream:
                text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
                rows = csv.reader(text)
                header = next((row for row in rows if any(c.strip() for c in row)), None)
                text.detach()
        except UnicodeDecodeError:
            raise DataValidationError(
                f"{source}: not UTF-8 text; re-save the file as UTF-8"
            ) from None
        except csv.Error as error:
            raise DataValidationError(f"{source}: cannot be read ({error})") from None
    if not header:
        raise DataValidationError(f"{source}: the file is empty; expected a header row and rows")
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise DataValidationError(
            f"{source}: repeated column name(s) {', '.join(map(repr, repeated))}; "
            "give every column a unique name"
        )
    return header


def check_columns(columns: list[str], source: str) -> None:
    """Raise unless every feature column is present (extra columns are fine).

    Raises:
        DataValidationError: One line naming the missing columns, with a hint when a column
            differs only in case or surrounding spaces.
    """
    check_feature_columns(columns, source=source, noun="column(s)")


def iter_chunks(
    path: str | Path, columns: list[str], chunk_rows: int
) -> Iterator[tuple[int, pd.DataFrame]]:
    """Read the feature and identifier columns ``chunk_rows`` rows at a time.

    A CSV (plain or compressed, decompressed on the fly) goes through ``pandas.read_csv`` in
    chunks; a Parquet file is read by row batches. Neither is ever held whole.

    Yields:
        ``(rows before this chunk, chunk)`` pairs.

    Raises:
        DataValidationError: The file cannot be parsed (e.g. a row with too many fields).
    """
    file = inputs.inspect(path)
    wanted = [name for name in (*PASSTHROUGH_COLUMNS, *FEATURE_COLUMNS) if name in columns]
    offset = 0
    if file.kind == "parquet":
        for chunk in parquet.iter_parquet(file, wanted, chunk_rows):
            yield offset, chunk
            offset += len(chunk)
        return
    text_columns = (*CATEGORICAL_COLUMNS, *PASSTHROUGH_COLUMNS)
    dtypes = {name: object for name in wanted if name in text_columns}
    try:
        with inputs.open_bytes(file) as stream:
            reader = pd.read_csv(
                stream,
                usecols=wanted,
                dtype=dtypes,
                chunksize=chunk_rows,
                encoding="utf-8-sig",
                skip_blank_lines=True,
            )
            with reader:
                for chunk in reader:
                    yield offset, chunk
                    offset += len(chunk)
    except DataValidationError:
        raise
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
        message = " ".join(str(error).split())
        raise DataValidationError(f"{path}: could not parse as CSV: {message}") from None


def features_from_chunk(
    chunk: pd.DataFrame, *, source: str, first_row: int, line_offset: int | None = 1
) -> pd.DataFrame:
    """The model's input columns from a raw chunk: :func:`churnml.schema.to_features`.

    Args:
        chunk: Raw rows as read by :func:`iter_chunks`.
        source: The file, named in errors.
        first_row: Data rows before this chunk, so errors name the row in the whole file.
        line_offset: Data row to file line (1 for a CSV; None for Parquet: no lines).

    Raises:
        DataValidationError: A numeric column holds text or an infinite value.
    """
    return to_features(
        chunk, source=source, first_row=first_row, line_offset=line_offset, partial=True
    )


# --------------------------------------------------------------------------- scoring


def known_categories(model: Any) -> dict[str, set[str]]:
    """The categories the model's encoder learned, per column ({} if it has no such step)."""
    try:
        encoder = model.named_steps["preprocess"].named_transformers_["categorical"]
        categories = encoder.named_steps["encode"].categories_
    except (AttributeError, KeyError, TypeError):
        return {}
    return {
        name: {str(value) for value in values}
        for name, values in zip(CATEGORICAL_COLUMNS, categories, strict=False)
    }


def predict_churn(model: Any, features: pd.DataFrame) -> np.ndarray:
    """The churn probability (class 1) of each row; unknown categories score without warning."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*unknown categories.*", category=UserWarning)
        return model.predict_proba(features)[:, 1]


def score_csv(
    model: Any, data: str | Path, out: str | Path, *, model_version: str, chunk_rows: int = 50_000
) -> ScoreStats:
    """Score every row of ``data`` and write ``out``, one chunk at a time.

    The output has the input's identifier columns (``id``, ``RowNumber``, ``CustomerId``; those
    present), then ``churn_probability`` and ``model_version``, one row per input row in the
    same order. It is written to ``<out>.partial`` and renamed at the end, so a failed run leaves
    no half-written file under the final name.

    Args:
        model: A fitted pipeline with ``predict_proba`` taking raw bank-churn rows.
        data: The file to score (CSV, compressed CSV or Parquet); it needs the feature columns,
            other columns are ignored.
        out: The CSV to write (its folder is created).
        model_version: Written on every row.
        chunk_rows: Rows read, scored and written at a time.

    Returns:
        Counts and a summary of what was written.

    Raises:
        DataValidationError: The file or its columns or values are unusable, or it has no rows.
    """
    source = str(data)
    columns = read_header(data)
    check_columns(columns, source)
    line_offset = None if inputs.inspect(data).kind == "parquet" else 1
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(out.name + ".partial")
    stats = ScoreStats(out=str(out), model_version=str(model_version))
    known = known_categories(model)
    total = 0.0
    try:
        with open(partial, "w", encoding="utf-8", newline="") as handle:
            for first_row, chunk in iter_chunks(data, columns, chunk_rows):
                if chunk.empty:
                    continue
                features = features_from_chunk(
                    chunk, source=source, first_row=first_row, line_offset=line_offset
                )
                probabilities = predict_churn(model, features)
                _count_unknown(features, known, stats.unknown_categories)
                result = chunk[[c for c in PASSTHROUGH_COLUMNS if c in chunk.columns]].copy()
                result[PROBABILITY_COLUMN] = probabilities
                result[VERSION_COLUMN] = stats.model_version
                result.to_csv(handle, header=stats.chunks == 0, index=False)
                stats.rows += len(chunk)
                stats.chunks += 1
                stats.largest_chunk = max(stats.largest_chunk, len(chunk))
                total += float(probabilities.sum())
        if stats.rows == 0:
            raise DataValidationError(f"{source}: has a header but no data rows to score")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    stats.mean_probability = total / stats.rows
    return stats


def _count_unknown(
    features: pd.DataFrame, known: dict[str, set[str]], counts: dict[str, int]
) -> None:
    """Add, per column, the rows whose category the model never saw."""
    for name, categories in known.items():
        values = features[name]
        unseen = int((values.notna() & ~values.isin(categories)).sum())
        if unseen:
            counts[name] = counts.get(name, 0) + unseen
