"""Registered versions through MLflow's own API: pyfunc gives P(churn) on raw rows of real files.

A model is fitted on a sample of the real data, registered by our registration code into the
test's local SQLite store, and read back only through ``mlflow.pyfunc`` / ``mlflow.sklearn``.
"""

from __future__ import annotations

import mlflow
import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
from mlflow.exceptions import MlflowException
from mlflow.types.schema import DataType
from sklearn.pipeline import Pipeline

from churnml.scoring import PROBABILITY_COLUMN, score_csv
from tests.registered import fit_small_model, register
from tracking import churn_pyfunc, versions
from tracking.model_files import ModelFileError
from tracking.store import connect

MODEL = "pyfunc-churn"
FILES = ("bank_churn_train.csv", "churn_modelling.csv")


@pytest.fixture(scope="module")
def champion(tmp_path_factory):
    """v1 of MODEL, fitted on 3,000 rows of the classic file, holding ``champion``."""
    from tests.conftest import SHARED_DATA

    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is not there")
    raw = pd.read_csv(SHARED_DATA / "churn_modelling.csv").sample(3000, random_state=0)
    client = connect()
    version = register(client, MODEL, fit_small_model(raw, trees=10))
    assert "champion" in version.aliases
    return client, version


def our_scores(client, version, data, tmp_path) -> np.ndarray:
    """P(churn) from batch scoring with the model loaded by our checked loader."""
    ref = versions.get_version(client, MODEL, version.version)
    loaded = versions.load_version(client, ref, workdir=tmp_path / "model")
    out = tmp_path / "scores.csv"
    score_csv(loaded.model, data, out, model_version=version.version)
    return pd.read_csv(out)[PROBABILITY_COLUMN].to_numpy()


@pytest.mark.parametrize("file_name", FILES)
def test_pyfunc_on_each_real_file_matches_our_scoring(champion, shared_data, tmp_path, file_name):
    client, version = champion
    frame = pd.read_csv(shared_data / file_name)  # as a user reads it: ints and floats
    assert (frame.dtypes == np.int64).any()
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    probabilities = np.asarray(model.predict(frame))
    assert probabilities.shape == (len(frame),)
    assert ((probabilities >= 0) & (probabilities <= 1)).all()
    expected = our_scores(client, version, shared_data / file_name, tmp_path)
    np.testing.assert_allclose(probabilities, expected, rtol=0, atol=1e-12)


def test_column_order_and_identifier_columns_do_not_matter(champion, shared_data):
    frame = pd.read_csv(shared_data / "churn_modelling.csv", nrows=200)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    full = np.asarray(model.predict(frame))
    shuffled = frame[list(reversed(frame.columns))]
    bare = frame.drop(columns=["RowNumber", "CustomerId", "Surname", "Exited"])
    as_floats = bare.astype({"CreditScore": float, "Age": float, "Tenure": float})
    for variant in (shuffled, bare, as_floats):
        np.testing.assert_array_equal(np.asarray(model.predict(variant)), full)


def test_a_missing_column_or_text_in_a_number_is_refused_by_name(champion, shared_data):
    frame = pd.read_csv(shared_data / "churn_modelling.csv", nrows=5)
    model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    with pytest.raises(MlflowException, match="Age"):
        model.predict(frame.drop(columns="Age"))
    with pytest.raises(MlflowException, match=r"'Balance' must be numeric.*'lots'"):
        model.predict(frame.astype({"Balance": object}).assign(Balance="lots"))


def test_signature_declares_raw_rows_and_a_probability(champion):
    info = mlflow.models.get_model_info(f"models:/{MODEL}@champion")
    inputs = {spec.name: spec for spec in info.signature.inputs.inputs}
    assert str(inputs["Age"].type) == "Any" and inputs["Age"].required
    assert inputs["Geography"].type == DataType.string
    assert not inputs["id"].required and not inputs["Exited"].required
    assert info.signature.outputs.input_names() == [PROBABILITY_COLUMN]
    pyfunc = info.flavors["python_function"]
    assert pyfunc["loader_module"] == "tracking.churn_pyfunc"
    assert info.flavors["sklearn"]["serialization_format"] == "skops"


def test_sklearn_flavor_still_gives_the_fitted_pipeline(champion, monkeypatch):
    # MLflow's own loader trusts the types listed in MLmodel: only with deserialization allowed.
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "true")
    pipeline = mlflow.sklearn.load_model(f"models:/{MODEL}@champion")
    assert isinstance(pipeline, Pipeline)
    assert list(pipeline.named_steps) == ["preprocess", "select", "forest"]


def test_pyfunc_loads_through_our_allowlist_not_the_mlmodel_list(champion, tmp_path):
    """A file naming a type outside our in-code allowlist is refused, whatever MLmodel says."""
    import os

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    crafted = Pipeline([("run", FunctionTransformer(func=os.system))])
    folder = tmp_path / "model"
    mlflow.sklearn.save_model(  # its MLmodel lists posix.system as trusted
        crafted,
        folder,
        serialization_format="skops",
        skops_trusted_types=sio.get_untrusted_types(data=sio.dumps(crafted)),
    )
    with pytest.raises(ModelFileError, match=r"outside our allowlist: posix\.system"):
        churn_pyfunc._load_pyfunc(str(folder / "model.skops"))


def test_a_model_our_loader_would_refuse_is_not_logged(tmp_path):
    """Saving for MLflow checks the skops file against our allowlist, as loading would (MLflow's
    own check of the input example, which loads the model back, is not run)."""
    import os

    from sklearn.preprocessing import FunctionTransformer

    crafted = Pipeline([("run", FunctionTransformer(func=os.system))])
    with pytest.raises(MlflowException, match=r"untrusted types.*posix\.system"):
        churn_pyfunc.save_model(crafted, str(tmp_path / "model"))


def test_pyfunc_refuses_a_file_changed_after_logging(champion, tmp_path):
    _, version = champion
    local = mlflow.artifacts.download_artifacts(
        f"models:/{MODEL}/{version.version}", dst_path=str(tmp_path)
    )
    with open(f"{local}/model.skops", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelFileError, match="does not match"):
        mlflow.pyfunc.load_model(local)
