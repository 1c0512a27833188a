"""Nothing is created on refusal, proven end to end.

Every case of the bad-input matrix runs through the real command line (``sweepflow sweep``) and
through the flow itself, as a deployment run calls it (the config as its parameter). Then the
stores are compared with what they held before: no new MLflow run, no Optuna trial or study, no
model version, no alias moved, no cache entry, no file written. The command line exits 2 with
one line.

The stores are not empty to begin with: one real sweep has written a run, a champion, a study
and a cache entry, so a refusal that touched any of them would show.
"""

from __future__ import annotations

import bz2
import gzip
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import optuna
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow.entities import ViewType
from typer.testing import CliRunner

from churnml.synthetic import generate_bank_churn
from cli.main import app
from sweepflow import settings
from tracking.store import resolve_target

runner = CliRunner()
ROWS = 400


def good(tmp: Path) -> pd.DataFrame:
    return generate_bank_churn(ROWS, seed=5)


def csv(tmp: Path, name: str, frame: pd.DataFrame, **options) -> Path:
    path = tmp / name
    frame.to_csv(path, index=False, **options)
    return path


def text(tmp: Path, name: str, content: str | bytes) -> Path:
    path = tmp / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


def _with(frame: pd.DataFrame, column: str, values) -> pd.DataFrame:
    changed = frame.copy()
    changed[column] = values
    return changed


def _symlink_loop(tmp: Path) -> Path:
    (tmp / "a.csv").symlink_to(tmp / "b.csv")
    (tmp / "b.csv").symlink_to(tmp / "a.csv")
    return tmp / "a.csv"


def _zip_of_two(tmp: Path) -> Path:
    path = tmp / "two.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("a.csv", good(tmp).to_csv(index=False))
        archive.writestr("b.csv", good(tmp).to_csv(index=False))
    return path


def _workbook(tmp: Path) -> Path:
    path = tmp / "churn.xlsx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return path


#: (case, a function of a temporary folder giving the --data file, fragments of the message).
DATA_CASES: list[tuple[str, Callable[[Path], Path], tuple[str, ...]]] = [
    ("missing file", lambda t: t / "nope.csv", ("nope.csv",)),
    ("empty file", lambda t: text(t, "empty.csv", ""), ("empty.csv", "empty")),
    ("header only", lambda t: text(t, "header.csv", ",".join(good(t).columns) + "\n"), ()),
    (
        "ragged row",
        lambda t: text(t, "ragged.csv", good(t).to_csv(index=False) + "1,2,3\n"),
        ("ragged.csv",),
    ),
    ("wrong delimiter", lambda t: csv(t, "semi.csv", good(t), sep=";"), ("semi.csv",)),
    ("missing target", lambda t: csv(t, "nt.csv", good(t).drop(columns="Exited")), ("Exited",)),
    (
        "non-binary target",
        lambda t: csv(t, "nb.csv", _with(good(t), "Exited", range(ROWS))),
        ("Exited",),
    ),
    (
        "one class",
        lambda t: csv(t, "one.csv", _with(good(t), "Exited", 0)),
        ("Exited",),
    ),
    (
        "text in a numeric column",
        lambda t: csv(t, "text.csv", _with(good(t), "Age", ["forty"] * ROWS)),
        ("Age",),
    ),
    (
        "an all-empty column",
        lambda t: csv(t, "blank.csv", _with(good(t), "Balance", [None] * ROWS)),
        ("Balance",),
    ),
    (
        "too small to judge a model",
        lambda t: csv(t, "tiny.csv", generate_bank_churn(30, seed=1)),
        ("min_class_rows",),
    ),
    ("not UTF-8", lambda t: text(t, "latin.csv", "Surname\n\xe9\xe8\n".encode("latin-1")), ()),
    ("a directory", lambda t: (t / "folder.csv").mkdir() or t / "folder.csv", ("folder.csv",)),
    ("a symlink loop", _symlink_loop, ("a.csv",)),
    ("a workbook", _workbook, ("churn.xlsx",)),
    ("a PDF", lambda t: text(t, "report.csv", b"%PDF-1.7\n" + b"\0" * 64), ("PDF",)),
    (
        "an image",
        lambda t: text(t, "picture.csv", b"\x89PNG\r\n\x1a\n" + b"\0" * 64),
        ("PNG",),
    ),
    (
        "a pickle",
        lambda t: text(t, "frame.pkl", pickle.dumps({"a": 1}, protocol=4)),
        ("pickle",),
    ),
    (
        "a gzip of something else",
        lambda t: text(t, "bad.csv.gz", gzip.compress(b"\x89PNG\r\n\x1a\n" + b"\0" * 64)),
        ("bad.csv.gz",),
    ),
    ("a zip of two files", _zip_of_two, ("two.zip",)),
    (
        "a truncated bz2",
        lambda t: text(t, "cut.csv.bz2", bz2.compress(good(t).to_csv(index=False).encode())[:40]),
        ("cut.csv.bz2",),
    ),
]

