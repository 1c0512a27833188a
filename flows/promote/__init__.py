"""The ``promote`` flow (``flow.py``, promotion and rollback) and its plain steps (``steps.py``)."""
