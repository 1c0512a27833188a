"""The ``sweepflow`` command line (``cli/main.py``)."""
