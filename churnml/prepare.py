"""From a validated frame to what the search needs: a holdout split and the feature count."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from churnml.config import ConfigError, DataConfig, SweepConfig
from churnml.data import validate_frame
from churnml.model import encoded_feature_names
from churnml.reading import read_csv
from churnml.schema import DataValidationError
from churnml.splits import split_holdout, stratified_sample
from churnml.synthetic import generate_bank_churn

BUILT_IN_SOURCE = "built-in synthetic bank-churn data"


def describe_source(data: DataConfig) -> str:
    """Human-readable origin of the rows."""
    if data.path is None:
        return f"{BUILT_IN_SOURCE} ({data.synthetic_rows} rows, seed {data.synthetic_seed})"
    return str(data.path)


def load_raw(data: DataConfig, *, max_bytes: int | None = None) -> pd.DataFrame:
    """Read the data file (file-level checks) or generate the built-in data.

    Args:
        data: Where the rows come from (CSV, compressed CSV or Parquet; see
            :func:`churnml.reading.read_csv`).
        max_bytes: Largest data accepted, in decompressed bytes; None: the default of
            :func:`churnml.inputs.default_max_data_bytes` (``SWEEPFLOW_MAX_DATA_BYTES``, parsed
            by :func:`churnml.inputs.max_data_bytes`, is passed here by the caller).
    """
    if data.path is None:
        return generate_bank_churn(data.synthetic_rows, seed=data.synthetic_seed)
    return read_csv(Path(data.path), target=data.target, max_bytes=max_bytes)


def validate(raw: pd.DataFrame, config: SweepConfig) -> pd.DataFrame:
    """Schema and value checks; returns the clean frame (features then target)."""
    return validate_frame(
        raw,
        source=describe_source(config.data),
        target=config.data.target,
        cv_folds=config.cv_folds,
    )


@dataclass(frozen=True)
class PreparedData:
    """The split the search and the final model use, plus facts about it."""

    train: pd.DataFrame
    test: pd.DataFrame
    target: str
    encoded_features: list[str]
    digest: str
    source: str
    path: str | None
    rows: int
    churn_rate: float
    feature_columns: list[str] = field(default_factory=list)

    @property
    def x_train(self) -> pd.DataFrame:
        return self.train[self.feature_columns]

    @property
    def y_train(self) -> pd.Series:
        return self.train[self.target]

    @property
    def x_test(self) -> pd.DataFrame:
        return self.test[self.feature_columns]

    @property
    def y_test(self) -> pd.Series:
        return self.test[self.target]


def split(clean: pd.DataFrame, config: SweepConfig, *, digest: str) -> PreparedData:
    """Sample (if asked), set the stratified holdout aside, and check k against the features.

    Raises:
        ConfigError: ``search_space.k_min``/``k_max`` exceed the number of encoded features.
        DataValidationError: Too few rows of a class for the holdout or the CV folds (see
            :func:`check_enough_rows`).
    """
    target = config.data.target
    if config.data.sample_rows is not None:
        clean = stratified_sample(
            clean, target=target, n_rows=config.data.sample_rows, seed=config.seed
        )
    train, test = split_holdout(clean, target=target, test_size=config.test_size, seed=config.seed)
    check_enough_rows(train[target], test[target], config)
    feature_columns = [c for c in clean.columns if c != target]
    encoded = encoded_feature_names(train[feature_columns])
    check_search_space(encoded, config)
    return PreparedData(
        train=train,
        test=test,
        target=target,
        encoded_features=encoded,
        digest=digest,
        source=describe_source(config.data),
        path=str(Path(config.data.path).resolve()) if config.data.path else None,
        rows=len(clean),
        churn_rate=float(clean[target].mean()),
        feature_columns=feature_columns,
    )


def check_search_space(encoded: list[str], config: SweepConfig) -> None:
    """Check ``search_space.k_min``/``k_max`` against the data's encoded features.

    Raises:
        ConfigError: a bound exceeds the number of encoded features.
    """
    space = config.search_space
    for key, value in (("k_max", space.k_max), ("k_min", space.k_min)):
        if value is not None and value > len(encoded):
            raise ConfigError(
                f"config.search_space.{key}: {value} is above the {len(encoded)} encoded "
                f"features of this data ({', '.join(encoded)}); use at most {len(encoded)}"
            )


def check_enough_rows(y_train: pd.Series, y_test: pd.Series, config: SweepConfig) -> None:
    """Refuse data too small to judge a model.

    The rule: every class has at least ``config.min_class_rows`` rows in the holdout and in the
    validation part of every one of the ``config.cv_folds`` stratified CV folds (a class of
    ``n`` training rows gives each fold at least ``n // cv_folds``).

    Raises:
        DataValidationError: One line naming the rule, the numbers found and the setting.
    """
    floor = config.min_class_rows
    holdout = np.bincount(np.asarray(y_test, dtype=np.int64), minlength=2)
    folds = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=2) // config.cv_folds
    short = [
        f"class {value}: {int(holdout[value])} in the holdout, at least {int(folds[value])} "
        f"per CV fold"
        for value in range(len(holdout))
        if holdout[value] < floor or folds[value] < floor
    ]
    if short:
        rows = len(y_train) + len(y_test)
        raise DataValidationError(
            f"{describe_source(config.data)}: too few rows to judge a model ({rows:,} rows used; "
            f"{'; '.join(short)}); the rule is at least min_class_rows={floor} rows of each class "
            f"in the holdout (test_size={config.test_size}) and in each of the "
            f"{config.cv_folds} CV folds; add rows, or lower min_class_rows on purpose"
        )
