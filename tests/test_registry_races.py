"""Two sweeps finishing (or starting) at once on one MLflow server.

MLflow's SQL stores set an alias and record a dataset with a select-then-insert and create an
experiment after a lookup, so the second of two concurrent writers gets a unique-key error.
tests/test_team.py shows the race end to end (two workers, one PostgreSQL-backed server); these
pin the handling.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import RESOURCE_ALREADY_EXISTS

from tests.servers import (
    PostgresUnavailableError,
    missing_service,
    postgres_database,
    postgres_url,
)
from tracking import registry, runs, store

CLASH = (
    "BAD_REQUEST: (psycopg.errors.UniqueViolation) duplicate key value violates unique "
    'constraint "registered_model_alias_pk"'
)


class AliasClient:
    """Records alias calls; the first ``clashes`` of them fail as the losing writer does."""

    def __init__(self, clashes: int, message: str = CLASH) -> None:
        self.clashes = clashes
        self.message = message
        self.calls: list[tuple[str, str, str]] = []

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self.calls.append((name, alias, version))
        if len(self.calls) <= self.clashes:
            raise MlflowException(self.message)


def test_an_alias_clash_with_a_concurrent_writer_is_retried():
    client = AliasClient(clashes=2)
    registry.set_alias(client, "churn", "challenger", 3)
    assert client.calls == [("churn", "challenger", "3")] * 3


def test_an_sqlite_alias_clash_is_retried_too():
    client = AliasClient(clashes=1, message="(sqlite3.IntegrityError) UNIQUE constraint failed")
    registry.set_alias(client, "churn", "champion", "1")
    assert len(client.calls) == 2


def test_other_alias_errors_are_not_retried():
    client = AliasClient(clashes=1, message="RESOURCE_DOES_NOT_EXIST: version 9 not found")
    with pytest.raises(MlflowException, match="version 9 not found"):
        registry.set_alias(client, "churn", "champion", "9")
    assert len(client.calls) == 1


def test_a_clash_that_never_clears_is_raised():
    client = AliasClient(clashes=100)
    with pytest.raises(MlflowException, match="duplicate key"):
        registry.set_alias(client, "churn", "champion", "1")
    assert len(client.calls) == 5


class ExperimentClient:
    """An experiment another sweep creates between our lookup and our create."""

    class Found:
        experiment_id = "42"
        lifecycle_stage = "active"

    def __init__(self) -> None:
        self.lookups = 0

    def get_experiment_by_name(self, name: str):
        self.lookups += 1
        return None if self.lookups == 1 else self.Found()

    def create_experiment(self, name: str, artifact_location: str | None = None) -> str:
        raise MlflowException(
            f"Experiment(name={name}) already exists.", error_code=RESOURCE_ALREADY_EXISTS
        )


def test_an_experiment_created_meanwhile_by_another_sweep_is_used():
    target = store.TrackingTarget(
        tracking_uri="http://127.0.0.1:5000",
        registry_uri="http://127.0.0.1:5000",
        artifact_root=None,
    )
    assert store.ensure_experiment(ExperimentClient(), "team", target) == "42"


@pytest.fixture
def postgres_store() -> Iterator[str]:
    """An MLflow tracking store on a fresh PostgreSQL database (dropped after)."""
    try:
        with postgres_database("datasetrace") as database:
            yield postgres_url(database, password=False)
    except PostgresUnavailableError as error:
        missing_service(str(error))


def record_at_once(client: MlflowClient, run_ids: list[str], frame, digest: str) -> list:
    """Each run records the same data as its training input, all released at one instant."""
    barrier = threading.Barrier(len(run_ids))
    errors: list[Exception] = []

    def record(run_id: str) -> None:
        barrier.wait()
        try:
            runs.log_training_data(
                client, run_id, frame, source=None, name="d", digest=digest, target="Exited"
            )
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=record, args=(run_id,)) for run_id in run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_two_sweeps_recording_the_same_data_at_once_on_postgres_both_succeed(postgres_store):
    """The race CI met (two team workers, one experiment, the same data): MLflow inserts the
    experiment's dataset row after a lookup, so without a retry nearly every pair clashes."""
    frame = pd.DataFrame({"Age": np.arange(60) % 50 + 20, "Exited": np.arange(60) % 2})
    client = MlflowClient(postgres_store)
    experiment = client.create_experiment("team")
    for round_ in range(5):
        pair = [client.create_run(experiment).info.run_id for _ in range(2)]
        assert record_at_once(client, pair, frame, f"digest-{round_}") == []
        for run_id in pair:
            (recorded,) = client.get_run(run_id).inputs.dataset_inputs
            assert recorded.dataset.digest == f"digest-{round_}"
