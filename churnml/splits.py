"""Stratified splits and samples of a frame, with one-line errors when a class is too small.

A pure module (pandas and scikit-learn).
"""

from __future__ import annotations

import pandas as pd
from sklearn.model_selection import train_test_split

from churnml.schema import DataValidationError, one_line


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
    train, test = _stratified(
        frame,
        target,
        seed,
        f"split {len(frame)} rows with a stratified {test_size:.0%} hold-out",
        "use more rows or another test_size",
        test_size=test_size,
    )
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
    sample, _ = _stratified(
        frame,
        target,
        seed,
        f"draw a stratified sample of {n_rows} rows",
        "sample more rows",
        train_size=n_rows,
    )
    return sample.reset_index(drop=True)


def _stratified(
    frame: pd.DataFrame, target: str, seed: int, what: str, fix: str, **size: float
) -> list[pd.DataFrame]:
    """``train_test_split`` stratified on ``target``; a class too small for it is one line."""
    try:
        return train_test_split(frame, random_state=seed, stratify=frame[target], **size)
    except ValueError as error:
        raise DataValidationError(
            f"cannot {what} on {target!r} ({_class_counts(frame[target])}): "
            f"{one_line(error)}; {fix}"
        ) from None


def _require_target(frame: pd.DataFrame, target: str) -> None:
    if target not in frame.columns:
        raise DataValidationError(
            f"target column {target!r} not found; the columns are "
            f"{', '.join(map(str, frame.columns))}"
        )


def _class_counts(values: pd.Series) -> str:
    counts = values.value_counts(dropna=False).sort_index()
    return ", ".join(f"class {key}: {count}" for key, count in counts.items())
