"""The ``sweepflow`` command line: the app, and one module per command group.

- ``cli/sweep.py``: ``sweep``;
- ``cli/registry.py``: ``promote``, ``rollback``, ``history``;
- ``cli/score.py``: ``score``;
- ``serving/cli.py``: ``serve``;
- ``cli/misc.py``: ``notifications``, ``generate-data``;
- ``cli/server.py``: ``server start|stop|status`` (a Prefect server kept running);
- ``cli/record.py``: the record ``server start`` leaves, read by every later command;
- ``cli/warm/``: the warm process kept beside it, which sweeps start in (``cli/entry.py``
  hands a sweep to it);
- ``cli/common.py``: what they share (consoles, one-line errors, process defaults).
"""

from __future__ import annotations

import typer

from cli import misc, registry, score, server, sweep
from cli.common import fail, process_defaults
from serving.cli import serve
from sweepflow import settings

app = typer.Typer(
    help="Hyperparameter sweeps for a bank-churn classifier: Prefect + Optuna + MLflow + skops.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _start() -> None:
    """Before any command: Prefect's process defaults, and the environment checked once."""
    process_defaults()
    try:
        settings.current()
    except settings.SettingsError as error:
        raise fail(str(error)) from None


app.command()(sweep.sweep)
app.command("promote")(registry.promote)
app.command("rollback")(registry.rollback)
app.command("history")(registry.history)
app.command("score")(score.score)
app.command("notifications")(misc.notifications)
app.command("generate-data")(misc.generate_data)
app.command("serve")(serve)
app.add_typer(server.app, name="server")
