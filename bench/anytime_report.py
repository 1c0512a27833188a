"""The time-to-quality benchmark's report: its table, its plot, the machine, the saved run
(``bench/anytime.py`` measures)."""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any

import optuna


def incumbents(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The completed trials that improved the best CV AUC, in the order they ended."""
    best, found = None, []
    for row in sorted(result["trials"], key=lambda r: r["end"]):
        if row["state"] == "COMPLETE" and (best is None or row["value"] > best):
            best = row["value"]
            found.append(row)
    return found


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(runs: list[dict[str, Any]]) -> str:
    """One row per seed and a median row (ratios taken within a seed first)."""
    lines = [
        "| seed | load avg (1 min) before bare / ours | bare trials (done/pruned) "
        "| bare wall s | bare CPU s | bare best CV | bare holdout | ours trials "
        "(done/pruned/cut) | ours best CV | ours holdout | ours at bare's holdout s "
        "| as share of bare wall | ours at bare's CV s |",
        "|---:|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|",
    ]
    shares = []
    for run in runs:
        bare, ours, verdict = run["bare"], run["ours"], run["verdict"]
        b, o = bare["states"], ours["states"]
        share = (
            None
            if verdict["reached_holdout_s"] is None
            else verdict["reached_holdout_s"] / bare["wall"]
        )
        shares.append(share)
        lines.append(
            f"| {run['seed']} | {bare['load_before'][0]:.1f} / {ours['load_before'][0]:.1f} "
            f"| {b.get('COMPLETE', 0)}/{b.get('PRUNED', 0)} | {bare['wall']:.0f} "
            f"| {bare['cpu']:.0f} | {verdict['bare_cv']:.5f} | {verdict['bare_holdout']:.5f} "
            f"| {o.get('COMPLETE', 0)}/{o.get('PRUNED', 0)}/{o.get('CUT', 0)} "
            f"| {_fmt(verdict['ours_cv'], '.5f')} | {_fmt(verdict['ours_holdout'], '.5f')} "
            f"| {_fmt(verdict['reached_holdout_s'], '.0f')} | {_fmt(share, '.2f')} "
            f"| {_fmt(verdict['reached_cv_s'], '.0f')} |"
        )
    if len(runs) > 1:

        def med(values: list[float | None]) -> float | None:
            # a seed that never reached counts as infinitely late
            known = [v if v is not None else float("inf") for v in values]
            found = statistics.median(known) if known else None
            return None if found is None or found == float("inf") else found

        verdicts = [r["verdict"] for r in runs]
        lines.append(
            f"| median | | | {statistics.median(r['bare']['wall'] for r in runs):.0f} "
            f"| {statistics.median(r['bare']['cpu'] for r in runs):.0f} "
            f"| {statistics.median(v['bare_cv'] for v in verdicts):.5f} "
            f"| {statistics.median(v['bare_holdout'] for v in verdicts):.5f} | "
            f"| {_fmt(med([v['ours_cv'] for v in verdicts]), '.5f')} "
            f"| {_fmt(med([v['ours_holdout'] for v in verdicts]), '.5f')} "
            f"| {_fmt(med([v['reached_holdout_s'] for v in verdicts]), '.0f')} "
            f"| {_fmt(med(shares), '.2f')} "
            f"| {_fmt(med([v['reached_cv_s'] for v in verdicts]), '.0f')} |"
        )
    return "\n".join(lines) + "\n"


def plot(runs: list[dict[str, Any]], path: Path) -> None:
    """Best CV AUC so far against wall seconds, every seed; holdout AUC at the end as a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 4.8))
    colours = {"bare": "tab:blue", "ours": "tab:orange"}
    labels = {"bare": "bare Optuna loop", "ours": "our search"}
    for index, run in enumerate(runs):
        for kind in ("bare", "ours"):
            steps = incumbents(run[kind])
            if not steps:
                continue
            xs = [r["end"] for r in steps] + [run[kind]["wall"]]
            ys = [r["value"] for r in steps] + [steps[-1]["value"]]
            axis.step(
                xs,
                ys,
                where="post",
                color=colours[kind],
                alpha=0.85,
                linestyle=("-", "--", ":")[index % 3],
                label=f"{labels[kind]}, seed {run['seed']} (CV)",
            )
            final = run["verdict"][f"{kind}_holdout"]
            if final is not None:
                axis.scatter([run[kind]["wall"]], [final], color=colours[kind], marker="o", s=25)
        half = run["bare"]["wall"] / 2
        axis.axvline(half, color="grey", linewidth=0.6, linestyle=("-", "--", ":")[index % 3])
    all_values = [
        r["value"] for run in runs for kind in ("bare", "ours") for r in incumbents(run[kind])
    ]
    if all_values:
        top = max(all_values + [v for run in runs for v in _holdouts(run)])
        axis.set_ylim(max(min(all_values), top - 0.012), top + 0.001)
    axis.set_xlabel("wall seconds since the first trial started")
    axis.set_ylabel("ROC AUC (lines: best CV so far; dots: final holdout)")
    axis.set_title("Time to quality (grey lines: half of the bare loop's time)")
    axis.grid(alpha=0.3)
    axis.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _holdouts(run: dict[str, Any]) -> list[float]:
    verdict = run["verdict"]
    return [v for v in (verdict["bare_holdout"], verdict["ours_holdout"]) if v is not None]


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    import sklearn

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "optuna": optuna.__version__,
        "scikit-learn": sklearn.__version__,
        "platform": platform.platform(),
    }


def save(out: Path, report: dict[str, Any]) -> None:
    """Write results.json, table.md and anytime.png (again after every variant)."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=1, default=str))
    finished = [run for run in report["runs"] if "verdict" in run]
    if finished:
        (out / "table.md").write_text(table(finished))
        plot(finished, out / "anytime.png")
