"""The ``sweep`` flow: preflight -> prepare data -> start tracking -> open the study -> mapped
trials (ask/tell) -> pick the best -> refit and evaluate on the holdout -> register -> save
skops -> plots -> record in Prefect -> finish tracking -> the version's model card. The trials
stop at the trial budget, or earlier by a stopping rule (a time budget, patience, a target).

Each line is a task (``tasks.py``) or the trial loop (``trials.py``); the work is in plain
functions (``steps.py``, ``trial_steps.py``, ``plot_steps.py``). Trials run as mapped task runs
on a thread pool (scikit-learn's forest releases the GIL, so threads use every core at ~10 ms
overhead a task, against ~165 ms for processes), or on a Dask cluster with
``task_runner: dask`` (``flows/runners.py``).
"""

from __future__ import annotations

import time

import optuna
from prefect import flow, get_run_logger
from prefect.states import Completed
from prefect.task_runners import ThreadPoolTaskRunner

from churnml.config import SweepConfig
from flows import runners, runtime
from flows.sweep import plot_steps, report, steps
from flows.sweep.report import SweepSummary
from flows.sweep.steps import SweepFailedError
from flows.sweep.tasks import (
    announce_champion,
    check_backends,
    data_of,
    finish_tracking,
    log_plots,
    open_study,
    prepare_data,
    record_in_prefect,
    refit_and_evaluate,
    register_model,
    save_skops,
    start_tracking,
    write_model_card,
)
from flows.sweep.trials import run_trials
from tracking.tags import CHAMPION

__all__ = ["SweepFailedError", "SweepSummary", "sweep"]


@flow(
    name="sweep",
    flow_run_name="sweep-{config.experiment_name}",
    task_runner=ThreadPoolTaskRunner(max_workers=64),
    validate_parameters=True,
)
def sweep(config: SweepConfig = SweepConfig()) -> SweepSummary:  # noqa: B008 - frozen model
    """Run one hyperparameter sweep and register its best model (see the module docstring)."""
    started = time.monotonic()  # the time budget (config.timeout) counts from here
    check_backends(config)
    data_key = prepare_data(config)
    data = data_of(data_key)
    context, previous_study = start_tracking(config, data_key)
    get_run_logger().info(
        "sweep %s: %d trials, %d in parallel, on %s",
        context.study_name,
        config.n_trials,
        config.parallel,
        data.source,
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our own log says it better
    with (
        steps.failing_sweep_run(context),
        runtime.held(data_key),
        plot_steps.study_drawer(config) as drawer,  # a process, started on a core trials leave free
    ):
        study, plan = open_study(config, context, previous_study)
        runner = runners.trial_runner(config)
        with plan.keeper.running() as keeper, runners.opened(runner) as opened:
            results, stop_reason = run_trials(
                study, config, context, keeper, opened, started=started
            )
        drawing = plot_steps.hand_over_study(drawer, study, context)  # drawn while the rest goes on
        best = steps.pick_best(study, results)
        model, holdout = refit_and_evaluate(best, data_key, config.seed)
        # The plots need only the model and the study: drawn while the model is registered.
        plots_drawn = log_plots.submit(model, study, context, drawing)
        version = register_model(model, context, config, best, holdout)
        skops_file, sha256 = save_skops(model, version, context, config)
        plots = plots_drawn.result()
        summary = report.summarize(
            context=context,
            experiment_name=config.experiment_name,
            data=data,
            plan=plan,
            study=study,
            results=results,
            best=best,
            holdout=holdout,
            model=model,
            version=version,
            skops_file=skops_file,
            sha256=sha256,
            plots=plots,
            stop_reason=stop_reason,
            on_bounds=steps.best_on_bounds(best, config, data),
        )
        record_in_prefect(summary, study)
        if version.created and CHAMPION in version.aliases:
            announce_champion(summary)
        finish_tracking(context, summary)
        write_model_card(model, version, context)
    message = report.completion_message(summary)
    return summary if message is None else Completed(message=message, data=summary)
