"""The ``sweepflow`` console script (and ``python -m cli``): a sweep goes to the warm process
``sweepflow server start`` keeps, when there is one that can run it (``cli/warm/``).
Otherwise the allocator is set up before any import starts a thread (NumPy's BLAS starts its
own): one arena, large blocks given back when freed; then the app runs. A sweep raises the
arena cap to its trials at once (``sweepflow.memory``)."""

from __future__ import annotations


def main() -> None:
    """Run the ``sweepflow`` command line."""
    import sys

    from cli import warm
    from cli.warm import client

    warm.remember_environment()
    code = client.hand_over(sys.argv[1:])  # a sweep, to the warm process of `server start`
    if code is not None:
        sys.exit(code)
    from sweepflow import memory

    memory.configure_allocator(1)
    from cli.main import app

    app()
