"""Pure ML core of sweepflow: data, model, search space, evaluation (no Prefect, no MLflow)."""
