"""promote, rollback, history, score on the command line: bad input is one line and exit 2,
before any flow starts (the happy paths run against a real server in test_promote_server.py).
"""

from __future__ import annotations

import pytest

from churnml.synthetic import generate_bank_churn
from tests.cli_checks import assert_one_line_error, run


@pytest.fixture(scope="module", autouse=True)
def local_store():
    """Create the temporary MLflow store first, so its set-up log is not in the output."""
    from tracking.store import connect

    connect()


@pytest.fixture
def customers(tmp_path):
    path = tmp_path / "customers.csv"
    generate_bank_churn(30, seed=1).to_csv(path, index=False)
    return path


def test_help_lists_the_registry_commands():
    result = run("--help")
    for command in ("promote", "rollback", "history", "score"):
        assert command in result.output
    promote_help = run("promote", "--help").output
    for option in ("--to-version", "--margin", "--floor", "--data", "--metric", "--model-name"):
        assert option in promote_help
    score_help = run("score", "--help").output
    for option in ("--data", "--out", "--alias", "--version", "--model-name", "--chunk-rows"):
        assert option in score_help


def test_promote_with_an_unknown_metric():
    assert_one_line_error(run("promote", "--metric", "auc"), "config.metric", "'auc'")


def test_promote_with_a_negative_margin():
    assert_one_line_error(run("promote", "--margin", "-0.1"), "config.margin")


def test_promote_with_a_missing_evaluation_file(tmp_path):
    assert_one_line_error(run("promote", "--data", str(tmp_path / "nope.csv")), "nope.csv")


def test_promote_an_unknown_model():
    assert_one_line_error(run("promote", "--model-name", "never-registered"), "no registered model")


def test_history_of_an_unknown_model():
    assert_one_line_error(run("history", "--model-name", "never-registered"), "never-registered")


def test_rollback_needs_a_version():
    result = run("rollback")
    assert result.exit_code == 2
    assert "--to-version" in result.output


def test_score_a_file_without_a_feature_column(customers, tmp_path):
    frame = generate_bank_churn(30, seed=1).drop(columns=["Gender", "Tenure"])
    source = tmp_path / "partial.csv"
    frame.to_csv(source, index=False)
    out = tmp_path / "churn.csv"
    result = run("score", "--data", str(source), "--out", str(out))
    assert_one_line_error(result, "partial.csv", "missing column(s) 'Tenure', 'Gender'")
    assert not out.exists()


def test_score_into_its_own_input(customers):
    result = run("score", "--data", str(customers), "--out", str(customers))
    assert_one_line_error(result, "must not be the input file")


def test_score_with_alias_and_version(customers, tmp_path):
    result = run(
        "score", "--data", str(customers), "--out", str(tmp_path / "o.csv"),
        "--alias", "champion", "--version", "2",
    )  # fmt: skip
    assert_one_line_error(result, "not both")


def test_score_an_empty_file(tmp_path):
    source = tmp_path / "empty.csv"
    source.write_text("")
    result = run("score", "--data", str(source), "--out", str(tmp_path / "o.csv"))
    assert_one_line_error(result, "empty.csv", "empty")


def test_score_with_an_unknown_model(customers, tmp_path):
    result = run(
        "score", "--data", str(customers), "--out", str(tmp_path / "o.csv"),
        "--model-name", "never-registered",
    )  # fmt: skip
    assert_one_line_error(result, "no registered model 'never-registered'")
