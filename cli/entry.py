"""The ``sweepflow`` console script (and ``python -m cli``): the allocator's arenas are capped at
one before any import starts a thread (NumPy's BLAS starts its own), then the app runs. A sweep
raises the cap to its trials at once (``sweepflow.memory``)."""

from __future__ import annotations


def main() -> None:
    """Run the ``sweepflow`` command line."""
    from sweepflow import memory

    memory.limit_malloc_arenas(1)
    from cli.main import app

    app()
