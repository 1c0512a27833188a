"""Project-wide pieces below every layer: the environment's settings (``sweepflow.settings``)."""
