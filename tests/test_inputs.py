"""Inputs users have: compressed CSV and Parquet for the sweep and `score` alike, other kinds of
file refused by what they seem to be, a size limit, and paths that are odd or broken."""

from __future__ import annotations

import ast
import bz2
import gzip
import lzma
import os
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnml import inputs
from churnml.data import validate_frame
from churnml.model import build_pipeline, fit_quietly
from churnml.reading import load_dataset, read_csv
from churnml.schema import DataValidationError
from churnml.scoring import PROBABILITY_COLUMN, score_csv
from churnml.synthetic import generate_bank_churn

PARAMS = {"k": 8, "n_estimators": 10, "max_depth": 6}
FORMATS = ("csv", "csv.gz", "csv.bz2", "csv.xz", "zip", "parquet")


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return generate_bank_churn(300, seed=8)


@pytest.fixture(scope="module")
def model():
    clean = validate_frame(generate_bank_churn(500, seed=2), source="test", cv_folds=3)
    return fit_quietly(build_pipeline(PARAMS, seed=0), clean.drop(columns="Exited"), clean.Exited)


def write(frame: pd.DataFrame, path: Path, kind: str) -> Path:
    """Write ``frame`` as ``kind``; the file name says the format, not the content check."""
    text = frame.to_csv(index=False).encode()
    if kind == "csv":
        path.write_bytes(text)
    elif kind == "csv.gz":
        path.write_bytes(gzip.compress(text))
    elif kind == "csv.bz2":
        path.write_bytes(bz2.compress(text))
    elif kind == "csv.xz":
        path.write_bytes(lzma.compress(text))
    elif kind == "zip":
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("bank churn.csv", text)
    elif kind == "parquet":
        frame.to_parquet(path, index=False, row_group_size=64)
    return path


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_loads_the_same_clean_frame(rows, tmp_path, kind):
    expected = load_dataset(write(rows, tmp_path / "plain.csv", "csv"), cv_folds=3)
    path = write(rows, tmp_path / f"données de test.{kind}", kind)  # a space, non-ASCII
    pd.testing.assert_frame_equal(load_dataset(path, cv_folds=3), expected)


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_scores_in_chunks_the_same(rows, model, tmp_path, kind):
    features = rows.drop(columns="Exited")
    path = write(features, tmp_path / f"to score.{kind}", kind)
    calls: list[int] = []

    class Counting:
        def predict_proba(self, frame):
            calls.append(len(frame))
            return model.predict_proba(frame)

        def __getattr__(self, name):
            return getattr(model, name)

    stats = score_csv(Counting(), path, tmp_path / "p.csv", model_version="1", chunk_rows=64)
    assert calls == [64, 64, 64, 64, 44]  # chunked whatever the format
    written = pd.read_csv(tmp_path / "p.csv")
    clean = load_dataset(write(rows, tmp_path / "plain.csv", "csv"), cv_folds=3)
    expected = model.predict_proba(clean.drop(columns="Exited"))[:, 1]
    np.testing.assert_allclose(written[PROBABILITY_COLUMN], expected)
    assert written["id"].tolist() == rows["id"].tolist() and stats.rows == 300


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_gets_the_same_value_errors(rows, model, tmp_path, kind):
    frame = rows.astype({"Balance": str})  # Parquet holds one type per column
    frame.loc[120, "Balance"] = "lots"
    path = write(frame, tmp_path / f"bad.{kind}", kind)
    pattern = r"bad\.\S+: column 'Balance' must be numeric but data row 121"
    with pytest.raises(DataValidationError, match=pattern):
        load_dataset(path, cv_folds=3)
    with pytest.raises(DataValidationError, match=pattern):
        score_csv(model, path, tmp_path / "p.csv", model_version="1", chunk_rows=50)


def xlsx_bytes(path: Path) -> bytes:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return path.read_bytes()


