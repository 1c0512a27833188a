"""Every MLflow call of sweepflow, and the one module that reads and writes model files."""
