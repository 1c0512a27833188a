"""Read, validate, generate and split bank-churn data.

A pure module: it imports pandas, numpy and scikit-learn only (never Prefect or MLflow), so every
function here can be called and tested on its own.

Two CSV variants of the same schema are supported: the Kaggle Playground S4E1 training file (first
column ``id``, floats such as ``33.0``) and the classic ``Churn_Modelling.csv`` (first column
``RowNumber``, integer-typed columns). :func:`load_dataset` turns either into the same clean frame:
``FEATURE_COLUMNS`` in a fixed order (numeric columns ``float64``, categorical columns ``object``
holding ``str`` or NaN) followed by the target as ``int64`` 0/1.

Every problem with the input raises :class:`DataValidationError` whose message is one line naming
the file, the column and/or the value, and saying what to fix.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from churnml import inputs
from churnml.schema import (
    CATEGORICAL_COLUMNS,
    DEFAULT_TARGET,
    FEATURE_COLUMNS,
    ID_COLUMNS,
    NUMERIC_COLUMNS,
    TEXT_COLUMNS,
    DataValidationError,
    check_feature_columns,
    clean_target,
    near_matches,
    short,
    to_features,
)

__all__ = [
    "CATEGORICAL_COLUMNS",
    "DEFAULT_TARGET",
    "FEATURE_COLUMNS",
    "ID_COLUMNS",
    "NUMERIC_COLUMNS",
    "DataValidationError",
]

# Text columns that are read as strings whatever they look like.
_TEXT_COLUMNS = TEXT_COLUMNS
_UTF8_BOM = b"\xef\xbb\xbf"
_OTHER_SEPARATORS = {
    ";": "looks ;-separated",
    "\t": "looks tab-separated",
    "|": "looks |-separated",
}
_UNCLOSED_QUOTE = "that is never closed"
_HASH_CHUNK = 1 << 20
_CHUNK = 4 << 20  # bytes checked at a time


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


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
    :func:`validate_frame` (or :func:`load_dataset`) for schema and value checks.

    Memory stays bounded: a CSV is checked in chunks of a few MiB (UTF-8, separators, field
    counts and lengths, with vectorised byte counts) and then parsed by ``pandas.read_csv``
    from a second stream, so no second whole copy of the bytes is held beside the frame. Text
    columns (``Surname``, ``Geography``, ``Gender``) are read as strings; other columns are left
    to pandas, so a numeric column that holds text comes back as strings and
    :func:`validate_frame` can name the first bad value.

    Args:
        path: The data file (a CSV is UTF-8, comma-separated, one header row; a UTF-8 BOM is
            tolerated).
        target: Name of the target column. It is read as found, without a forced dtype, so that
            :func:`validate_frame` can report non-binary values.
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
        columns = _check_stream(stream, file, max_field_bytes)

    dtypes = {name: object for name in _TEXT_COLUMNS if name in columns and name != target}
    try:
        with inputs.open_bytes(file) as stream:
            return pd.read_csv(stream, dtype=dtypes, encoding="utf-8-sig", low_memory=False)
    except DataValidationError:
        raise
    except (pd.errors.ParserError, ValueError) as error:  # a malformed file the checks missed
        raise DataValidationError(
            f"{file.source}: could not parse as CSV: {_one_line(error)}"
        ) from None


def _read_parquet(file: inputs.DataFile) -> pd.DataFrame:
    """A Parquet file's frame, with the checks a CSV header gets."""
    frame = inputs.read_parquet(file)
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


