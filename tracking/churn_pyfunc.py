"""The churn model as MLflow's ``python_function``: raw rows in, one churn probability out.

:func:`log_churn_model` logs the fitted pipeline as an ordinary sklearn-flavor MLflow model
(skops format, so ``mlflow.sklearn.load_model`` still returns the fitted ``Pipeline``), with two
differences in its ``python_function`` flavor, which every MLflow consumer uses
(``mlflow.pyfunc.load_model``, ``mlflow models serve``, ``spark_udf``):

- **It loads through this module**, not ``mlflow.sklearn``. MLflow's skops loader trusts the
  types listed in the model's own ``MLmodel`` file (whoever can write the file can widen the
  list); ours checks the skops file against :data:`tracking.model_files.TRUSTED_TYPES`, the
  allowlist in our code, and against the sha256 written into ``MLmodel`` when it was logged.
  (That hash catches a corrupted or swapped file, not someone who rewrites both files;
  ``sweepflow serve`` checks the hash the registry recorded instead.)
- **``predict`` returns the probability of churn** (class 1), one float per row, computed
  exactly as batch scoring computes it (:func:`churnml.schema.to_features`): raw rows as real
  files hold them, numbers as integers or floats, identifier and label columns present or not.

The signature says the same thing to MLflow: the eight numeric columns are typed ``any``
(MLflow refuses int64 for a ``double`` column and float64 for a ``long`` one, and the two Kaggle
files disagree, e.g. ``Age``), the two categorical ones ``string``, and the identifier and label
columns are optional. Values are checked by our cleaning, which names the column and the value.

Loading needs this package importable (``--env-manager local`` in our environment).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import Model, ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types.schema import AnyType, ColSpec, DataType, Schema

from churnml.digests import file_sha256
from churnml.schema import (
    CATEGORICAL_COLUMNS,
    DEFAULT_TARGET,
    NUMERIC_COLUMNS,
    PASSTHROUGH_COLUMNS,
    DataValidationError,
    to_features,
)
from churnml.scoring import PROBABILITY_COLUMN, predict_churn
from tracking.model_files import TRUSTED_TYPES, load_model_file

#: Key of the pyfunc flavor in ``MLmodel`` holding the sha256 of the skops file.
CONF_SHA256 = "skops_sha256"
#: Columns real files hold besides the features: accepted, ignored.
OPTIONAL_COLUMNS = (*PASSTHROUGH_COLUMNS, DEFAULT_TARGET)
_SKOPS_FILE = "model.skops"


def churn_signature() -> ModelSignature:
    """Raw bank-churn rows in (numbers of any numeric type), ``churn_probability`` out."""
    inputs = [ColSpec(AnyType(), name) for name in NUMERIC_COLUMNS]
    inputs += [ColSpec(DataType.string, name) for name in CATEGORICAL_COLUMNS]
    inputs += [ColSpec(AnyType(), name, required=False) for name in OPTIONAL_COLUMNS]
    inputs.append(ColSpec(DataType.string, "Surname", required=False))
    return ModelSignature(
        inputs=Schema(inputs), outputs=Schema([ColSpec(DataType.double, PROBABILITY_COLUMN)])
    )


def save_model(sk_model: Any, path: str, mlflow_model: Model | None = None, **kwargs: Any) -> None:
    """Save like ``mlflow.sklearn.save_model`` (skops), then point pyfunc at this module.

    Called by ``mlflow.models.Model.log`` (this module is the "flavor" it saves with).

    Raises:
        MlflowException: the skops file holds a type outside our allowlist (MLflow checks the
            file it wrote against the trusted types it is given, ours): our loader would refuse
            it, so nothing is logged.
    """
    for fixed in ("validate_serving_input", "serialization_format", "skops_trusted_types"):
        kwargs.pop(fixed, None)
    mlflow_model = mlflow_model or Model()
    mlflow.sklearn.save_model(
        sk_model,
        path,
        mlflow_model=mlflow_model,
        serialization_format="skops",
        skops_trusted_types=list(TRUSTED_TYPES),
        **kwargs,
    )
    conf = mlflow_model.flavors["python_function"]
    conf["loader_module"] = __name__
    conf["predict_fn"] = "predict"
    conf[CONF_SHA256] = file_sha256(Path(path) / conf["model_path"])
    mlflow_model.save(os.path.join(path, "MLmodel"))


def log_churn_model(model: Any, *, name: str, run_id: str, **kwargs: Any) -> Any:
    """Log ``model`` under ``run_id`` as described in the module docstring; MLflow's ModelInfo.

    The logged model is created in the run's own experiment first: left to ``Model.log`` it
    lands in the default experiment "0" (whose artifact folder is relative to the working
    directory), not beside the sweep that made it.
    """
    import sys

    from mlflow import MlflowClient

    client = MlflowClient()
    run = client.get_run(run_id)
    logged = client.create_logged_model(
        experiment_id=run.info.experiment_id,
        name=name,
        source_run_id=run_id,
        params={key: str(value) for key, value in run.data.params.items()},
    )
    return Model.log(
        artifact_path=None,
        name=name,
        flavor=sys.modules[__name__],
        flavor_name="sklearn",
        run_id=run_id,
        model_id=logged.model_id,
        sk_model=model,
        serialization_format="skops",
        # MLflow would load the saved model back to predict on the input example, and only
        # warn when that fails: 0.4 s at 20k rows, and a second copy of the forest in memory
        # at the end of the sweep. save_model has already refused a file outside our allowlist.
        validate_serving_input=False,
        **kwargs,
    )


class ChurnProbability:
    """What ``mlflow.pyfunc.load_model`` wraps: ``predict`` gives P(churn) per row."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def get_raw_model(self) -> Any:
        """The fitted scikit-learn pipeline."""
        return self.model

    def predict(self, data: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        """The churn probability of each row of ``data`` (a frame of raw rows).

        Raises:
            MlflowException: (INVALID_PARAMETER_VALUE, a 400 from ``mlflow models serve``) a
                value our cleaning refuses, e.g. text in a numeric column; it names both.
        """
        frame = data if isinstance(data, pd.DataFrame) else pd.DataFrame(data)
        try:
            features = to_features(frame, source="input", line_offset=None)
        except DataValidationError as error:
            raise MlflowException(str(error), error_code=INVALID_PARAMETER_VALUE) from None
        return predict_churn(self.model, features)


def _load_pyfunc(path: str) -> ChurnProbability:
    """MLflow's entry point: check and load the skops file with our allowlist, then wrap it."""
    model_file = Path(path)
    folder = model_file.parent if model_file.is_file() else model_file
    if not model_file.is_file():
        model_file = folder / _SKOPS_FILE
    conf = Model.load(str(folder / "MLmodel")).flavors.get("python_function", {})
    return ChurnProbability(load_model_file(model_file, expected_sha256=conf.get(CONF_SHA256)))
