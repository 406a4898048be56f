"""The Markdown tables of a study's README, from its ``aggregate/cells.csv`` and ``stats/comparisons.csv``.

    python scripts/study_tables.py results/cpu-study              # print them
    python scripts/study_tables.py results/cpu-study --check      # exit 1 unless README.md holds each line

So the numbers a README quotes are the numbers its files hold, and a rerun that changes them is caught.
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path


def _pct(value: str) -> str:
    return f"{100 * float(value):.1f}"


def _signed(value: str) -> str:
    return f"{100 * float(value):+.1f}"


def _p(value: str) -> str:
    return f"{float(value):.3g}" if value else "n/a"


def _mdd(value: str) -> str:
    return f"{100 * float(value):.1f}" if value and not math.isnan(float(value)) else "n/a"


def cell_table(rows: list[dict[str, str]], benchmark: str) -> list[str]:
    mine = [r for r in rows if r["benchmark"] == benchmark]
    seeds = mine[0]["seed_list"]
    lines = [
        f"**{benchmark}** ({mine[0]['n_tasks']} tasks, seeds {seeds}): Pass@1 and SoftPass@1 in %, mean ± SD over "
        "seeds; calls and tokens per task, mean",
        "",
        "| strategy | Pass@1 | SoftPass@1 | generator calls | rewriter calls | tokens |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in mine:
        lines.append(
            f"| {r['strategy']} | {_pct(r['pass_at_1_mean'])} ± {_pct(r['pass_at_1_std'] or '0')} "
            f"| {_pct(r['soft_pass_at_1_mean'])} ± {_pct(r['soft_pass_at_1_std'] or '0')} "
            f"| {float(r['generator_calls_mean']):.2f} | {float(r['rewriter_calls_mean']):.2f} "
            f"| {float(r['tokens_mean']):.0f} |"
        )
    return lines


def comparison_table(rows: list[dict[str, str]], benchmark: str) -> list[str]:
    mine = [r for r in rows if r["benchmark"] == benchmark]
    if not mine:
        return []
    reference = mine[0]["reference"]
    lines = [
        f"**{benchmark}: {reference} minus each strategy** (percentage points; 95 % hierarchical-bootstrap CI over "
        f"seeds then tasks; p Holm-corrected over the {len(mine)} comparisons; MDD: the Pass@1 difference "
        "detectable with 80 % power over these tasks)",
        "",
        f"| strategy | ΔPass@1 [95 % CI] | p (Holm) | ΔSoftPass@1 [95 % CI] | p (Holm) | tasks only {reference} / "
        "only other passes (in > half the seeds) | MDD Pass@1 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in mine:
        lines.append(
            f"| {r['strategy']} "
            f"| {_signed(r['pass_diff'])} [{_signed(r['pass_ci_low'])}, {_signed(r['pass_ci_high'])}] "
            f"| {_p(r['p_pass_holm'])} "
            f"| {_signed(r['soft_diff'])} [{_signed(r['soft_ci_low'])}, {_signed(r['soft_ci_high'])}] "
            f"| {_p(r['p_soft_holm'])} | {r['only_reference']} / {r['only_other']} | {_mdd(r['mdd_pass_tasks'])} |"
        )
    return lines


def tables(results: Path) -> list[str]:
    with open(results / "aggregate" / "cells.csv", newline="") as handle:
        cells = list(csv.DictReader(handle))
    with open(results / "stats" / "comparisons.csv", newline="") as handle:
        comparisons = list(csv.DictReader(handle))
    lines: list[str] = []
    for benchmark in dict.fromkeys(r["benchmark"] for r in cells):
        lines += [*cell_table(cells, benchmark), ""]
    for benchmark in dict.fromkeys(r["benchmark"] for r in cells):
        lines += [*comparison_table(comparisons, benchmark), ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("--check", action="store_true", help="check README.md in RESULTS holds every table line")
    args = parser.parse_args(argv)
    lines = tables(args.results)
    if not args.check:
        print("\n".join(lines))
        return 0
    readme = set((args.results / "README.md").read_text().splitlines())
    missing = [line for line in lines if line.startswith("|") and line not in readme]
    for line in missing:
        print(f"not in {args.results / 'README.md'}: {line}", file=sys.stderr)
    print(f"{args.results / 'README.md'}: {len(missing)} table lines differ from cells.csv / comparisons.csv")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