def _check_stream(stream: BinaryIO, file: inputs.DataFile, max_field_bytes: int) -> list[str]:
    """File-level checks of a CSV stream, in bounded chunks that end at a line break.

    A chunk is cut after its last line break outside double quotes, so every chunk starts
    outside a quoted field and no UTF-8 sequence spans two chunks.

    Returns:
        The header's column names.
    """
    source = file.source
    offset = 0  # file bytes before ``carry``
    lines = 0  # line breaks before ``carry``
    carry = b""
    columns: list[str] | None = None
    has_rows = False
    quoted = False
    guard = 4 * _CHUNK
    while True:
        chunk = stream.read(_CHUNK)
        if offset == 0 and not carry and chunk.startswith(_UTF8_BOM):
            chunk = chunk[len(_UTF8_BOM) :]
            offset = len(_UTF8_BOM)
        buffer = carry + chunk
        if chunk:
            cut = _last_break(buffer)
            if cut == 0 and len(buffer) <= guard:
                carry = buffer
                continue
            segment, carry = (buffer, b"") if cut == 0 else (buffer[:cut], buffer[cut:])
        else:
            segment, carry = buffer, b""
        _check_utf8(segment, source, offset, lines)
        quoted = quoted or b'"' in segment
        body, body_lines = segment, lines
        if columns is None:
            found = _header_line(segment)
            if found is not None:
                index, end, text = found
                columns = _parse_header(text, source, lines + index + 1)
                guard = max(guard, 2 * (len(columns) + 1) * (max_field_bytes + 3))
                body, body_lines = segment[end:], lines + index + 1
        if columns is not None and body and not body.isspace():
            has_rows = True
            problem = _scan_fields(body, columns, max_field_bytes, body_lines)
            if problem is not None:
                if quoted:
                    # A quote is only special at the start of a field; the csv module has the
                    # last word (and if it finds nothing wrong, pandas parses the file the same
                    # way): it reads the whole file again, streaming.
                    try:
                        with inputs.open_bytes(file) as again:
                            _check_fields_quoted(again, source, columns, max_field_bytes)
                    except DataValidationError:
                        if _UNCLOSED_QUOTE in problem:  # say where the runaway field starts
                            raise DataValidationError(f"{source}: {problem}") from None
                        raise
                    return columns
                raise DataValidationError(f"{source}: {problem}")
        offset += len(segment)
        lines += segment.count(b"\n")
        if not chunk:
            break
    if columns is None:
        raise DataValidationError(
            f"{source}: file is empty; expected a comma-separated header row and data rows"
        )
    if not has_rows:
        raise DataValidationError(
            f"{source}: file has a header but no data rows; add at least one row under the header"
        )
    return columns


def _last_break(data: bytes) -> int:
    """The offset just past the last line break outside double quotes (0 if none)."""
    end = data.rfind(b"\n")
    if end < 0:
        return 0
    if b'"' not in data:
        return end + 1
    arr = np.frombuffer(data, dtype=np.uint8)
    inside = np.bitwise_xor.accumulate((arr == ord('"')).view(np.uint8)).view(np.bool_)
    breaks = np.flatnonzero((arr == ord("\n")) & ~inside)
    return int(breaks[-1]) + 1 if len(breaks) else 0


def _check_utf8(data: bytes, source: str, offset: int, lines: int = 0) -> None:
    """Raise unless ``data`` is UTF-8, naming the offset and line of the first bad byte.

    Args:
        data: A chunk of the file.
        source: Named in the error.
        offset: File offset of the chunk's first byte.
        lines: Line breaks in the file before the chunk.
    """
    if data.isascii():
        return
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = lines + data.count(b"\n", 0, error.start) + 1
        bad = data[error.start : error.start + 1]
        raise DataValidationError(
            f"{source}: not UTF-8 text: byte 0x{bad.hex()} at byte offset {error.start + offset} "
            f"(line {line}); re-save the file as UTF-8"
        ) from None


def _header_line(data: bytes) -> tuple[int, int, str] | None:
    """Find the header: the first non-blank line (pandas skips leading blank lines).

    Returns:
        The 0-based line index of the header in ``data``, the byte offset just past its line
        break, and its text without the line break; None if ``data`` has only blank lines.
    """
    start = 0
    index = 0
    while start < len(data):
        end = data.find(b"\n", start)
        stop = len(data) if end < 0 else end
        line = data[start:stop]
        if line.strip():
            return index, stop + 1, line.rstrip(b"\r").decode("utf-8")
        start = stop + 1
        index += 1
    return None


def _parse_header(header: str, source: str, line: int) -> list[str]:
    """Split the header line, rejecting other separators and duplicate column names."""
    names = next(csv.reader([header]))
    if len(names) == 1:
        for separator, looks in _OTHER_SEPARATORS.items():
            if separator in header:
                raise DataValidationError(
                    f"{source}: header {short(header)} {looks}, expected commas; "
                    f"re-save the file with ',' as the separator"
                )
    positions: dict[str, list[int]] = {}
    for number, name in enumerate(names, start=1):
        positions.setdefault(name, []).append(number)
    repeated = {name: where for name, where in positions.items() if len(where) > 1}
    if repeated:
        shown = "; ".join(
            f"{name!r} (columns {', '.join(map(str, where))})" for name, where in repeated.items()
        )
        raise DataValidationError(
            f"{source}: duplicate column name(s) in the header on line {line}: {shown}; "
            f"give every column a unique name"
        )
    return names


