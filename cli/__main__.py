"""``python -m cli``: the ``sweepflow`` command line."""

from cli.entry import main

main()
