"""The churn model: one scikit-learn Pipeline from raw rows to a churn probability.

Preprocessing, feature selection and the forest live in one Pipeline so that cross-validation
fits every step on training folds only (no leakage) and the saved model takes raw rows.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.feature_selection import SelectKBest, f_classif
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from churnml.schema import CATEGORICAL_COLUMNS, NUMERIC_COLUMNS

#: Hyperparameters that go to the forest; everything else in a params dict is ignored by it.
FOREST_PARAMS = (
    "n_estimators",
    "max_depth",
    "min_samples_split",
    "min_samples_leaf",
    "max_features",
    "class_weight",
    "criterion",
    "max_samples",
)


def build_preprocessor() -> ColumnTransformer:
    """Impute numeric columns; one-hot encode categories, ignoring unseen ones at predict time.

    Columns are picked by name, so identifier or extra columns in raw rows are dropped.
    """
    numeric = SimpleImputer(strategy="median")
    categorical = Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            (
                "encode",
                OneHotEncoder(handle_unknown="ignore", sparse_output=False, dtype=np.float64),
            ),
        ]
    )
    return ColumnTransformer(
        [
            ("numeric", numeric, list(NUMERIC_COLUMNS)),
            ("categorical", categorical, list(CATEGORICAL_COLUMNS)),
        ],
        remainder="drop",
        verbose_feature_names_out=False,
    )


def encoded_feature_names(features: pd.DataFrame) -> list[str]:
    """Names of the encoded features the preprocessor makes from these rows (k's upper bound)."""
    return list(build_preprocessor().fit(features).get_feature_names_out())


def build_pipeline(params: dict[str, Any], *, seed: int, n_jobs: int = 1) -> Pipeline:
    """An unfitted pipeline: preprocess -> SelectKBest(k) -> RandomForestClassifier.

    Args:
        params: ``k`` plus forest hyperparameters (see :data:`FOREST_PARAMS`).
        seed: random_state of the forest.
        n_jobs: threads of the forest; 1 when trials already run in parallel.
    """
    forest_params = {name: params[name] for name in FOREST_PARAMS if name in params}
    if forest_params.get("max_samples") is not None:
        forest_params["bootstrap"] = True
    return Pipeline(
        [
            ("preprocess", build_preprocessor()),
            ("select", SelectKBest(score_func=f_classif, k=params["k"])),
            (
                "forest",
                RandomForestClassifier(random_state=seed, n_jobs=n_jobs, **forest_params),
            ),
        ]
    )


def fit_quietly(pipeline: Pipeline, features: pd.DataFrame, target: pd.Series) -> Pipeline:
    """Fit, silencing f_classif's warning about constant one-hot columns in small folds."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*constant.*", category=UserWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning, module="sklearn")
        return pipeline.fit(features, target)


def selected_feature_names(pipeline: Pipeline) -> list[str]:
    """The encoded features SelectKBest kept, under their real column names."""
    names = pipeline.named_steps["preprocess"].get_feature_names_out()
    return list(names[pipeline.named_steps["select"].get_support()])


def feature_importances(pipeline: Pipeline) -> dict[str, float]:
    """Forest importances of the selected features, largest first."""
    importances = pipeline.named_steps["forest"].feature_importances_
    pairs = zip(selected_feature_names(pipeline), importances, strict=True)
    return dict(sorted(((name, float(value)) for name, value in pairs), key=lambda p: -p[1]))
