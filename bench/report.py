"""The benchmark's results: medians and within-repetition ratios, the markdown table and the
targets, the machine's facts, and the saved ``results.json`` / ``table.md``.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any

from bench.plan import VARIANTS, Dataset, Measurement


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _ratio(
    by: dict[tuple[int, str], Measurement], repeats: list[int], num: str, den: str, metric: str
) -> float | None:
    """Median over repetitions of ``num``'s metric over ``den``'s, taken within a repetition."""
    values = []
    for r in repeats:
        a, b = by.get((r, num)), by.get((r, den))
        if a is not None and b is not None:
            top, bottom = getattr(a, metric), getattr(b, metric)
            if top is not None and bottom:
                values.append(top / bottom)
    return _median(values)


def _same_points(
    by: dict[tuple[int, str], Measurement], repeats: list[int], one: str, other: str
) -> bool | None:
    """Whether ``one`` and ``other`` ran the same points in every repetition (in any order);
    None when either did not run."""
    pairs = [(by.get((r, one)), by.get((r, other))) for r in repeats]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if not pairs:
        return None

    def points(m: Measurement) -> list[str]:
        return sorted(json.dumps(p, sort_keys=True) for p in m.params)

    return all(points(a) == points(b) for a, b in pairs)


def summarise(measurements: list[Measurement], datasets: list[Dataset]) -> dict[str, Any]:
    """Medians per variant and within-repetition ratios, per dataset."""
    summary: dict[str, Any] = {}
    for dataset in datasets:
        mine = [m for m in measurements if m.dataset == dataset.name]
        repeats = sorted({m.repeat for m in mine})
        by = {(m.repeat, m.variant): m for m in mine}
        rows: dict[str, dict[str, Any]] = {}
        for variant in VARIANTS:
            runs = [by[(r, variant.name)] for r in repeats if (r, variant.name) in by]
            if not runs:
                continue
            bare_name = f"bare-p{variant.parallel}"
            pairs = [(by[(m.repeat, bare_name)], m) for m in runs if (m.repeat, bare_name) in by]
            full = variant.trials is None
            timed = variant.kind != "bare"
            rows[variant.name] = {
                "kind": variant.kind,
                "wall": _median([m.wall for m in runs]),
                "whole": _median([m.whole for m in runs]),
                "whole_cpu": _median([m.whole_cpu for m in runs]),
                "whole_cpu_ratio": _median(
                    [
                        m.whole_cpu / b.whole_cpu
                        for b, m in pairs
                        if full and m.whole_cpu and b.whole_cpu
                    ]
                )
                if timed
                else None,
                # whole = to first trial + steady + after the last trial
                "to_first": _median([m.extra.get("first_trial_from_spawn") for m in runs]),
                "after_last": _median(
                    [
                        m.whole - m.extra["first_trial_from_spawn"] - m.steady
                        for m in runs
                        if m.whole and "first_trial_from_spawn" in m.extra
                    ]
                ),
                "whole_ratio": _median(
                    [m.whole / b.whole for b, m in pairs if full and m.whole and b.whole]
                )
                if timed
                else None,
                "steady": _median([m.steady for m in runs]),
                "per_trial": _median([m.per_trial for m in runs]),
                "trials_per_s": _median([m.trials_per_s for m in runs]),
                "overhead_ms": _median(
                    [1000 * (m.steady - b.steady) / m.trials for b, m in pairs if full]
                )
                if timed
                else None,
                "steady_ratio": _median([m.steady / b.steady for b, m in pairs if full])
                if timed
                else None,
                "steady_cpu": _median([m.steady_cpu for m in runs]),
                "cpu_ratio": _median([m.steady_cpu / b.steady_cpu for b, m in pairs if full])
                if timed
                else None,
                "cpu_overhead_ms": _median(
                    [1000 * (m.steady_cpu - b.steady_cpu) / m.trials for b, m in pairs if full]
                )
                if timed
                else None,
                "wall_ratio": _median([m.wall / b.wall for b, m in pairs if full])
                if timed
                else None,
                "peak_rss_mb": _median([m.peak_rss_mb for m in runs]),
                "rss_ratio": _median([m.peak_rss_mb / b.peak_rss_mb for b, m in pairs])
                if timed
                else None,
                "growth_mb": _median([m.growth_mb for m in runs]),
                "growth_ratio": _median(
                    [m.growth_mb / b.growth_mb for b, m in pairs if m.growth_mb and b.growth_mb]
                )
                if timed
                else None,
                "own_growth_mb": _median([m.own_growth_mb for m in runs if m.own_growth_mb]),
                "own_growth_ratio": _median(
                    [
                        m.own_growth_mb / b.own_growth_mb
                        for b, m in pairs
                        if m.own_growth_mb and b.own_growth_mb
                    ]
                )
                if timed
                else None,
                "server_rss_mb": _median([m.server_rss_mb for m in runs if m.server_rss_mb]),
                "ttft": _median([m.ttft for m in runs]),
                "imports": _median([m.imports for m in runs]),
                "server": _median([m.server for m in runs]),
                "trials": runs[0].trials,
                "states": runs[0].states,
                "same_trials_as_bare": all(m.params == b.params for b, m in pairs),
            }

        summary[dataset.name] = {
            "rows": rows,
            "repeats": len(repeats),
            "speedup_sweep": _ratio(by, repeats, "sweep-p2", "sweep-p1", "trials_per_s"),
            "speedup_bare": _ratio(by, repeats, "bare-p2", "bare-p1", "trials_per_s"),
            "speedup_same_trials": _same_points(by, repeats, "sweep-p2", "sweep-p1"),
            "ttft_first_over_cached": _ratio(by, repeats, "sweep-p2", "second-cached", "ttft"),
            "ttft_nocache_over_cached": _ratio(
                by, repeats, "second-nocache", "second-cached", "ttft"
            ),
            "server_vs_temporary_wall": _ratio(by, repeats, "sweep-p2-server", "sweep-p2", "wall"),
            # From spawn: a fresh command's first trial against a second sweep's in the warm
            # process of `sweepflow server start`.
            "to_first_fresh_over_warm": _median(
                [
                    by[(r, "command-p1")].extra["first_trial_from_spawn"]
                    / by[(r, "second-warm")].extra["first_trial_from_spawn"]
                    for r in repeats
                    if (r, "command-p1") in by and (r, "second-warm") in by
                ]
            ),
        }
    return summary


def _fmt(value: Any, spec: str = ".2f") -> str:
    if value is None:
        return "-"
    return format(value, spec)


def render(
    summary: dict[str, Any], datasets: list[Dataset], steady_targets: dict[str, float]
) -> str:
    """The markdown table and the targets, as printed and as published."""
    header = (
        "| data | variant | trials | whole s | whole xbare | to first trial s | steady s "
        "| after last trial s | s/trial | trials/s "
        "| overhead ms/trial "
        "| steady xbare | steady CPU s | CPU xbare | CPU overhead ms/trial "
        "| peak RSS MiB | RSS xbare | RSS growth MiB | growth xbare "
        "| own growth MiB | own growth xbare "
        "| first trial s | imports s | server start s |"
    )
    lines = [header, "|---|---|" + "---:|" * 22]
    for dataset in datasets:
        rows = summary[dataset.name]["rows"]
        for name, row in rows.items():
            rss = _fmt(row["peak_rss_mb"], ".0f")
            if row["server_rss_mb"]:
                rss += f" (+{row['server_rss_mb']:.0f} server)"
            lines.append(
                f"| {dataset.name} | {name} | {row['trials']} | {_fmt(row.get('whole'), '.1f')} "
                f"| {_fmt(row.get('whole_ratio'), '.3f')} | {_fmt(row.get('to_first'), '.1f')} "
                f"| {_fmt(row['steady'], '.1f')} | {_fmt(row.get('after_last'), '.1f')} "
                f"| {_fmt(row['per_trial'])} "
                f"| {_fmt(row['trials_per_s'], '.3f')} | {_fmt(row['overhead_ms'], '.0f')} "
                f"| {_fmt(row['steady_ratio'], '.3f')} | {_fmt(row['steady_cpu'], '.1f')} "
                f"| {_fmt(row['cpu_ratio'], '.3f')} | {_fmt(row['cpu_overhead_ms'], '.0f')} "
                f"| {rss} | {_fmt(row['rss_ratio'])} "
                f"| {_fmt(row['growth_mb'], '.0f')} | {_fmt(row['growth_ratio'])} "
                f"| {_fmt(row['own_growth_mb'], '.0f')} | {_fmt(row['own_growth_ratio'])} "
                f"| {_fmt(row['ttft'])} | {_fmt(row['imports'], '.1f')} "
                f"| {_fmt(row['server'], '.1f')} |"
            )
    lines.append("")
    lines.append("| target | data | measured | met |")
    lines.append("|---|---|---:|:---:|")
    for dataset in datasets:
        part = summary[dataset.name]
        rows = part["rows"]
        limit = steady_targets.get(dataset.name)
        for p in (1, 2):
            row = rows.get(f"sweep-p{p}")
            if row and limit and row["steady_ratio"] is not None:
                lines.append(
                    f"| steady state ≤ {limit:.2f}x bare (p{p}), wall | {dataset.name} "
                    f"| {row['steady_ratio']:.3f}x | {_yes(row['steady_ratio'] <= limit)} |"
                )
                lines.append(
                    f"| steady state ≤ {limit:.2f}x bare (p{p}), CPU | {dataset.name} "
                    f"| {row['cpu_ratio']:.3f}x | {_yes(row['cpu_ratio'] <= limit)} |"
                )
        for name in ("sweep-p1", "command-p1", "command-p1-server", "command-p1-server-cold"):
            row = rows.get(name)
            if row and row.get("whole_ratio") is not None:
                same = "" if row["same_trials_as_bare"] else "; **not the same trials**"
                cpu = row.get("whole_cpu_ratio")
                lines.append(
                    f"| whole process ≤ 1.25x bare (p1): {name} | {dataset.name} "
                    f"| {row['whole_ratio']:.3f}x ({row['whole']:.1f} s{same}); "
                    f"CPU {_fmt(cpu, '.3f')}x | {_yes(row['whole_ratio'] <= 1.25)} |"
                )
        speedup = part["speedup_sweep"]
        if speedup is not None:
            lines.append(
                f"| p2 ≥ 1.8x trials/s of p1 | {dataset.name} | {speedup:.2f}x "
                f"(bare: {_fmt(part['speedup_bare'])}x; "
                f"{'the same' if part['speedup_same_trials'] else '**not the same**'} trials) "
                f"| {_yes(speedup >= 1.8 and bool(part['speedup_same_trials']))} |"
            )
        for p in (1, 2):
            row = rows.get(f"sweep-p{p}")
            if row and row["own_growth_ratio"] is not None:
                # The process's own growth; its temporary server is a process of its own.
                lines.append(
                    f"| RSS growth after start-up ≤ 1.3x bare (p{p}) | {dataset.name} "
                    f"| {row['own_growth_ratio']:.2f}x; with its temporary server "
                    f"{_fmt(row['growth_ratio'])}x (peak: {_fmt(row['rss_ratio'])}x) "
                    f"| {_yes(row['own_growth_ratio'] <= 1.3)} |"
                )
        first = part["ttft_first_over_cached"]
        if first is not None:
            isolated = part["ttft_nocache_over_cached"]
            lines.append(
                f"| second sweep: first trial ≥ 3x sooner | {dataset.name} | {first:.1f}x "
                f"(cache alone: {_fmt(isolated, '.1f')}x) | {_yes(first >= 3)} |"
            )
        warm = part.get("to_first_fresh_over_warm")
        if warm is not None:
            fresh, second = rows["command-p1"]["to_first"], rows["second-warm"]["to_first"]
            lines.append(
                f"| second sweep: first trial ≥ 3x sooner, from spawn (fresh command; then in "
                f"the warm process of `sweepflow server start`) | {dataset.name} | {warm:.1f}x "
                f"({_fmt(fresh, '.1f')} s; {_fmt(second, '.1f')} s) | {_yes(warm >= 3)} |"
            )
    return "\n".join(lines)


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def machine_facts() -> dict[str, Any]:
    """What the figures depend on: cores, CPU, memory, load, versions."""
    facts: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        facts["cpu"] = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.splitlines()
                if "model name" in line
            ),
            "unknown",
        )
        meminfo = Path("/proc/meminfo").read_text().split()
        facts["memory_gib"] = round(int(meminfo[meminfo.index("MemTotal:") + 1]) / 2**20, 1)
        facts["loadavg"] = Path("/proc/loadavg").read_text().split()[:3]
    except (OSError, ValueError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    packages = {}
    for name in ("prefect", "mlflow", "optuna", "scikit-learn", "pandas", "numpy", "pyarrow"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    facts["packages"] = packages
    return facts


def save(
    out: Path,
    command: str,
    facts: dict[str, Any],
    space: dict[str, Any],
    measurements: list[Measurement],
    datasets: list[Dataset],
) -> tuple[dict[str, Any], str]:
    """Write results.json (every measurement, the summary) and table.md; return both."""
    names = {m.dataset for m in measurements}
    done = [d for d in datasets if d.name in names]
    summary = summarise(measurements, done)
    table = render(summary, done, {done[0].name: 1.10, "165k": 1.03} if done else {})
    (out / "results.json").write_text(
        json.dumps(
            {
                "command": command,
                "machine": facts,
                "space": space,
                "datasets": [d.__dict__ for d in datasets],
                "summary": summary,
                "measurements": [m.__dict__ for m in measurements],
            },
            indent=1,
            default=str,
        )
    )
    (out / "table.md").write_text(table + "\n")
    return summary, table


def resummarise(path: Path) -> str:
    """The table of a saved (maybe interrupted) run's results.json."""
    saved = json.loads(path.read_text())
    measurements = [Measurement(**m) for m in saved["measurements"]]
    datasets = [Dataset(**d) for d in saved["datasets"]]
    _, table = save(
        path.parent, saved["command"], saved["machine"], saved["space"], measurements, datasets
    )
    return table
