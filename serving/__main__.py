"""``python -m serving ...``: the same command as ``sweepflow serve``."""

import typer

from serving.cli import serve

if __name__ == "__main__":
    typer.run(serve)