def _scan_fields(
    data: bytes, columns: list[str], max_field_bytes: int, lines: int = 0
) -> str | None:
    """Find the first row with the wrong number of fields, or a huge field, with numpy.

    Commas and line breaks between an opening and a closing double quote (odd quote parity)
    belong to a quoted field. Runs in tens of milliseconds on the 12 MB training file.

    Args:
        data: Whole rows of the file, starting outside a quoted field.
        columns: The header's names.
        max_field_bytes: Longest field accepted.
        lines: Line breaks in the file before ``data`` (for the line numbers in messages).

    Returns:
        A description of the first problem (without the source), or None.
    """
    if not data or data.isspace():
        return None
    arr = np.frombuffer(data, dtype=np.uint8)
    is_comma = arr == ord(",")
    is_break = arr == ord("\n")
    if b'"' in data:
        inside = np.bitwise_xor.accumulate((arr == ord('"')).view(np.uint8)).view(np.bool_)
        if inside[-1]:
            line = lines + data.count(b"\n", 0, data.rindex(b'"')) + 1
            return f'line {line} opens a quote (") {_UNCLOSED_QUOTE}; close or remove it'
        is_comma &= ~inside
        is_break &= ~inside
    breaks = np.flatnonzero(is_break)
    starts = np.concatenate(([0], breaks + 1))
    ends = np.concatenate((breaks, [len(data)]))
    if starts[-1] == len(data):  # the data ends with a line break: no last row
        starts, ends = starts[:-1], ends[:-1]

    # No field is longer than its row, so only rows longer than the limit need a closer look.
    for index in np.flatnonzero(ends - starts > max_field_bytes):
        start, end = int(starts[index]), int(ends[index])
        separators = np.concatenate(([-1], np.flatnonzero(is_comma[start:end]), [end - start]))
        lengths = np.diff(separators) - 1
        number = int(np.argmax(lengths)) + 1
        if lengths[number - 1] > max_field_bytes:
            name = columns[number - 1] if number <= len(columns) else f"field {number}"
            line = lines + data.count(b"\n", 0, start) + 1
            return (
                f"line {line}, column {name!r} has a "
                f"{int(lengths[number - 1]):,}-byte field (limit {max_field_bytes:,} bytes); "
                f"the file looks corrupt or is not a bank-churn CSV"
            )

    fields = np.add.reduceat(is_comma.view(np.uint8), starts, dtype=np.int64) + 1
    for index in np.flatnonzero(fields != len(columns)):
        start, end = int(starts[index]), int(ends[index])
        if data[start:end].strip():
            line = lines + data.count(b"\n", 0, start) + 1
            return _ragged(line, int(fields[index]), len(columns))
    return None


def _check_fields_quoted(
    stream: BinaryIO, source: str, columns: list[str], max_field_bytes: int
) -> None:
    """Field checks with the csv module over a fresh stream: slower, but exact with quotes."""
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")
    reader = csv.reader(text)
    expected = len(columns)
    limit = max_field_bytes
    try:
        for row in reader:
            if len(row) != expected and not (len(row) <= 1 and not "".join(row).strip()):
                raise DataValidationError(
                    f"{source}: {_ragged(reader.line_num, len(row), expected)}"
                )
            if max(map(len, row), default=0) <= limit:
                continue
            for number, field in enumerate(row, start=1):
                if len(field) > limit:
                    name = columns[number - 1] if number <= len(columns) else f"field {number}"
                    raise DataValidationError(
                        f"{source}: line {reader.line_num}, column {name!r} has a "
                        f"{len(field):,}-character field (limit {max_field_bytes:,} bytes); "
                        f"the file looks corrupt (an unclosed quote?)"
                    )
    except csv.Error as error:
        raise DataValidationError(
            f"{source}: line {reader.line_num}: {error}; the file looks corrupt "
            f"(an unclosed quote?)"
        ) from None
    finally:
        text.detach()


