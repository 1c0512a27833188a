"""Register small churn models the way a sweep does, serve them, and send them traffic."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
from mlflow import MlflowClient

from churnml.data import validate_frame
from churnml.model import build_pipeline, fit_quietly
from churnml.schema import DEFAULT_TARGET
from churnml.synthetic import generate_bank_churn
from tests.servers import REPO, free_port, start, stop, wait_for_http
from tracking import registry, runs
from tracking.model_files import save_model_file
from tracking.store import ensure_experiment, resolve_target


def fit_small_model(raw: pd.DataFrame | None = None, *, seed: int = 0, trees: int = 8) -> Any:
    """A fitted pipeline on ``raw`` rows (default: 600 synthetic ones)."""
    raw = generate_bank_churn(600, seed=seed) if raw is None else raw
    clean = validate_frame(raw, source="test", cv_folds=2)
    features = clean.drop(columns=DEFAULT_TARGET)
    params = {"k": 8, "n_estimators": trees, "max_depth": 5}
    return fit_quietly(build_pipeline(params, seed=seed), features, clean[DEFAULT_TARGET])


def register(
    client: MlflowClient,
    name: str,
    model: Any,
    *,
    experiment: str = "serving-tests",
    standalone: Path | None = None,
    example: pd.DataFrame | None = None,
) -> registry.RegisteredVersion:
    """Log and register ``model`` under a fresh parent run, as the sweep's final steps do.

    With ``standalone``, also write the standalone skops file and tag the version with it.
    """
    experiment_id = ensure_experiment(client, experiment, resolve_target())
    run_id = runs.start_sweep_run(client, experiment_id, run_name="ad-hoc", params={}, tags={})
    if example is None:
        example = generate_bank_churn(5, seed=99).drop(columns=DEFAULT_TARGET)
    version = registry.register_best_model(
        client, run_id=run_id, model=model, model_name=name, input_example=example, tags={}
    )
    if standalone is not None:
        sha256 = save_model_file(model, standalone)
        registry.tag_version(
            client, name, version.version, {"skops_sha256": sha256, "skops_path": standalone}
        )
    return version


@contextlib.contextmanager
def sweepflow_serve(log: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``python -m serving`` on a free port of 127.0.0.1; yields its base URL; stops it."""
    port = free_port()
    command = [sys.executable, "-m", "serving", "--port", str(port), *args]
    process = start(command, env=env or dict(os.environ), log=log, cwd=REPO)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout=60, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)


def records(rows: int, seed: int = 5) -> list[dict]:
    frame = generate_bank_churn(rows, seed=seed).drop(columns=DEFAULT_TARGET)
    return json.loads(frame.to_json(orient="records"))


class Traffic:
    """Clients posting small requests back to back, recording (status, version) of each."""

    def __init__(self, url: str, clients: int = 2) -> None:
        self.url = url
        self.seen: list[tuple[float, int, str | None]] = []
        #: Each client's versions in the order its requests (one after another) were answered.
        self.by_client: list[list[str | None]] = [[] for _ in range(clients)]
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(answers,), daemon=True)
            for answers in self.by_client
        ]
        self._body = records(5)

    def _run(self, answers: list[str | None]) -> None:
        with httpx.Client(timeout=30) as client:
            while not self._stop.is_set():
                sent = time.monotonic()
                try:
                    answer = client.post(f"{self.url}/predict", json=self._body)
                    version = answer.json().get("model_version")
                    self.seen.append((sent, answer.status_code, version))
                    answers.append(version)
                except httpx.HTTPError as error:
                    self.seen.append((sent, 0, repr(error)))

    def wait_for_version(self, version: str, timeout: float) -> float:
        """Seconds until a request sent after this call answered with ``version`` (an answer
        to a request sent before, say before the alias moved, does not count)."""
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if any(v == version and t > started for t, _, v in list(self.seen)):
                return time.monotonic() - started
            time.sleep(0.05)
        raise TimeoutError(f"no answer from v{version} within {timeout} s")

    def version_changes(self) -> list[str]:
        """Each client's versions in the order it saw them, repeats folded: "121" is a client
        that saw v1, then v2, then v1 again."""
        return [
            "".join(str(v) for i, v in enumerate(answers) if i == 0 or v != answers[i - 1])
            for answers in self.by_client
        ]

    def __enter__(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)