#: (case, config settings beside a good file, fragments of the message).
CONFIG_CASES: list[tuple[str, dict, tuple[str, ...]]] = [
    ("negative trials", {"n_trials": -3}, ("n_trials",)),
    ("an unknown key", {"paralel": 2}, ("paralel",)),
    ("k above the feature count", {"search_space": {"k_min": 99, "k_max": 99}}, ("k_max",)),
]


@pytest.fixture(scope="module")
def stores(prefect_harness, tmp_path_factory) -> Path:
    """Stores that already hold one sweep: a run, a champion, a study and a cache entry."""
    from churnml.config import SweepConfig
    from flows.sweep.flow import sweep

    folder = tmp_path_factory.mktemp("refusals")
    data = csv(folder, "seed.csv", generate_bank_churn(ROWS, seed=3))
    sweep(
        config=SweepConfig(
            data={"path": str(data)},
            n_trials=2,
            parallel=1,
            cv_folds=2,
            experiment_name="refusals",
            model_name="refusals-model",
        )
    )
    seeded = snapshot()
    assert seeded["runs"] and seeded["trials"], "the seeding sweep wrote nothing to compare"
    assert ("refusals-model", 1, ("challenger", "champion")) in seeded["versions"], seeded
    assert any(name.startswith("cache/") for name in seeded["files"]), seeded["files"]
    return data


def snapshot() -> dict[str, object]:
    """Everything a sweep could have created or moved, in every store."""
    target = resolve_target()
    client = MlflowClient(tracking_uri=target.tracking_uri, registry_uri=target.registry_uri)
    experiments = client.search_experiments(view_type=ViewType.ALL)
    run_ids = sorted(
        run.info.run_id
        for experiment in experiments
        for run in client.search_runs([experiment.experiment_id], run_view_type=ViewType.ALL)
    )
    versions = sorted(  # aliases come with get_model_version only (search leaves them out)
        (found.name, found.version, tuple(sorted(found.aliases)))
        for model in client.search_registered_models()
        for version in client.search_model_versions(f"name = '{model.name}'")
        for found in [client.get_model_version(version.name, version.version)]
    )
    mlruns = settings.current().mlruns
    journal = mlruns / "optuna.journal"
    trials = {}
    if journal.exists():
        storage = optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(journal))
        )
        trials = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    files = sorted(
        str(path.relative_to(mlruns))
        for path in mlruns.rglob("*")
        if path.is_file() and not path.name.endswith((".lock", "-wal", "-shm", ".db"))
    )
    return {
        "experiments": sorted(e.experiment_id for e in experiments),
        "runs": run_ids,
        "versions": versions,
        "trials": trials,
        "files": files,
    }


def assert_one_line_refusal(result, fragments: tuple[str, ...]) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    text_ = " ".join(lines)
    assert "Traceback" not in result.output
    assert lines and lines[0].startswith("error:"), result.output
    for fragment in fragments:
        assert fragment in text_, text_


@pytest.mark.slow
@pytest.mark.parametrize(("case", "make", "fragments"), DATA_CASES, ids=[c[0] for c in DATA_CASES])
def test_bad_data_creates_nothing_through_the_cli_or_the_flow(
    stores, tmp_path, case, make, fragments
):
    from churnml.config import SweepConfig
    from flows.sweep.flow import sweep

    path = make(tmp_path)
    before = snapshot()
    result = runner.invoke(
        app, ["sweep", "--data", str(path), "--trials", "2", "--folds", "2", "--experiment", "x"]
    )
    assert_one_line_refusal(result, fragments)
    assert snapshot() == before, f"{case}: the command line left something in the stores"

    config = SweepConfig(data={"path": str(path)}, n_trials=2, cv_folds=2, experiment_name="x")
    with pytest.raises(ValueError):  # DataValidationError and ConfigError are ValueErrors
        sweep(config=config)
    assert snapshot() == before, f"{case}: the flow left something in the stores"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("case", "config", "fragments"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES]
)
def test_bad_settings_create_nothing_through_the_cli_or_the_flow(
    stores, tmp_path, case, config, fragments
):
    import yaml

    from flows.sweep.flow import sweep

    before = snapshot()
    settings_file = tmp_path / "sweep.yaml"
    settings_file.write_text(yaml.safe_dump({"data": {"path": str(stores)}, **config}))
    result = runner.invoke(app, ["sweep", "--config", str(settings_file)])
    assert_one_line_refusal(result, fragments)
    assert snapshot() == before, f"{case}: the command line left something in the stores"

    # As a deployment run passes it: the config as the flow's parameter, validated by the flow.
    with pytest.raises(Exception):  # noqa: B017 - Prefect's parameter error or ours
        sweep(config={"data": {"path": str(stores)}, **config})
    assert snapshot() == before, f"{case}: the flow left something in the stores"
