"""What the benchmark runs: the variants, the datasets, the search space; what a run measured."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The bench's search space: the default one with forests of 10-60 trees instead of 50-300, so
#: 40 trials fit the time budget. Shorter trials make our per-trial cost weigh more, not less.
BENCH_SPACE: dict[str, Any] = {"n_estimators": {"low": 10, "high": 60, "log": True}}


@dataclass(frozen=True)
class Variant:
    """One way of running the search."""

    name: str
    #: "bare" (the Optuna loop), "sweep" (the flow called in a worker) or "command" (the
    #: ``sweepflow sweep`` console script itself, timed from process start to exit).
    kind: str
    parallel: int
    #: "none", "temporary", "server" (PREFECT_API_URL given) or "recorded" (the server of
    #: ``sweepflow server start``, found by the command itself).
    prefect: str = "none"
    #: Run on the store of this earlier variant (a second sweep) instead of a fresh one.
    store_of: str | None = None
    clear_cache: bool = False
    #: Trials of a second sweep: only its time to first trial is measured.
    trials: int | None = None
    #: A command with the running server hands itself to its warm process (``cli/warm/``);
    #: False runs it in its own process, as before that process existed.
    warm: bool = True


VARIANTS = (
    Variant("bare-p1", "bare", 1),
    Variant("sweep-p1", "sweep", 1, "temporary"),
    Variant("command-p1", "command", 1, "temporary"),
    Variant("command-p1-server", "command", 1, "recorded"),
    Variant("command-p1-server-cold", "command", 1, "recorded", warm=False),
    # What a user's next sweep costs once `sweepflow server start` runs: a short sweep on the
    # first command's store, handed to the warm process; timed from spawn to first trial.
    Variant("second-warm", "command", 1, "recorded", "command-p1", trials=2),
    Variant("bare-p2", "bare", 2),
    Variant("sweep-p2", "sweep", 2, "temporary"),
    Variant("sweep-p2-server", "sweep", 2, "server"),
    Variant("second-nocache", "sweep", 2, "temporary", "sweep-p2", clear_cache=True, trials=2),
    Variant("second-cached", "sweep", 2, "temporary", "sweep-p2", trials=2),
)


@dataclass(frozen=True)
class Dataset:
    """The rows a search runs on, and its trial budget."""

    name: str
    data: dict[str, Any]
    trials: int


@dataclass
class Measurement:
    """What one worker run measured (all times in seconds, memory in MiB)."""

    variant: str
    dataset: str
    repeat: int
    wall: float
    #: None for a command: its start-up is not seen from outside (see ``whole``).
    imports: float | None
    server: float | None
    ttft: float | None
    steady: float
    trials: int
    states: dict[str, int]
    params: list[Any]
    peak_rss_mb: float
    #: Peak minus the size once the run was ready to work (every import, including what the end
    #: of a sweep imports; a sweep's temporary server started, its stores made): what the data
    #: and the search added. The whole process tree. None for a command.
    growth_mb: float | None
    #: The same for the measured process alone, without the temporary Prefect server it
    #: started (a separate service process, which a running server replaces). None for a command.
    own_growth_mb: float | None = None
    #: CPU seconds (user + system) of the whole tree from first trial start to last trial end,
    #: the running server's included: the work done, which others' load hardly changes.
    steady_cpu: float = 0.0
    server_rss_mb: float | None = None
    #: From spawning the process to its exit (interpreter teardown, temporary server stop).
    whole: float | None = None
    #: CPU seconds of the whole process tree from spawn to exit (a running server's included):
    #: the work, which a busy machine changes much less than it changes wall time.
    whole_cpu: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def per_trial(self) -> float:
        return self.steady / self.trials

    @property
    def trials_per_s(self) -> float:
        return self.trials / self.steady
