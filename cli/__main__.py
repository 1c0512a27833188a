"""``python -m cli``: the ``sweepflow`` command line."""

from cli.main import app

app()
