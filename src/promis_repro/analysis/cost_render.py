"""The bill before the run (``analysis.cost.estimate``) as the fixed-width text ``promis-repro cost`` prints."""

from __future__ import annotations

from typing import Any


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 7200 else f"{seconds / 3600:.1f} h"


def _hours(hours: float) -> str:
    return f"{hours:,.0f}" if hours >= 100 else f"{hours:.1f}" if hours >= 1 else f"{hours:.2f}"


def _fixed_width(rows: list[tuple[str, ...]], left: tuple[int, ...]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            text.ljust(w) if i in left else text.rjust(w) for i, (text, w) in enumerate(zip(row, widths))
        ).rstrip()
        for row in rows
    ]


def _row(r: dict[str, Any]) -> tuple[str, ...]:
    sources = ", ".join(f"{name} {n}" for name, n in r["sources"].items())
    if r["over_runtime"]:
        sources += f"; {r['over_runtime']} over the {r['runtime_hours']:g} h runtime asked for"
    if r["local"]:  # where Snakemake runs: no cluster time to bill
        billed = ("-", "-")
    else:
        unit = "GPU-h" if r["gpus"] else "CPU-h"
        total, left = (r["gpu_hours"], r["gpu_hours_to_run"]) if r["gpus"] else (r["cpu_hours"], r["cpu_hours_to_run"])
        billed = (f"{_hours(total)} {unit}", f"{_hours(left)} {unit}")
    per_job = _duration(3600 * r["hours_per_job"])
    return (r["rule"], str(r["jobs"]), str(r["to_run"]), r["device"], per_job, *billed, sources)


def render(bill: dict[str, Any]) -> str:
    """The bill as a fixed-width table, its totals and where its numbers come from."""
    rows = [("rule", "jobs", "to run", "resources", "per job", "total", "to run", "source of the estimate (jobs)")]
    rows += [_row(r) for r in bill["rules"]]
    t, shape, recorded = bill["totals"], bill["grid"], bill["recorded"]
    local = [r["rule"] for r in bill["rules"] if r["local"]]
    sizes = " x ".join(f"{len(shape[key])} {key}" for key in ("generators", "benchmarks", "strategies", "seeds"))
    sizes += f" x feedback {' and '.join(shape['variants'])}"
    return (
        "\n".join(
            [
                f"Grid: {sizes}; tasks per benchmark: {shape['limit'] or 'all'} ({bill['task_results']:,} task "
                f"results); results: {bill['results']}",
                *_fixed_width(rows, left=(0, 3, 7)),
                f"Total: {t['cluster_jobs']:,} cluster jobs ({t['cluster_jobs_to_run']:,} to run); "
                f"{t['gpu_jobs']:,} GPU jobs, {t['gpu_hours']:,.1f} GPU-hours ({t['gpu_jobs_to_run']:,} jobs, "
                f"{t['gpu_hours_to_run']:,.1f} GPU-hours to run); {t['cpu_hours']:,.1f} CPU core-hours "
                f"({t['cpu_hours_to_run']:,.1f} to run). "
                f"Local (localrules, where Snakemake runs, not billed): {', '.join(local) or 'none'}.",
                f"Sources: benchmark = Snakemake benchmark files under {bill['results']}/benchmarks/; cost.json = "
                "earlier runs of the same model x benchmark x strategy and settings (seconds per task x the job's "
                f"tasks + start-up); table = {bill['table']} (ESTIMATES: {bill['gpu']} throughput guesses per "
                "model; data_split by the tasks it embeds, aggregate and the report stages by the grid's task "
                f"results). Recorded here: {recorded['cost.json']} cell runs, {recorded['benchmark']} benchmark "
                "files.",
            ]
        )
        + "\n"
    )
