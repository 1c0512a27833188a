"""``sweepflow sweep``: settings and data are checked here before the flow starts, so a typo or
a bad file costs a one-line message and exit code 2, not a traceback. A temporary server boots
beside the data check once the settings are valid, and bad data stops it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from churnml import prepare
from churnml.config import ConfigError, SweepConfig, parse_config
from churnml.schema import DataValidationError
from cli.common import (
    EXIT_SWEEP_FAILED,
    ServerStart,
    console,
    end_process,
    errors,
    fail,
    is_console_script,
    quiet_console_logs,
)
from sweepflow import memory


def _read_config_file(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: cannot read the config file ({error})") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the config file must hold a mapping of settings")
    return loaded


def build_config(file: Path | None, overrides: dict[str, Any]) -> SweepConfig:
    """Config file values, then command-line options (those given) on top; validated."""
    raw: dict[str, Any] = _read_config_file(file) if file else {}
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = raw
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return parse_config(raw)


def check_data(config: SweepConfig) -> prepare.PreparedData:
    """Everything the flow checks about the data, done up front (fast, no server needed).

    The split is cached (``churnml.cache``), so the flow that follows, and a later sweep on the
    same data and settings, skip loading it again.
    """
    from churnml import cache
    from sweepflow import settings
    from tracking.store import mlruns_dir

    limit = settings.current().sweepflow_max_data_bytes
    return cache.prepare_data(config, cache.cache_folder(mlruns_dir()), max_bytes=limit)[0]


def make_stores() -> None:
    """Make the MLflow stores (a new local store copied from the template, or migrated) before
    the flow; a failure is left for the flow to meet again and report as it always does (an
    unreachable server, a database refusing)."""
    from tracking.store import open_stores

    with suppress(Exception):
        open_stores()


def ready_for_the_end() -> None:
    """Ready MLflow's model logging and import what only the end of the flow needs
    (``flows.sweep.steps.END_OF_RUN_MODULES``): on a thread, while the flow is imported and a
    temporary server boots, and done before the trials start. Never beside the trials: a thread
    holding the GIL for imports slows every trial thread waiting for it (in a benchmark run, 40
    trials at 20k rows took 2.8 s longer with it beside them, to save 1 s at the start)."""
    from tracking.store import warm_model_logging

    warm_model_logging()
    import_end_of_run()


def import_end_of_run() -> None:
    """Import what only the end of the flow needs (``flows.sweep.steps.END_OF_RUN_MODULES``);
    one that fails to import is left for the flow to report."""
    import importlib

    from flows.sweep.steps import END_OF_RUN_MODULES

    for name in END_OF_RUN_MODULES:
        with suppress(Exception):
            importlib.import_module(name)


def check_backends(config: SweepConfig) -> None:
    """The flow's preflight, done before Prefect starts: unsafe backends cost one line.

    Raises:
        ConfigError: the backends in the environment are unsafe for these settings.
    """
    from flows import preflight
    from sweepflow import settings

    preflight.check_environment(config, prefect_api=settings.current().prefect_api_url)


@contextmanager
def trial_progress(total: int, *, enabled: bool) -> Iterator[None]:
    """A progress bar of finished trials (done/total, best CV AUC so far) while a sweep runs.

    It listens to the flow in this process (``flows.runtime.progress_listener``) and draws on
    stderr, so stdout keeps only the summary.
    """
    if not enabled:
        yield
        return
    from flows import runtime

    bar = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best CV AUC {task.fields[best]}"),
        TimeElapsedColumn(),
        console=errors,
    )
    task = bar.add_task("starting Prefect and MLflow", total=total, best="n/a")

    def on_progress(progress: runtime.TrialProgress) -> None:
        bar.update(
            task,
            total=progress.total,  # the flow's budget may differ (trials adopted from a crash)
            completed=progress.done,
            best=f"{progress.best:.4f}" if progress.best is not None else "n/a",
            description="trials" if progress.done < progress.total else "refit, register, plot",
        )

    with bar, runtime.progress_listener(on_progress):
        yield
        bar.update(task, description="sweep done")


def sweep(
    data: Annotated[
        Path | None,
        typer.Option(help="CSV of the bank-churn schema. Default: the built-in generated data."),
    ] = None,
    rows: Annotated[
        int | None, typer.Option(help="Rows of built-in data to generate (when no --data).")
    ] = None,
    target: Annotated[
        str | None, typer.Option(help="Target column (0/1). Default: Exited.")
    ] = None,
    trials: Annotated[int | None, typer.Option(help="Trials to run. Default: 20.")] = None,
    timeout: Annotated[
        float | None,
        typer.Option(
            help="Wall-clock budget of the search in seconds: no trial starts that cannot "
            "finish in it; the best is still refit, registered and recorded."
        ),
    ] = None,
    patience: Annotated[
        int | None,
        typer.Option(
            help="Stop after this many trials in a row without a gain above --min-improvement."
        ),
    ] = None,
    min_improvement: Annotated[
        float | None,
        typer.Option(help="CV ROC AUC gain that counts as an improvement. Default: 0."),
    ] = None,
    target_auc: Annotated[
        float | None, typer.Option(help="Stop once a trial reaches this CV ROC AUC.")
    ] = None,
    parallel: Annotated[
        int | None, typer.Option(help="Trials run at once (threads). Default: 2.")
    ] = None,
    folds: Annotated[int | None, typer.Option(help="Cross-validation folds. Default: 3.")] = None,
    test_size: Annotated[
        float | None, typer.Option(help="Holdout fraction kept from the search. Default: 0.2.")
    ] = None,
    sample_rows: Annotated[
        int | None, typer.Option(help="Use a stratified sample of this many rows.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of sampler, splits and forest.")] = None,
    experiment: Annotated[str | None, typer.Option(help="MLflow experiment name.")] = None,
    model_name: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
    study: Annotated[
        str | None, typer.Option(help="Optuna study name. Default: a fresh study per sweep.")
    ] = None,
    pruner: Annotated[str | None, typer.Option(help="median or none. Default: median.")] = None,
    skops_path: Annotated[
        Path | None, typer.Option(help="Where to write the best model's .skops file.")
    ] = None,
    task_runner: Annotated[
        str | None,
        typer.Option(
            help="Where trials run: threads (this process) or dask (a Dask cluster). "
            "Default: threads."
        ),
    ] = None,
    dask_address: Annotated[
        str | None,
        typer.Option(
            help="Scheduler of an existing Dask cluster (tcp://host:8786). "
            "Default with --task-runner dask: a local cluster for this sweep."
        ),
    ] = None,
    dask_workers: Annotated[
        int | None,
        typer.Option(help="Worker processes of the local Dask cluster. Default: one per core."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="YAML file of settings (same keys as the flow's config); options win."),
    ] = None,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="Show Prefect's and MLflow's logs (every task run) instead of a progress bar.",
        ),
    ] = False,
) -> None:
    """Run a sweep: mapped Optuna trials in Prefect, tracked in MLflow, best model registered."""
    try:
        settings = build_config(
            config,
            {
                "data.path": str(data) if data else None,
                "data.synthetic_rows": rows,
                "data.target": target,
                "data.sample_rows": sample_rows,
                "n_trials": trials,
                "parallel": parallel,
                "cv_folds": folds,
                "test_size": test_size,
                "seed": seed,
                "experiment_name": experiment,
                "model_name": model_name,
                "study_name": study,
                "pruner": pruner,
                "skops_path": str(skops_path) if skops_path else None,
                "task_runner": task_runner,
                "dask_address": dask_address,
                "dask_workers": dask_workers,
                "timeout": timeout,
                "patience": patience,
                "min_improvement": min_improvement,
                "target_value": target_auc,
            },
        )
    except ConfigError as error:
        raise fail(str(error)) from None
    if settings.task_runner == "threads":  # before the threads below, which take their arenas
        memory.limit_malloc_arenas(settings.parallel)
    # The settings are valid: a temporary server boots on the other core while the backends and
    # the data are checked and the flow is imported. Bad input stops it before the one line.
    server = ServerStart()
    try:
        check_backends(settings)  # first: an unsafe setup is refused before any data is read
        prepared = check_data(settings)
    except (ConfigError, DataValidationError) as error:
        server.abandon()
        raise fail(str(error)) from None
    console.print(
        f"Sweeping {settings.n_trials} trials ({settings.parallel} at once) on "
        f"{prepared.source}: {prepared.rows} rows, churn {prepared.churn_rate:.1%}",
        highlight=False,
    )
    if not verbose:
        quiet_console_logs()
    # Every check has passed. The MLflow stores are made while the server boots (before the
    # thread below: both would import MLflow's store and SQLAlchemy, and a package imported on
    # two threads at once can fail to import); then the end of the run is readied beside the
    # flow's import.
    make_stores()
    ready = threading.Thread(target=ready_for_the_end, name="ready-for-the-end")
    ready.start()
    from flows.sweep.flow import SweepFailedError
    from flows.sweep.flow import sweep as sweep_flow

    if not verbose:
        quiet_console_logs(reported=(SweepFailedError,))
    try:
        with trial_progress(settings.n_trials, enabled=not verbose):
            ready.join()  # before the trials, never beside them
            server.wait()
            summary = sweep_flow(config=settings)
    except SweepFailedError as error:
        raise fail(str(error), EXIT_SWEEP_FAILED) from None
    except (ConfigError, DataValidationError) as error:  # found once the flow ran
        raise fail(str(error)) from None
    print_summary(summary)
    if is_console_script():
        end_process(0)  # skips only Python's teardown of its modules (cli/common.py)


def print_summary(summary: Any) -> None:
    """What the sweep found, and how to look at it in the two UIs."""
    table = Table(title=f"Sweep {summary.study_name}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    table.add_row(
        "trials",
        f"{summary.trials_complete} complete, {summary.trials_pruned} pruned, "
        f"{summary.trials_failed} failed",
    )
    table.add_row("stopped", summary.stop_reason or "n/a")
    if summary.on_bounds:
        table.add_row("on a bound", "; ".join(summary.on_bounds) + " (widen the search space)")
    table.add_row(
        "best trial", f"trial-{summary.best_trial:03d}: CV ROC AUC {summary.best_cv_auc:.4f}"
    )
    table.add_row("best params", ", ".join(f"{k}={v}" for k, v in summary.best_params.items()))
    holdout = summary.holdout
    table.add_row(
        "holdout",
        f"ROC AUC {holdout['roc_auc']:.4f}, accuracy {holdout['accuracy']:.4f}, "
        f"F1 {holdout['f1']:.4f}, precision {holdout['precision']:.4f}, "
        f"recall {holdout['recall']:.4f}, log loss {holdout['log_loss']:.4f}",
    )
    table.add_row(
        "model",
        f"{summary.model_name} v{summary.model_version} "
        f"(aliases: {', '.join(summary.model_aliases) or 'none'})",
    )
    table.add_row("skops file", summary.skops_path)
    table.add_row("sha256", summary.skops_sha256)
    table.add_row("tracking", summary.tracking_uri)
    plots = getattr(summary, "plots", None)
    if plots is not None:
        table.add_row(
            "plots",
            f"{len(plots.links)} on the sweep run: artifacts model/ and optuna/ "
            "(interactive: optuna/study.html)"
            + "".join(f"; {name} not drawn: {why}" for name, why in plots.skipped.items()),
        )
    console.print(table)
    console.print("\nSee the results:", style="bold")
    console.print(f"  MLflow UI:  {summary.mlflow_ui_command}", highlight=False, soft_wrap=True)
    console.print(
        f"              then open {summary.mlflow_run_url}", highlight=False, soft_wrap=True
    )
    console.print(f"  Prefect UI: {summary.prefect_ui_hint}", highlight=False, soft_wrap=True)