def _ragged(line: int, found: int, expected: int) -> str:
    return (
        f"line {line} has {found} fields but the header has {expected}; "
        f"fix that row (a missing or extra comma?)"
    )


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def validate_frame(
    raw: pd.DataFrame, *, source: str, target: str = DEFAULT_TARGET, cv_folds: int = 5
) -> pd.DataFrame:
    """Check a raw frame's schema and values and return the clean frame.

    Isolated missing values in feature columns are allowed (the model imputes them); a feature
    column with no values at all is not. Errors name 1-based data rows and the matching file
    line (data row + 1, assuming one header line and no blank lines before the row).

    Args:
        raw: A frame as returned by :func:`read_csv` (any extra columns are dropped).
        source: Where the frame came from (usually the file path); named in every error.
        target: Name of the binary target column.
        cv_folds: Number of cross-validation folds the data must support: every class needs at
            least this many rows.

    Returns:
        A new frame with ``FEATURE_COLUMNS`` in that order (numeric columns ``float64``,
        categorical columns ``object`` holding ``str`` or NaN) and the target last as ``int64``
        0/1, with a fresh ``RangeIndex``.

    Raises:
        DataValidationError: A required column is missing or repeated; the target is missing,
            empty in some rows, not binary, has a single class, or a class has fewer rows than
            ``cv_folds``; there are fewer rows than ``cv_folds``; a numeric column holds text or
            an infinite value; a feature column is entirely empty.
        ValueError: ``cv_folds`` is below 2.
    """
    if cv_folds < 2:
        raise ValueError(f"cv_folds must be at least 2, got {cv_folds}")
    _check_columns(raw, source, target)
    if len(raw) == 0:
        raise DataValidationError(f"{source}: no data rows; add rows under the header")

    label = clean_target(raw[target], source=source, target=target)
    features = to_features(raw, source=source)
    for name in FEATURE_COLUMNS:
        if features[name].isna().all():
            raise DataValidationError(
                f"{source}: column {name!r} is empty (every value is missing); "
                f"fill it in, the model needs at least some values"
            )
    _check_class_counts(label, source, target, cv_folds)
    features = features.set_axis(pd.RangeIndex(len(raw)))
    features[target] = label
    return features


def _check_columns(raw: pd.DataFrame, source: str, target: str) -> None:
    """Raise if a needed column is missing or repeated, or the target is a feature column."""
    if target in FEATURE_COLUMNS:
        raise DataValidationError(
            f"{source}: target {target!r} is one of the feature columns; "
            f"set the `target` option to the label column (default {DEFAULT_TARGET!r})"
        )
    present = [str(name) for name in raw.columns]
    check_feature_columns(present, source=source)
    if target not in present:
        hints = near_matches([target], present)
        raise DataValidationError(
            f"{source}: target column {target!r} not found{hints}; the columns are "
            f"{', '.join(present)}; set the `target` option to the label column"
        )
    needed = {*FEATURE_COLUMNS, target}
    repeated = sorted({name for name in present if name in needed and present.count(name) > 1})
    if repeated:
        raise DataValidationError(
            f"{source}: column(s) {', '.join(map(repr, repeated))} appear more than once; "
            f"keep one of each"
        )


