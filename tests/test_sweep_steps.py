"""Plain steps of the sweep, called directly (no Prefect)."""

from __future__ import annotations

import dataclasses

from churnml.config import SweepConfig
from flows.sweep import steps
from tracking.registry import RegisteredVersion


def version(number: str) -> RegisteredVersion:
    return RegisteredVersion(
        name="bank-churn-classifier",
        version=number,
        model_uri=f"models:/bank-churn-classifier/{number}",
        created=True,
        aliases=("champion",),
    )


def two_core_context(sweep: str):
    """The trials' shared context of sweep ``sweep``, whose trials share two cores."""
    from flows.sweep import trial_steps

    return trial_steps.TrialContext(
        data_key="k",
        target=None,
        experiment_id="1",
        parent_run_id=sweep,
        study_name="s",
        cv_folds=3,
        seed=0,
        trial_cores=2,
    )


def test_a_trial_left_alone_takes_the_cores_the_others_freed():
    from flows.sweep import trial_steps

    context = two_core_context("sweep-a")
    other_sweep = dataclasses.replace(context, parent_run_id="sweep-b")
    with trial_steps._counted("sweep-a"):
        assert trial_steps.forest_threads(context) == 2  # alone
        with trial_steps._counted("sweep-a"):
            assert trial_steps.forest_threads(context) == 1  # two trials share two cores
            with trial_steps._counted("sweep-b"):  # another sweep's trials count for it
                assert trial_steps.forest_threads(context) == 1
                assert trial_steps.forest_threads(other_sweep) == 2
    one_core = dataclasses.replace(context, trial_cores=1)
    assert trial_steps.forest_threads(one_core) == 1


def test_once_the_last_trials_are_launched_each_fold_takes_every_core():
    """The trials left overlapping at the end share the cores, so the one that runs on alone
    has them all from the middle of its fold; another sweep is not affected."""
    from flows.sweep import trial_steps

    context = two_core_context("sweep-last")
    other_sweep = dataclasses.replace(context, parent_run_id="sweep-other")
    with (
        trial_steps._counted("sweep-last"),
        trial_steps._counted("sweep-last"),
        trial_steps._counted("sweep-other"),
        trial_steps._counted("sweep-other"),
    ):
        trial_steps.last_trials_launched("sweep-last")
        try:
            assert trial_steps.forest_threads(context) == 2
            assert trial_steps.forest_threads(other_sweep) == 1
            one_core = dataclasses.replace(context, trial_cores=1)
            assert trial_steps.forest_threads(one_core) == 1
        finally:
            trial_steps.last_trials_launched("sweep-last", False)
        assert trial_steps.forest_threads(context) == 1


def test_trials_share_the_cores_of_parallel_on_threads_only():
    import os

    from churnml.config import SweepConfig

    cores = os.cpu_count() or 1
    assert steps.trial_cores(SweepConfig(parallel=2)) == min(2, cores)
    assert steps.trial_cores(SweepConfig(parallel=1)) == 1
    assert steps.trial_cores(SweepConfig(parallel=2, task_runner="dask")) == 1


def test_two_stores_on_one_checkout_never_share_a_skops_file():
    # Version 1 exists in every store; each sweep run id is its own.
    config = SweepConfig()
    first = steps.skops_path(config, version("1"), "a" * 32)
    second = steps.skops_path(config, version("1"), "b" * 32)
    assert first != second
    assert first.parent == second.parent and first.suffix == ".skops"
    assert "v1" in first.name and "a" * 32 in first.name


def test_an_explicit_skops_path_is_used_as_given(tmp_path):
    config = SweepConfig(skops_path=str(tmp_path / "model.skops"))
    assert steps.skops_path(config, version("3"), "c" * 32) == tmp_path / "model.skops"
