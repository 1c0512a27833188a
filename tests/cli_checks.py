"""The command line in-process, and what every refusal of it looks like."""

from __future__ import annotations

from typer.testing import CliRunner

from cli.main import app

runner = CliRunner()


def run(*args: str):
    """``sweepflow ARGS`` in this process."""
    return runner.invoke(app, list(args))


def assert_one_line_error(result, *fragments: str) -> None:
    """Exit code 2 and one line, ``error: ...``, naming each fragment; never a traceback."""
    assert result.exit_code == 2, result.output
    text = result.output.strip()
    assert "Traceback" not in text and "\n" not in text, text
    assert text.startswith("error:")
    for fragment in fragments:
        assert fragment in text, text
