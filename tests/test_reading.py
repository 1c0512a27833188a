"""Tests for churnml.reading: file-level errors of read_csv, and the real files in
../shared/data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from churnml.digests import file_sha256
from churnml.reading import load_dataset, read_csv
from churnml.schema import (
    DEFAULT_TARGET,
    FEATURE_COLUMNS,
    DataValidationError,
)
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

# ------------------------------------------------------------------------------------------
# read_csv: file-level errors
# ------------------------------------------------------------------------------------------


def test_read_csv_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    with pytest.raises(DataValidationError, match=r"nope\.csv: file not found") as error:
        read_csv(path)
    assert "check the path" in message(error)


def test_read_csv_directory(tmp_path: Path) -> None:
    with pytest.raises(DataValidationError, match="is a directory; pass the path of a CSV"):
        read_csv(tmp_path)


def test_read_csv_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tiny_csv(tmp_path)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root reads anything: simulate the refusal instead

            def refuse(self: Path, *args: object, **kwargs: object) -> bytes:
                raise PermissionError(13, "Permission denied", str(self))

            monkeypatch.setattr(Path, "open", refuse)
        with pytest.raises(DataValidationError, match=r"bank\.csv: cannot be read \(permission"):
            read_csv(path)
    finally:
        path.chmod(0o644)


def test_read_csv_not_utf8(tmp_path: Path) -> None:
    rows = csv_text([s4e1_row(i) for i in range(4)]).encode()
    bad = rows.replace(b"Name2", b"N\xe9me2")
    path = write(tmp_path, bad)
    offset = bad.index(b"\xe9")
    with pytest.raises(DataValidationError, match="not UTF-8") as error:
        read_csv(path)
    text = message(error)
    assert f"byte 0xe9 at byte offset {offset} (line 4)" in text
    assert "re-save the file as UTF-8" in text


@pytest.mark.parametrize("content", [b"", b"  \n\r\n\t\n"], ids=["zero-bytes", "whitespace"])
def test_read_csv_empty(tmp_path: Path, content: bytes) -> None:
    with pytest.raises(DataValidationError, match=r"bank\.csv: file is empty"):
        read_csv(write(tmp_path, content))


@pytest.mark.parametrize("tail", ["", "\n", "\n\n  \n"])
def test_read_csv_header_only(tmp_path: Path, tail: str) -> None:
    with pytest.raises(DataValidationError, match=r"bank\.csv: file has a header but no data rows"):
        read_csv(write(tmp_path, HEADER + tail))


@pytest.mark.parametrize(
    ("change", "found"), [(lambda row: [*row, "extra"], 15), (lambda row: row[:-2], 12)]
)
def test_read_csv_ragged_row(tmp_path: Path, change, found: int) -> None:
    rows = [s4e1_row(i) for i in range(6)]
    rows[2] = change(rows[2])  # data row 3 is line 4
    with pytest.raises(
        DataValidationError, match=f"bank.csv: line 4 has {found} fields but the header has 14"
    ):
        read_csv(write(tmp_path, csv_text(rows)))


def test_read_csv_ragged_row_with_quotes(tmp_path: Path) -> None:
    rows = [s4e1_row(i) for i in range(6)]
    rows[0][2] = '"Smith, Jr"'
    rows[4] = rows[4][:-1]
    with pytest.raises(DataValidationError, match="line 6 has 13 fields but the header has 14"):
        read_csv(write(tmp_path, csv_text(rows)))


@pytest.mark.parametrize(("separator", "looks"), [(";", ";-separated"), ("\t", "tab-separated")])
def test_read_csv_wrong_delimiter(tmp_path: Path, separator: str, looks: str) -> None:
    text = csv_text([s4e1_row(i) for i in range(4)]).replace(",", separator)
    with pytest.raises(DataValidationError, match=f"looks {looks}, expected commas") as error:
        read_csv(write(tmp_path, text))
    assert "bank.csv" in message(error)


def test_read_csv_duplicate_column_names(tmp_path: Path) -> None:
    rows = [[*s4e1_row(i), "40.0"] for i in range(4)]
    path = write(tmp_path, csv_text(rows, header=HEADER + ",Age"))
    with pytest.raises(
        DataValidationError, match=r"bank.csv: duplicate column name.*'Age' \(columns 7, 15\)"
    ):
        read_csv(path)


@pytest.mark.parametrize("quoted", [False, True])
def test_read_csv_huge_field(tmp_path: Path, quoted: bool) -> None:
    rows = [s4e1_row(i) for i in range(6)]
    rows[3][2] = "x" * 500
    if quoted:
        rows[1][2] = '"Smith, Jr"'
    path = write(tmp_path, csv_text(rows))
    with pytest.raises(
        DataValidationError, match=r"bank.csv: line 5, column 'Surname' has a 500-.* \(limit 100"
    ):
        read_csv(path, max_field_bytes=100)
    assert len(read_csv(path, max_field_bytes=1000)) == 6


def test_read_csv_tolerates_bom_crlf_blank_lines_and_quotes(tmp_path: Path) -> None:
    rows = [s4e1_row(i) for i in range(6)]
    rows[1][2] = '"Smith, Jr"'
    text = "\n" + csv_text(rows).replace("\n", "\r\n") + "\r\n\r\n"
    raw = read_csv(write(tmp_path, b"\xef\xbb\xbf" + text.encode()))
    assert list(raw.columns) == S4E1_COLUMNS
    assert len(raw) == 6
    assert raw.loc[1, "Surname"] == "Smith, Jr"


@pytest.mark.parametrize(
    ("written", "read"),
    [('O"Brien', 'O"Brien'), ('"Sm\nith"', "Sm\nith"), ('"Sm""ith"', 'Sm"ith')],
    ids=["quote-inside-field", "line-break-in-quotes", "escaped-quote"],
)
def test_read_csv_quoting_edge_cases(tmp_path: Path, written: str, read: str) -> None:
    rows = [s4e1_row(i) for i in range(6)]
    rows[2][2] = written
    raw = read_csv(write(tmp_path, csv_text(rows)))
    assert len(raw) == 6
    assert raw.loc[2, "Surname"] == read


def test_read_csv_unclosed_quote(tmp_path: Path) -> None:
    rows = [s4e1_row(i) for i in range(6)]
    rows[2][2] = '"Smith'  # data row 3 is line 4
    with pytest.raises(DataValidationError, match=r'bank\.csv: line 4 opens a quote \(".*closed'):
        read_csv(write(tmp_path, csv_text(rows)))


# ------------------------------------------------------------------------------------------
# The real files
# ------------------------------------------------------------------------------------------


def real_file(name: str) -> Path:
    path = SHARED_DATA / name
    if not path.is_file():
        pytest.skip(f"{path} is not available")
    return path


@pytest.mark.parametrize(
    ("name", "rows", "churned", "first_column", "sha256"),
    [
        (
            "bank_churn_train.csv",
            165_034,
            34_921,
            "id",
            "ff1e0eb402d364adaf0c3f9cc8b2351cde0657642bf4cb3ed56efcf31b67d1b0",
        ),
        (
            "churn_modelling.csv",
            10_000,
            2_037,
            "RowNumber",
            "ee2a5c9d8daf3aed0d91c4d883a84ebb77d271447bebc0f0c80aafb0f288ceab",
        ),
    ],
)
def test_real_file_loads(
    name: str, rows: int, churned: int, first_column: str, sha256: str
) -> None:
    path = real_file(name)
    assert file_sha256(path) == sha256
    raw = read_csv(path)
    assert raw.columns[0] == first_column
    assert len(raw.columns) == 14
    clean = load_dataset(path)
    assert clean.shape == (rows, len(FEATURE_COLUMNS) + 1)
    assert list(clean.columns) == [*FEATURE_COLUMNS, DEFAULT_TARGET]
    assert clean.dtypes.to_dict() == CLEAN_DTYPES
    assert int(clean[DEFAULT_TARGET].sum()) == churned
    assert not clean[list(FEATURE_COLUMNS)].isna().any().any()
    assert set(clean["Geography"]) == {"France", "Spain", "Germany"}
    assert set(clean["Gender"]) == {"Male", "Female"}
    assert clean["CreditScore"].between(350, 850).all()
    assert clean["Age"].between(18, 92).all()