def _check_class_counts(label: np.ndarray, source: str, target: str, cv_folds: int) -> None:
    """Raise unless there are enough rows, two classes, and ``cv_folds`` rows per class."""
    if len(label) < cv_folds:
        raise DataValidationError(
            f"{source}: only {len(label)} data row(s), fewer than cv_folds={cv_folds}; "
            f"add rows or lower cv_folds"
        )
    counts = np.bincount(label, minlength=2)
    present = np.flatnonzero(counts)
    if len(present) < 2:
        raise DataValidationError(
            f"{source}: target column {target!r} has a single class (all {len(label):,} rows "
            f"are {int(present[0])}); the data needs both 0 and 1"
        )
    for value, count in enumerate(counts):
        if count < cv_folds:
            raise DataValidationError(
                f"{source}: target class {value} has only {int(count)} row(s), fewer than "
                f"cv_folds={cv_folds}; add rows of that class or lower cv_folds"
            )


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
        The clean frame described in :func:`validate_frame`.

    Raises:
        DataValidationError: See :func:`read_csv` and :func:`validate_frame`.
    """
    raw = read_csv(path, target=target, max_bytes=max_bytes)
    return validate_frame(raw, source=str(path), target=target, cv_folds=cv_folds)


# --------------------------------------------------------------------------------------------
# Synthetic data
# --------------------------------------------------------------------------------------------

_SURNAMES = np.array(
    [
        "Hsia", "T'ien", "Hs?", "Kao", "Maclean", "Ts'ui", "P'eng", "H?", "Hsueh", "Shih",
        "Ch'ang", "Ch'iu", "Mazzanti", "Tuan", "Fanucci", "Onyemauchechukwu", "Tien", "Smith",
        "Nwankwo", "Manna", "Okwudilichukwu", "Okwudiliolisa", "Hargrave", "Hill", "Onio",
        "Boni", "Mitchell", "Chu", "Bartlett", "Obinna", "Bellucci", "Genovese", "Y?an",
        "Lo", "Scott", "Walker", "Martin", "Brown", "Yeh", "Chiemezie",
    ],
    dtype=object,
)  # fmt: skip
_GEOGRAPHIES = np.array(["France", "Spain", "Germany"], dtype=object)
_GEOGRAPHY_P = (0.571, 0.219, 0.210)
_TENURE_P = np.array([0.030, 0.102, 0.109, 0.101, 0.106, 0.105, 0.096, 0.108, 0.106, 0.101, 0.036])
_PRODUCTS_P = np.array([0.4688, 0.5108, 0.0175, 0.0029])
_MAX_BALANCE = 250_898.09
_MIN_SALARY, _MAX_SALARY = 11.58, 199_992.48

# Churn model: log-odds contributions. Germany, women, inactive members, customers aged
# about 45-60 and holders of 3-4 products churn more; holders of 2 products churn less.
_INTERCEPT = -3.75
_PRODUCT_LOGIT = np.array([0.0, -2.9, 3.4, 4.2])
_LABEL_NOISE = 0.01


def generate_bank_churn(n_rows: int = 4000, *, seed: int = 0) -> pd.DataFrame:
    """Generate a raw frame of the Kaggle S4E1 bank-churn schema.

    The marginals follow the real training file (credit score 350-850, about 57 % France,
    56 % men, ages 18-92 centred near 37, 54 % zero balances, 1-2 products for 98 % of
    customers, ...). ``Exited`` comes from a logistic model with about 20 % churn, clearly higher
    for Germany, ages 45-60, inactive members and 3-4 products, and lower for 2 products,
    plus a little label noise, so models score well but not perfectly.

    Args:
        n_rows: Number of rows (at least 1).
        seed: Seed of the random generator; the same seed gives an identical frame.

    Returns:
        A frame with columns ``id, CustomerId, Surname, CreditScore, Geography, Gender, Age,
        Tenure, Balance, NumOfProducts, HasCrCard, IsActiveMember, EstimatedSalary, Exited``
        and the dtypes pandas reads from the real file.

    Raises:
        ValueError: ``n_rows`` is below 1.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows must be at least 1, got {n_rows}")
    rng = np.random.default_rng(seed)
    n = n_rows

    geography = rng.choice(3, size=n, p=_GEOGRAPHY_P)
    male = rng.random(n) < 0.564
    z = rng.standard_normal(n)
    age = np.clip(np.round(37.0 * np.exp(z * np.where(z > 0, 0.23, 0.20))), 18, 92)
    credit = np.clip(np.round(rng.normal(657.0, 82.0, n)), 350, 850).astype(np.int64)
    tenure = rng.choice(11, size=n, p=_TENURE_P / _TENURE_P.sum())
    has_balance = rng.random(n) >= 0.543
    balance = np.where(
        has_balance, np.round(np.clip(rng.normal(121_500.0, 25_000.0, n), 0.0, _MAX_BALANCE), 2), 0
    )
    products = rng.choice(4, size=n, p=_PRODUCTS_P / _PRODUCTS_P.sum()) + 1
    has_card = (rng.random(n) < 0.754).astype(np.float64)
    active = (rng.random(n) < 0.498).astype(np.float64)
    salary = np.round(_MIN_SALARY + rng.beta(1.3, 1.0, n) * (_MAX_SALARY - _MIN_SALARY), 2)

    logit = (
        _INTERCEPT
        + 1.5 * (geography == 2)
        + 0.05 * (geography == 1)
        + 0.7 * ~male
        + 1.3 * (1.0 - active)
        + _PRODUCT_LOGIT[products - 1]
        + 4.6 * np.exp(-0.5 * ((age - 54.0) / 8.5) ** 2)
        + 0.30 * has_balance
        - 0.0008 * (credit - 650)
    )
    exited = rng.random(n) < 1.0 / (1.0 + np.exp(-logit))
    flip = rng.random(n) < _LABEL_NOISE
    exited = (exited ^ flip).astype(np.int64)

    return pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "CustomerId": rng.integers(15_565_701, 15_815_691, size=n, dtype=np.int64),
            "Surname": _SURNAMES[rng.integers(len(_SURNAMES), size=n)],
            "CreditScore": credit,
            "Geography": _GEOGRAPHIES[geography],
            "Gender": np.where(male, "Male", "Female").astype(object),
            "Age": age.astype(np.float64),
            "Tenure": tenure.astype(np.int64),
            "Balance": balance.astype(np.float64),
            "NumOfProducts": products.astype(np.int64),
            "HasCrCard": has_card,
            "IsActiveMember": active,
            "EstimatedSalary": salary,
            DEFAULT_TARGET: exited,
        }
    )


