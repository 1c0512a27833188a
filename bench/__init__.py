"""The benchmark: what orchestration and tracking cost over a bare Optuna loop (``make bench``)."""
