"""When a sweep stops asking for trials: its trial budget, a wall-clock budget, no improvement
for a while, or a target reached. Plain logic over trial results and a clock.

Every rule counts this sweep's trials only (a resumed study's earlier sweeps do not use up its
patience); improvement is measured against the best of the whole study, which is what the sweep
registers. Why the sweep stopped is one sentence (:attr:`Stopper.reason`), recorded by the flow.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from churnml.config import SweepConfig

#: Trials whose durations estimate the next one's (the latest; the search drifts).
ESTIMATE_FROM = 5


@dataclass(frozen=True)
class StoppingRules:
    """The rules of one sweep, from its config."""

    n_trials: int
    timeout: float | None = None
    patience: int | None = None
    min_improvement: float = 0.0
    target_value: float | None = None

    @classmethod
    def of(cls, config: SweepConfig) -> StoppingRules:
        return cls(
            n_trials=config.n_trials,
            timeout=config.timeout,
            patience=config.patience,
            min_improvement=config.min_improvement,
            target_value=config.target_value,
        )


class Stopper:
    """Follows a sweep's trials and says when to stop launching more, and why.

    Args:
        rules: the sweep's rules.
        best_before: the study's best CV AUC before this sweep (a resumed study), if any.
        started: when the sweep started, on ``clock``.
        clock: seconds, monotonic (injectable for tests).
    """

    def __init__(
        self,
        rules: StoppingRules,
        *,
        best_before: float | None = None,
        started: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rules = rules
        self.clock = clock
        self.started = clock() if started is None else started
        self.best = best_before
        self.since_improvement = 0
        self.durations: list[float] = []
        self.reason: str | None = None

    def record(self, state: str, value: float | None, seconds: float) -> None:
        """A trial of this sweep ended (COMPLETE, PRUNED or FAIL) after ``seconds`` of wall
        time from its launch."""
        self.durations.append(seconds)
        if state == "FAIL":
            return  # an error says nothing about the search
        improved = (
            state == "COMPLETE"
            and value is not None
            and (self.best is None or value > self.best + self.rules.min_improvement)
        )
        if state == "COMPLETE" and value is not None:
            self.best = value if self.best is None else max(self.best, value)
        self.since_improvement = 0 if improved else self.since_improvement + 1
        target = self.rules.target_value
        if self.reason is None and target is not None and value is not None and value >= target:
            self.reason = f"target reached: a trial scored CV ROC AUC {value:.4f} >= {target}"
        patience = self.rules.patience
        if self.reason is None and patience is not None and self.since_improvement >= patience:
            self.reason = (
                f"no improvement: {patience} trials in a row gained no more than "
                f"{self.rules.min_improvement} CV ROC AUC over the best ({self.best_text})"
            )

    @property
    def best_text(self) -> str:
        return "none yet" if self.best is None else f"{self.best:.4f}"

    def estimate(self) -> float | None:
        """Seconds the next trial should take: the median of the latest ones; None before any
        has ended."""
        if not self.durations:
            return None
        return statistics.median(self.durations[-ESTIMATE_FROM:])

    def may_launch(self) -> bool:
        """False once a rule says to stop launching trials (then :attr:`reason` says why)."""
        if self.reason is not None:
            return False
        timeout = self.rules.timeout
        if timeout is None:
            return True
        elapsed = self.clock() - self.started
        estimate = self.estimate()
        left = timeout - elapsed
        if left <= 0 or (estimate is not None and estimate > left):
            self.reason = f"time budget: {timeout:g} s, {max(left, 0):.0f} s left" + (
                f" and a trial takes about {estimate:.0f} s" if estimate is not None else ""
            )
            return False
        return True

    def final_reason(self, done: int) -> str:
        """Why the sweep stopped: the rule that stopped it, else its trial budget ran out."""
        return self.reason or f"trial budget: all {done} trials ran"
