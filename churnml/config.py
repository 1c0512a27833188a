"""Typed, strict sweep configuration shared by the CLI, the flows and ``prefect.yaml``.

Every model forbids unknown keys, so a typo in a deployment's parameters or on the command line
fails at the start of a run with a message naming the key, before any trial or MLflow run exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

# One error for bad settings wherever they come from (defined below every layer).
from sweepflow.settings import ConfigError

MaxFeatures = Literal["sqrt", "log2"] | float
ClassWeight = Literal["balanced", "balanced_subsample"] | None


class StrictModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class IntRange(StrictModel):
    """Inclusive integer bounds for one hyperparameter."""

    low: int = Field(ge=1)
    high: int = Field(ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class SearchSpace(StrictModel):
    """Bounds of the hyperparameter search; ``k_max=None`` means every encoded feature."""

    k_min: int = Field(default=1, ge=1)
    k_max: int | None = Field(default=None, ge=1)
    n_estimators: IntRange = IntRange(low=50, high=300, log=True)
    max_depth: IntRange = IntRange(low=3, high=24)
    allow_unlimited_depth: bool = True
    min_samples_split: IntRange = IntRange(low=2, high=32, log=True)
    min_samples_leaf: IntRange = IntRange(low=1, high=32, log=True)
    max_features: list[MaxFeatures] = Field(default_factory=lambda: ["sqrt", "log2", 0.5, 1.0])
    class_weight: list[ClassWeight] = Field(
        default_factory=lambda: [None, "balanced", "balanced_subsample"]
    )
    criterion: list[Literal["gini", "entropy", "log_loss"]] = Field(
        default_factory=lambda: ["gini", "entropy"]
    )
    max_samples: list[float | None] = Field(default_factory=lambda: [None, 0.5, 0.8])
    follow_data_size: bool = Field(
        default=True,
        description="Raise the upper bounds of min_samples_leaf and min_samples_split with the "
        "training rows (one per 500 rows when that is above the bound given): large data needs "
        "larger leaves. False: the bounds exactly as given.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpace:
        if self.k_max is not None and self.k_min > self.k_max:
            raise ValueError(f"k_min ({self.k_min}) must not exceed k_max ({self.k_max})")
        for name in ("max_features", "class_weight", "criterion", "max_samples"):
            if not getattr(self, name):
                raise ValueError(f"{name} needs at least one choice")
        for value in self.max_features:
            if isinstance(value, float) and not 0.0 < value <= 1.0:
                raise ValueError(f"max_features fraction {value} must be in (0, 1]")
        for value in self.max_samples:
            if value is not None and not 0.0 < value <= 1.0:
                raise ValueError(f"max_samples fraction {value} must be in (0, 1]")
        return self


class DataConfig(StrictModel):
    """Where the rows come from: a data file of the bank-churn schema, or the generator."""

    path: Path | None = Field(
        default=None,
        description="Data of the bank-churn schema: CSV, CSV compressed as .gz/.bz2/.xz/.zip, "
        "or Parquet; None uses the built-in data.",
    )
    target: str = Field(default="Exited", min_length=1)
    synthetic_rows: int = Field(
        default=4000, ge=100, le=2_000_000, description="Rows generated when path is None."
    )
    synthetic_seed: int = 0
    sample_rows: int | None = Field(
        default=None, ge=50, description="Use a stratified sample of this many rows."
    )


class SweepConfig(StrictModel):
    """Everything one sweep needs; validated before any work starts."""

    data: DataConfig = DataConfig()
    n_trials: int = Field(default=20, ge=1, le=10_000)
    parallel: int = Field(default=2, ge=1, le=64, description="Trials run at once.")
    cv_folds: int = Field(default=3, ge=2, le=20)
    min_class_rows: int = Field(
        default=10,
        ge=1,
        le=100_000,
        description="Rows of each class needed in the holdout and in every CV fold for the "
        "sweep to judge a model; lower it on purpose only for tiny experiments.",
    )
    test_size: float = Field(default=0.2, gt=0.0, lt=0.9)
    seed: int = 42
    experiment_name: str = Field(default="bank-churn-sweep", min_length=1, max_length=200)
    model_name: str = Field(default="bank-churn-classifier", min_length=1, max_length=200)
    study_name: str | None = Field(
        default=None, description="Optuna study name; None makes a fresh one per sweep."
    )
    pruner: Literal["median", "none"] = "median"
    search_space: SearchSpace = SearchSpace()
    skops_path: Path | None = Field(
        default=None, description="Where to write the best model; None: mlruns/models/."
    )
    trial_retries: int = Field(default=1, ge=0, le=5)
    timeout: float | None = Field(
        default=None,
        gt=0,
        le=7 * 24 * 3600,
        description="Wall-clock budget of the search in seconds, from the sweep's start: no "
        "trial starts that the trials so far say cannot finish in it; the best is still "
        "refit, registered and recorded. None: no time limit.",
    )
    patience: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description="Stop when this many trials in a row (of this sweep) brought no gain above "
        "min_improvement over the best so far. None: never stop for that.",
    )
    min_improvement: float = Field(
        default=0.0,
        ge=0.0,
        lt=1.0,
        description="The CV ROC AUC gain a trial must bring to count as an improvement.",
    )
    target_value: float | None = Field(
        default=None,
        gt=0.0,
        le=1.0,
        description="Stop once a trial reaches this CV ROC AUC. None: no target.",
    )
    task_runner: Literal["threads", "dask"] = Field(
        default="threads",
        description="Where trials run: this process's thread pool, or a Dask cluster.",
    )
    dask_address: str | None = Field(
        default=None,
        min_length=1,
        description="Scheduler of an existing Dask cluster (tcp://host:8786); "
        "None starts a local cluster for the sweep.",
    )
    dask_workers: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Worker processes of the local Dask cluster; None: one per core.",
    )
    team: bool = Field(
        default=False,
        description="Sweeps of this study run on several machines (the team deployment); "
        "the preflight then insists on network backends every machine reaches.",
    )

    @model_validator(mode="after")
    def _dask_settings(self) -> SweepConfig:
        if self.task_runner != "dask":
            for key in ("dask_address", "dask_workers"):
                if getattr(self, key) is not None:
                    raise ValueError(f"{key} needs task_runner: dask")
        if self.dask_address is not None and self.dask_workers is not None:
            raise ValueError(
                "dask_workers sizes the local cluster; with dask_address the cluster "
                "is yours to size"
            )
        return self

    @model_validator(mode="after")
    def _fits_folds(self) -> SweepConfig:
        if self.data.sample_rows is not None and self.data.sample_rows < 10 * self.cv_folds:
            raise ValueError(
                f"data.sample_rows ({self.data.sample_rows}) is too small for "
                f"{self.cv_folds} CV folds; use at least {10 * self.cv_folds}"
            )
        return self


def describe_validation_error(error: ValidationError, prefix: str = "config") -> str:
    """One line per problem, naming the dotted key, e.g. ``config.n_trials: ...``."""
    lines = []
    for item in error.errors():
        location = ".".join(str(part) for part in (prefix, *item["loc"]))
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key (check its spelling)"
        lines.append(f"{location}: {message} (got {item.get('input')!r})")
    return "; ".join(lines)


def parse_config(raw: dict | SweepConfig | None) -> SweepConfig:
    """Validate raw settings into a :class:`SweepConfig`, raising :class:`ConfigError`."""
    if isinstance(raw, SweepConfig):
        return raw
    try:
        return SweepConfig.model_validate(raw or {})
    except ValidationError as error:
        raise ConfigError(
            f"invalid sweep configuration: {describe_validation_error(error)}"
        ) from None