OTHER_KINDS = {
    "workbook.xlsx": ("an Excel workbook", None),
    "report.pdf": ("a PDF document", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"),
    "chart.png": ("a PNG image", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
    "photo.jpg": ("a JPEG image", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"),
    "frame.pkl": ("a Python pickle", pickle.dumps({"a": [1, 2, 3]}, protocol=4)),
    "blob.bin": ("binary data", b"abc\x00\x01\x02\x03" * 100),
    "old.xls": ("an old Office file", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 50),
    "utf16.csv": ("UTF-16 text", "CreditScore,Age\n1,2\n".encode("utf-16")),
    "pickle.csv.gz": ("a Python pickle inside the compressed file", None),
}


@pytest.mark.parametrize("name", OTHER_KINDS)
def test_other_kinds_of_file_are_named_not_reported_as_not_utf8(model, tmp_path, name):
    seems, content = OTHER_KINDS[name]
    path = tmp_path / name
    if name.endswith(".xlsx"):
        xlsx_bytes(path)
    elif name == "pickle.csv.gz":
        path.write_bytes(gzip.compress(pickle.dumps(list(range(100)), protocol=5)))
    else:
        path.write_bytes(content)
    for load in (
        lambda: read_csv(path),
        lambda: score_csv(model, path, tmp_path / "p.csv", model_version="1"),
    ):
        with pytest.raises(DataValidationError) as caught:
            load()
        text = str(caught.value)
        assert "\n" not in text and "UTF-8 text:" not in text
        assert text.startswith(f"{path}: looks like {seems}")
        assert "expected a CSV file" in text
    assert not (tmp_path / "p.csv").exists()


@pytest.mark.parametrize(
    ("setup", "fragment"),
    [
        (lambda p: zipfile.ZipFile(p, "w").close(), "holding 0 files"),
        (lambda p: _two_member_zip(p), "holding 2 files (a.csv, b.csv)"),
        (lambda p: p.write_bytes(gzip.compress(b"x" * 1000)[:20]), "damaged .gz data"),
        (lambda p: p.write_bytes(b"PAR1 not really parquet PAR1"), "could not read as Parquet"),
    ],
    ids=["empty-zip", "two-member-zip", "truncated-gz", "bad-parquet"],
)
def test_broken_archives_get_one_line(tmp_path, setup, fragment):
    path = tmp_path / "data.bin"
    setup(path)
    with pytest.raises(DataValidationError, match=r"data\.bin") as caught:
        read_csv(path)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)


def _two_member_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.csv", "x\n1\n")
        archive.writestr("b.csv", "x\n1\n")


@pytest.mark.parametrize("kind", ["csv", "csv.gz", "csv.bz2", "csv.xz", "zip", "parquet"])
def test_data_over_the_limit_is_refused_with_size_limit_and_setting(rows, tmp_path, kind):
    path = write(rows, tmp_path / f"big.{kind}", kind)
    with pytest.raises(DataValidationError) as caught:
        read_csv(path, max_bytes=5_000)
    text = str(caught.value)
    assert text.startswith(f"{path}: ")
    assert "is more than the limit of 4.9 KiB (5,000 bytes)" in text
    assert "SWEEPFLOW_MAX_DATA_BYTES" in text and "\n" not in text
    assert len(read_csv(path, max_bytes=10_000_000)) == 300


def test_the_limit_setting_is_parsed():
    assert inputs.max_data_bytes("2G") == 2 << 30
    assert inputs.max_data_bytes("512M") == 512 << 20
    assert inputs.max_data_bytes(" 1000 ") == 1000
    assert inputs.max_data_bytes(None) == inputs.default_max_data_bytes() > 1 << 20
    with pytest.raises(ValueError, match="SWEEPFLOW_MAX_DATA_BYTES='lots' is not a size"):
        inputs.max_data_bytes("lots")
    with pytest.raises(ValueError, match="not a size"):
        inputs.max_data_bytes("-5")


def test_a_symlink_loop_a_dangling_link_and_a_directory_get_their_own_messages(model, tmp_path):
    loop = tmp_path / "loop.csv"
    loop.symlink_to(loop)
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "gone.csv")
    cases = {
        loop: "is a symbolic link loop",
        dangling: f"is a symbolic link to {tmp_path / 'gone.csv'}, which does not exist",
        tmp_path: "is a directory",
        tmp_path / "nope.csv": "file not found",
        tmp_path / "f.csv" / "x.csv": "file not found (a part of the path is a file",
    }
    (tmp_path / "f.csv").write_text("x\n")
    for path, fragment in cases.items():
        for load in (
            lambda p: read_csv(p),
            lambda p: score_csv(model, p, tmp_path / "p.csv", model_version="1"),
        ):
            with pytest.raises(DataValidationError) as caught:
                load(path)
            assert str(caught.value).startswith(f"{path}: {fragment}")


def test_an_unreadable_file_is_not_reported_missing(rows, tmp_path, monkeypatch):
    path = write(rows, tmp_path / "secret.csv", "csv")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root reads anything: simulate the refusal instead

            def refuse(self, *args, **kwargs):
                raise PermissionError(13, "Permission denied", str(self))

            monkeypatch.setattr(Path, "open", refuse)
        with pytest.raises(DataValidationError, match=r"secret\.csv: cannot be read \(permission"):
            read_csv(path)
    finally:
        path.chmod(0o644)


def test_a_fifo_is_not_a_regular_file(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(DataValidationError, match="is not a regular file"):
        read_csv(fifo)


def test_checks_stream_in_bounded_chunks(rows, tmp_path, monkeypatch):
    """A small chunk size forces many chunks; the answers are the same, and lines are right."""
    from churnml import csv_checks

    monkeypatch.setattr(csv_checks, "_CHUNK", 257)
    path = write(rows, tmp_path / "rows.csv.gz", "csv.gz")
    pd.testing.assert_frame_equal(read_csv(path), rows, check_dtype=False)
    lines = path.with_suffix("").with_suffix(".csv")
    text = rows.to_csv(index=False).splitlines()
    text[250] += ",extra"
    lines.write_text("\n".join(text) + "\n")
    with pytest.raises(DataValidationError, match="line 251 has 15 fields but the header has 14"):
        read_csv(lines)
    text = rows.to_csv(index=False).encode()
    at = text.index(b"\n", 5000) + 3
    lines.write_bytes(text[:at] + b"\xe9" + text[at:])
    line = text[:at].count(b"\n") + 1
    with pytest.raises(DataValidationError, match=f"byte 0xe9 at byte offset {at} \\(line {line}"):
        read_csv(lines)


def test_inputs_imports_no_framework():
    tree = ast.parse(Path(inputs.__file__).read_text(encoding="utf-8"))
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            roots.add(node.module.split(".")[0])
    assert roots - set(sys.stdlib_module_names) <= {"pandas", "pyarrow", "churnml"}


def test_the_cached_loader_refuses_a_fifo_without_blocking(tmp_path):
    from churnml import cache
    from churnml.config import DataConfig, SweepConfig

    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    config = SweepConfig(data=DataConfig(path=fifo))
    with pytest.raises(DataValidationError, match="is not a regular file"):
        cache.prepare_data(config, tmp_path / "cache")
