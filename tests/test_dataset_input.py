"""The dataset input: schema from a sample (fast), the same as MLflow infers from all rows."""

from __future__ import annotations

import json
import warnings

import numpy as np
from mlflow.data import from_pandas

from churnml.data import validate_frame
from churnml.synthetic import generate_bank_churn
from tracking import runs
from tracking.store import TrackingTarget, connect


def test_the_logged_schema_matches_full_inference_and_counts_every_row(tmp_path):
    frame = validate_frame(generate_bank_churn(3000, seed=5), source="test")
    frame.loc[2500, "Geography"] = np.nan  # a missing value beyond the sample's first rows
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = connect(TrackingTarget(uri, uri, (tmp_path / "artifacts").as_uri()))
    run_id = client.create_run(client.create_experiment("schema")).info.run_id

    runs.log_training_data(
        client, run_id, frame, source=None, name="data", digest="d1", target="Exited"
    )

    (logged,) = client.get_run(run_id).inputs.dataset_inputs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = from_pandas(frame, source="x", targets="Exited").schema
    assert json.loads(logged.dataset.schema)["mlflow_colspec"] == full.to_dict()
    assert json.loads(logged.dataset.profile)["num_rows"] == len(frame)
    assert logged.dataset.digest == "d1"


def test_the_parts_of_the_data_are_recorded_as_one_dataset_without_joining_them(tmp_path):
    frame = validate_frame(generate_bank_churn(3000, seed=6), source="test")
    frame.loc[2800, "Geography"] = np.nan  # in the second part, beyond its first 1000 rows
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = connect(TrackingTarget(uri, uri, (tmp_path / "artifacts").as_uri()))
    experiment = client.create_experiment("parts")
    whole, split = (client.create_run(experiment).info.run_id for _ in range(2))

    runs.log_training_data(
        client, whole, frame, source=None, name="data", digest="d2", target="Exited"
    )
    runs.log_training_data(
        client,
        split,
        (frame.iloc[:1000], frame.iloc[1000:]),
        source=None,
        name="data",
        digest="d2",
        target="Exited",
    )

    (one,) = client.get_run(whole).inputs.dataset_inputs
    (two,) = client.get_run(split).inputs.dataset_inputs
    assert json.loads(two.dataset.profile) == {"num_rows": 3000, "num_elements": frame.size}
    assert two.dataset.schema == one.dataset.schema
    geography = next(
        column
        for column in json.loads(two.dataset.schema)["mlflow_colspec"]
        if column["name"] == "Geography"
    )
    assert geography["required"] is False  # its one missing value was seen
