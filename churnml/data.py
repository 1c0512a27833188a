"""Validate a raw bank-churn frame and return the clean frame every later step uses.

A pure module: it imports pandas, numpy and :mod:`churnml.schema` only (never Prefect or MLflow),
so every function here can be called and tested on its own. Files are read by
:mod:`churnml.reading`.

The clean frame is ``FEATURE_COLUMNS`` in a fixed order (numeric columns ``float64``, categorical
columns ``object`` holding ``str`` or NaN) followed by the target as ``int64`` 0/1.

Every problem with the input raises :class:`~churnml.schema.DataValidationError` whose message is
one line naming the source, the column and/or the value, and saying what to fix.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnml.schema import (
    DEFAULT_TARGET,
    FEATURE_COLUMNS,
    DataValidationError,
    check_feature_columns,
    clean_target,
    near_matches,
    to_features,
)


def validate_frame(
    raw: pd.DataFrame, *, source: str, target: str = DEFAULT_TARGET, cv_folds: int = 5
) -> pd.DataFrame:
    """Check a raw frame's schema and values and return the clean frame.

    Isolated missing values in feature columns are allowed (the model imputes them); a feature
    column with no values at all is not. Errors name 1-based data rows and the matching file
    line (data row + 1, assuming one header line and no blank lines before the row).

    Args:
        raw: A frame as returned by :func:`churnml.reading.read_csv` (any extra columns are
            dropped).
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
