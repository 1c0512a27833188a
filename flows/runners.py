"""Where a sweep's trials run, chosen from its configuration when the flow runs.

``threads`` (the default) keeps trials on the flow's own thread pool. ``dask`` sends them to a
Dask cluster through prefect-dask's ``DaskTaskRunner``: an existing cluster at ``dask_address``,
or a ``LocalCluster`` started for the sweep and stopped after it.

The flow decorator fixes one task runner per flow, and ``sweep.with_options(task_runner=...)``
is decided before the flow sees its parameters, which a deployment run cannot do. So the flow
keeps its thread pool for its own steps and opens the configured runner for the trial phase:
``runner.map(task, parameters)`` is exactly what ``Task.map`` does with the flow's own runner
(``prefect/tasks.py``), so the trial task runs are still task runs of the sweep's flow run.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from churnml.config import ConfigError, SweepConfig
from tracking.store import mask_uri

DASK_EXTRA = "pip install 'sweepflow[dask]' (prefect-dask and dask[distributed])"


def dask_available() -> bool:
    """True when prefect-dask and Dask's distributed scheduler are installed."""
    try:
        import distributed  # noqa: F401
        import prefect_dask  # noqa: F401
    except ImportError:
        return False
    return True


def trial_runner(config: SweepConfig) -> Any | None:
    """A new (not yet started) task runner for the trials; None keeps the flow's thread pool.

    Raises:
        ConfigError: ``task_runner: dask`` without the Dask packages installed.
    """
    if config.task_runner != "dask":
        return None
    if not dask_available():
        raise ConfigError(f"config.task_runner: dask needs the dask extra: {DASK_EXTRA}")
    from prefect_dask import DaskTaskRunner

    # Dask's INFO lines (workers joining and leaving) would bury the sweep's own log.
    logging.getLogger("distributed").setLevel(logging.WARNING)
    if config.dask_address:
        return DaskTaskRunner(address=config.dask_address)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": config.dask_workers,
            # One trial per worker process: a forest fit is the unit of work, and processes
            # (not threads) keep one trial's Python work from slowing another's.
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        }
    )


@contextmanager
def opened(runner: Any | None) -> Iterator[Any | None]:
    """Start ``runner`` for the trial phase (and stop it, with its local cluster, after).

    Dask workers report their task runs to the Prefect API named in the settings they receive.
    Without ``PREFECT_API_URL`` this process talks to a temporary server of its own, which the
    settings do not name, and each worker would start yet another one: so its address is put in
    the settings for the workers (a local cluster reaches it; the preflight refuses a remote one).
    """
    if runner is None:
        yield None
        return
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with ExitStack() as stack:
        if not PREFECT_API_URL.value():
            with get_client(sync_client=True) as client:
                api_url = str(client.api_url)
            stack.enter_context(temporary_settings(updates={PREFECT_API_URL: api_url}))
        yield stack.enter_context(runner)


def describe_runner(config: SweepConfig) -> str:
    """Where trials run, for the log: the thread pool, a local cluster, or the cluster's address."""
    if config.task_runner != "dask":
        return f"thread pool of this process ({config.parallel} trials at once)"
    if config.dask_address:
        return f"Dask cluster at {mask_uri(config.dask_address)}"
    workers = f"{config.dask_workers} workers" if config.dask_workers else "one worker per core"
    return f"Dask LocalCluster started for this sweep ({workers})"
