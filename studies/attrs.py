"""The attribute keys sweepflow writes on Optuna studies and trials: their one home."""

#: The model params a trial ran with (as used, after the search space's mapping).
ATTR_PARAMS = "params"
#: The MLflow parent run of the sweep that ran the trial (the sweep's id).
ATTR_SWEEP_RUN = "sweep_run_id"
#: The Prefect flow run of that sweep.
ATTR_FLOW_RUN = "flow_run_id"
#: Which champion a warm-start trial repeats.
ATTR_WARM_START = "warm_start_from"
#: Study attributes ``sweep:<id>``: each sweep's record (budget, host, pid, heartbeat).
ATTR_SWEEP_PREFIX = "sweep:"
#: A trial failed because its sweep's process died (set by the reaper).
ATTR_REAPED = "reaped"
#: The number of the lost trial a retry repeats.
ATTR_RETRY_OF = "retry_of"
#: Why a trial failed, set by the sweep that tells Optuna so. A FAIL trial without it was failed
#: for its dead process (by the heartbeat or the reaper), not by its own error.
ATTR_FAIL_REASON = "fail_reason"
#: Optuna's own system attribute naming the trial a heartbeat retry repeats.
OPTUNA_FAILED_TRIAL = "failed_trial"

#: Attributes of one run of a trial rather than of its point: a retry starts without them.
RUN_ATTRS = frozenset({ATTR_SWEEP_RUN, ATTR_FLOW_RUN, ATTR_REAPED, ATTR_FAIL_REASON})