# --------------------------------------------------------------------------------------------
# Splitting and fingerprints
# --------------------------------------------------------------------------------------------


def split_holdout(
    frame: pd.DataFrame, *, target: str, test_size: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a frame into stratified train and test parts.

    Args:
        frame: The rows to split.
        target: The column to stratify on.
        test_size: Fraction of rows in the test part, in (0, 1).
        seed: Random state of the split.

    Returns:
        ``(train, test)``, each with a fresh ``RangeIndex``.

    Raises:
        ValueError: ``test_size`` is not in (0, 1).
        DataValidationError: The target column is missing, or a class is too small to appear
            in both parts.
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"test_size must be between 0 and 1, got {test_size}")
    _require_target(frame, target)
    try:
        train, test = train_test_split(
            frame, test_size=test_size, random_state=seed, stratify=frame[target]
        )
    except ValueError as error:
        raise DataValidationError(
            f"cannot split {len(frame)} rows with a stratified {test_size:.0%} hold-out on "
            f"{target!r} ({_class_counts(frame[target])}): {_one_line(error)}; use more rows "
            f"or another test_size"
        ) from None
    return train.reset_index(drop=True), test.reset_index(drop=True)


def stratified_sample(frame: pd.DataFrame, *, target: str, n_rows: int, seed: int) -> pd.DataFrame:
    """Draw a stratified sample of ``n_rows`` rows.

    Args:
        frame: The rows to sample from.
        target: The column whose class shares the sample keeps.
        n_rows: Sample size (at least 1).
        seed: Random state of the sample.

    Returns:
        The sample with a fresh ``RangeIndex``, or ``frame`` itself if it has at most
        ``n_rows`` rows.

    Raises:
        ValueError: ``n_rows`` is below 1.
        DataValidationError: The target column is missing, or ``n_rows`` is too small to hold
            every class.
    """
    if n_rows < 1:
        raise ValueError(f"n_rows must be at least 1, got {n_rows}")
    _require_target(frame, target)
    if len(frame) <= n_rows:
        return frame
    try:
        sample, _ = train_test_split(
            frame, train_size=n_rows, random_state=seed, stratify=frame[target]
        )
    except ValueError as error:
        raise DataValidationError(
            f"cannot draw a stratified sample of {n_rows} rows on {target!r} "
            f"({_class_counts(frame[target])}): {_one_line(error)}; sample more rows"
        ) from None
    return sample.reset_index(drop=True)


def _require_target(frame: pd.DataFrame, target: str) -> None:
    if target not in frame.columns:
        raise DataValidationError(
            f"target column {target!r} not found; the columns are "
            f"{', '.join(map(str, frame.columns))}"
        )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


def _class_counts(values: pd.Series) -> str:
    counts = values.value_counts(dropna=False).sort_index()
    return ", ".join(f"class {key}: {count}" for key, count in counts.items())


def frame_digest(frame: pd.DataFrame) -> str:
    """Return a stable fingerprint of a frame's contents, column names and dtypes.

    The index is ignored, so a frame and its ``reset_index(drop=True)`` copy match.

    Args:
        frame: Any frame.

    Returns:
        The first 16 hex characters of a sha256 digest.
    """
    digest = hashlib.sha256()
    schema = [[str(name), str(dtype)] for name, dtype in frame.dtypes.items()]
    digest.update(json.dumps(schema).encode("utf-8"))
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def file_sha256(path: str | Path) -> str:
    """Return the sha256 hex digest of a file, read in 1 MiB chunks.

    Args:
        path: The file.

    Returns:
        The 64-character hex digest.

    Raises:
        OSError: The file cannot be opened or read (e.g. ``FileNotFoundError``).
    """
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
