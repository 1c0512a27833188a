"""The ``sweep`` flow (``flow.py``), its ask/tell loop (``trials.py``), its tasks (``tasks.py``),
the plain functions behind them (``steps.py``, ``trial_steps.py``) and its report
(``report.py``)."""
