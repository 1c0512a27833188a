"""What the tests check of a study that the sweep itself never needs to ask."""

from __future__ import annotations

import optuna

from studies import recovery


def study_budget(study: optuna.Study) -> tuple[int, int]:
    """(trials the study's sweeps asked for, trials that used budget so far)."""
    asked = sum(int(record.get("n_trials", 0)) for record in recovery.sweep_records(study).values())
    return asked, sum(1 for t in study.get_trials(deepcopy=False) if recovery.consumed(t))
