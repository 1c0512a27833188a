"""The ``sweepflow`` console script (and ``python -m cli``): the allocator is set up before any
import starts a thread (NumPy's BLAS starts its own): one arena, large blocks given back when
freed; then the app runs. A sweep raises the arena cap to its trials at once
(``sweepflow.memory``)."""

from __future__ import annotations


def main() -> None:
    """Run the ``sweepflow`` command line."""
    from sweepflow import memory

    memory.configure_allocator(1)
    from cli.main import app

    app()
