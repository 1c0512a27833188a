"""The ``score`` flow (``flow.py``: batch scoring with a registered version) and its plain
steps (``steps.py``)."""
