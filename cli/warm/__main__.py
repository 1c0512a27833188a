"""``python -m cli.warm SOCKET``: the warm process (``cli/warm/runner.py``)."""

from cli.warm.runner import main

main()
