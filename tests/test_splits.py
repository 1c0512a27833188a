"""Tests for churnml.splits and churnml.digests: holdout, samples and data digests."""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from churnml.data import validate_frame
from churnml.digests import file_sha256, frame_digest
from churnml.schema import (
    DEFAULT_TARGET,
    DataValidationError,
)
from churnml.splits import split_holdout, stratified_sample
from churnml.synthetic import generate_bank_churn
from tests.bank_rows import (
    write,
)

# ------------------------------------------------------------------------------------------
# Splits and samples
# ------------------------------------------------------------------------------------------


def test_split_holdout_is_stratified() -> None:
    frame = generate_bank_churn(2_000, seed=8)
    train, test = split_holdout(frame, target=DEFAULT_TARGET, test_size=0.25, seed=3)
    assert (len(train), len(test)) == (1_500, 500)
    assert isinstance(train.index, pd.RangeIndex) and isinstance(test.index, pd.RangeIndex)
    assert sorted([*train["id"], *test["id"]]) == list(range(2_000))
    positives = frame[DEFAULT_TARGET].sum()
    assert abs(test[DEFAULT_TARGET].sum() - positives * 0.25) <= 1
    again, _ = split_holdout(frame, target=DEFAULT_TARGET, test_size=0.25, seed=3)
    pd.testing.assert_frame_equal(train, again)


def test_split_holdout_errors() -> None:
    frame = pd.DataFrame({"x": range(10), DEFAULT_TARGET: [1] + [0] * 9})
    with pytest.raises(DataValidationError, match=r"cannot split 10 rows.*'Exited'.*class 1: 1\)"):
        split_holdout(frame, target=DEFAULT_TARGET, test_size=0.2, seed=0)
    with pytest.raises(DataValidationError, match="target column 'y' not found"):
        split_holdout(frame, target="y", test_size=0.2, seed=0)
    with pytest.raises(ValueError, match="test_size must be between 0 and 1"):
        split_holdout(frame, target=DEFAULT_TARGET, test_size=1.5, seed=0)


def test_stratified_sample() -> None:
    frame = generate_bank_churn(3_000, seed=2)
    sample = stratified_sample(frame, target=DEFAULT_TARGET, n_rows=600, seed=1)
    assert len(sample) == 600
    assert isinstance(sample.index, pd.RangeIndex)
    assert sample["id"].is_unique and sample["id"].isin(frame["id"]).all()
    assert abs(sample[DEFAULT_TARGET].sum() - frame[DEFAULT_TARGET].mean() * 600) <= 1
    assert stratified_sample(frame, target=DEFAULT_TARGET, n_rows=3_000, seed=1) is frame


def test_stratified_sample_errors() -> None:
    frame = pd.DataFrame({"x": range(10), DEFAULT_TARGET: [0, 1, 2] + [0] * 7})
    with pytest.raises(DataValidationError, match="cannot draw a stratified sample of 2 rows"):
        stratified_sample(frame, target=DEFAULT_TARGET, n_rows=2, seed=0)
    with pytest.raises(ValueError, match="n_rows must be at least 1"):
        stratified_sample(frame, target=DEFAULT_TARGET, n_rows=0, seed=0)


# ------------------------------------------------------------------------------------------
# Digests
# ------------------------------------------------------------------------------------------


def test_frame_digest_is_stable() -> None:
    frame = validate_frame(generate_bank_churn(500, seed=6), source="generated")
    digest = frame_digest(frame)
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    assert frame_digest(frame.copy()) == digest
    assert frame_digest(frame.set_axis(range(100, 600)).reset_index(drop=True)) == digest
    assert frame_digest(frame.set_axis(range(100, 600))) == digest  # the index is ignored

    changed = frame.copy()
    changed.loc[0, "Age"] += 1
    assert frame_digest(changed) != digest
    assert frame_digest(frame.astype({"Tenure": "int64"})) != digest
    assert frame_digest(frame.rename(columns={"Age": "age"})) != digest
    assert frame_digest(frame.iloc[::-1]) != digest


def test_file_sha256(tmp_path: Path) -> None:
    payload = os.urandom(3 * (1 << 20) + 17)  # spans several read chunks
    path = write(tmp_path, payload, "blob.bin")
    assert file_sha256(path) == hashlib.sha256(payload).hexdigest()
    assert file_sha256(str(path)) == file_sha256(path)
    with pytest.raises(FileNotFoundError):
        file_sha256(tmp_path / "missing.bin")
