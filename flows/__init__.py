"""Prefect flows, one package each (``sweep/``, ``promote/``, ``score/``), and what they share:
events and task options, the preflight, task runners, in-process handles and notifications."""
