"""The command line: bad input is one line and exit code 2, before Prefect or MLflow start."""

from __future__ import annotations

from pathlib import Path

import pytest

from churnml.synthetic import generate_bank_churn
from tests.cli_checks import assert_one_line_error, run
from tracking.store import mlruns_dir


@pytest.fixture
def no_store_written():
    before = mlruns_dir().exists() and sorted(p.name for p in mlruns_dir().iterdir())
    yield
    after = mlruns_dir().exists() and sorted(p.name for p in mlruns_dir().iterdir())
    assert before == after, "a refused sweep must not touch the tracking store"


def test_help_explains_every_option():
    result = run("sweep", "--help")
    assert result.exit_code == 0
    for option in (
        "--data",
        "--trials",
        "--parallel",
        "--experiment",
        "--model-name",
        "--folds",
        "--seed",
        "--config",
        "--skops-path",
        "--rows",
    ):
        assert option in result.output


@pytest.mark.usefixtures("no_store_written")
def test_missing_file(tmp_path):
    assert_one_line_error(run("sweep", "--data", str(tmp_path / "nope.csv")), "nope.csv")


@pytest.mark.usefixtures("no_store_written")
def test_missing_target_column(tmp_path):
    path = tmp_path / "no_target.csv"
    generate_bank_churn(200, seed=1).drop(columns="Exited").to_csv(path, index=False)
    assert_one_line_error(run("sweep", "--data", str(path)), "no_target.csv", "Exited")


@pytest.mark.usefixtures("no_store_written")
def test_negative_trials():
    assert_one_line_error(run("sweep", "--trials", "-3"), "n_trials")


@pytest.mark.usefixtures("no_store_written")
def test_unknown_key_in_config_file(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("n_trials: 3\nparalel: 2\n")
    assert_one_line_error(run("sweep", "--config", str(path)), "config.paralel", "unknown key")


@pytest.mark.usefixtures("no_store_written")
def test_k_above_the_feature_count(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("search_space:\n  k_max: 99\n")
    assert_one_line_error(run("sweep", "--config", str(path), "--rows", "300"), "k_max", "99")


def test_generate_data_writes_a_csv_the_sweep_accepts(tmp_path):
    out = tmp_path / "generated.csv"
    result = run("generate-data", "--out", str(out), "--rows", "500")
    assert result.exit_code == 0
    assert len(Path(out).read_text().splitlines()) == 501


@pytest.mark.slow
@pytest.mark.usefixtures("prefect_harness")
def test_sweep_prints_results_and_where_to_look():
    result = run(
        "sweep",
        "--rows",
        "600",
        "--trials",
        "2",
        "--parallel",
        "2",
        "--folds",
        "2",
        "--experiment",
        "cli",
        "--model-name",
        "cli-model",
    )
    assert result.exit_code == 0, result.output
    for fragment in (
        "best trial",
        "holdout",
        "cli-model v1",
        "sha256",
        "mlflow ui",
        "sweepflow server start",
        "later sweeps use this server",
    ):
        assert fragment in result.output
