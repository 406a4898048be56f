#!/usr/bin/env bash
# The pipeline checks of CI, after the unit tests:
#   1. the main job (config/tiny.yaml) end to end with -c2, then a second invocation that must do nothing;
#      its cells show signal; its report has every table and figure;
#   2. every strategy and benchmark (config/tiny-every-strategy.yaml) end to end, with its report;
#   3. a run killed midway (SIGKILL) and rerun: same metrics, no corrupt file;
#   4. the paper protocol as a labelled ablation beside ours;
#   5. one full cell through a real one-node SLURM cluster (scripts/slurm-cluster.sh), stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
SNAKEMAKE=.venv/bin/snakemake
export PATH="$PWD/.venv/bin:$PATH"
log() { echo "[ci-pipeline $(date +%T)] $*"; }
# .ci/run finds the benchmark data; the configs' own data_dir (../shared/data) holds for a checkout beside it
DATA_DIR=$(cd "${PROMIS_REPRO_DATA_DIR:-../shared/data}" && pwd)
TINY=(--configfile config/tiny.yaml --config "data_dir=$DATA_DIR")

# every table and figure the rules name is in a run's report, with captions; MBPP cells on the test split
# only; one budget; budget curves for every strategy; a clean leakage audit
check_report() {
    .venv/bin/python - "$1" "$2" <<'PY'
import csv, json, pathlib, sys
import yaml
from promis_repro.grid import FIGURES, LEAKAGE_AUDIT, table_names
config, root = yaml.safe_load(open(sys.argv[1])), pathlib.Path(sys.argv[2])
page = (root / "report.html").read_text(encoding="utf-8")
names = [f"{t}.html" for t in table_names(config["benchmarks"], ["visible"])] + [f"{LEAKAGE_AUDIT}.html"]
names += [f"{f}.png" for f in FIGURES] + ["comparisons.csv", "cells.csv", "provenance.html", "decontamination"]
missing = [name for name in names if name not in page]
assert not missing, f"not in {root}/report.html: {missing}"
assert "Holm-Bonferroni" in page and "hierarchical bootstrap" in page, "report captions missing"
print(f"{root}/report.html: {len(names)} tables, figures and appendices with captions")
mbpp = list(root.glob("*/mbpp/*/seed*/results.jsonl"))
ids = {int(json.loads(line)["task_id"]) for path in mbpp for line in path.read_text().splitlines()}
assert mbpp and ids and all(11 <= i <= 510 for i in ids), ids
cells = list(csv.DictReader(open(root / "aggregate" / "cells.csv")))
assert len({cell["budget"] for cell in cells}) == 1, f"the strategies of {root} had different budgets"
curve = list(csv.DictReader(open(root / "aggregate" / "budget_curve.csv")))
assert {int(row["k"]) for row in curve} == {1, 2} and {row["strategy"] for row in curve} == set(config["strategies"])
audit = list(csv.DictReader(open(root / "tables" / "leakage_audit.csv")))
assert audit and all(int(row[f"{kind}_matches"]) == 0 for row in audit for kind in ("id", "text", "embedding"))
print(f"MBPP test split ids {sorted(ids)}; one budget; budget curves for {len(cells)} cells; leakage audit clean")
PY
}

log "tiny pipeline (the main job), -c2, as README's main command runs it (progress lines, then the report)"
rm -rf results/tiny
start=$(date +%s)
.venv/bin/promis-repro pipeline --report results/tiny/report.html -- "${TINY[@]}" -c2 | tee results/tiny-pipeline.out
log "tiny pipeline done in $(( $(date +%s) - start )) s"
# one progress line per finished job, each with an ETA
finished=$(grep -cE "^\[[0-9]+:[0-9]{2}:[0-9]{2}\] [0-9]+/[0-9]+ jobs \([0-9]+%\)  .*  ETA " results/tiny-pipeline.out || true)
total=$(grep -oE "[0-9]+/[0-9]+ jobs" results/tiny-pipeline.out | tail -1 | cut -d/ -f2 | cut -d' ' -f1)
[ "$finished" -gt 0 ] && [ "$finished" -eq "$total" ] \
    || { echo "expected one progress line per job ($total), got $finished" >&2; exit 1; }
second=$($SNAKEMAKE "${TINY[@]}" -c2 2>&1)
grep -q "Nothing to be done" <<<"$second" || { echo "$second"; echo "second invocation was not a no-op" >&2; exit 1; }
log "second invocation: nothing to do"
# the main job shows signal: generations long enough to finish a function pass tests in several cells
.venv/bin/python - <<'PY'
import csv
cells = list(csv.DictReader(open("results/tiny/aggregate/cells.csv")))
scored = [c for c in cells if float(c["pass_at_1_mean"]) > 0 or float(c["soft_pass_at_1_mean"]) > 0]
assert len(scored) >= 3, f"only {len(scored)} of {len(cells)} tiny cells have a non-zero Pass@1 or SoftPass@1"
print(f"signal: {len(scored)} of {len(cells)} cells with a non-zero Pass@1 or SoftPass@1")
PY
check_report config/tiny.yaml results/tiny

log "every strategy and benchmark (config/tiny-every-strategy.yaml), -c2, with its report"
EVERY=(--configfile config/tiny-every-strategy.yaml --config "data_dir=$DATA_DIR")
rm -rf results/tiny-every-strategy
start=$(date +%s)
.venv/bin/promis-repro pipeline --report results/tiny-every-strategy/report.html -- "${EVERY[@]}" -c2 >results/tiny-every-strategy.out
log "every-strategy pipeline done in $(( $(date +%s) - start )) s"
check_report config/tiny-every-strategy.yaml results/tiny-every-strategy

log "kill midway and rerun (the tiny config's direct and ga_only cells on MBPP's test split, own empty cache)"
rm -rf results/tiny-killed
SUBSET=("${TINY[@]}" results=results/tiny-killed 'strategies=["direct","ga_only"]' 'benchmarks=["mbpp"]')
# an empty cache, so the kill lands in the middle of real generation (the cache and the outputs must both
# survive it); seeds make generation deterministic, so the metrics must still equal the full run's
export PROMIS_REPRO_CACHE="$PWD/results/tiny-killed-cache"
rm -rf "$PROMIS_REPRO_CACHE"
# its own session, so that SIGKILL to the group takes every job process with it (as a node failure would)
setsid $SNAKEMAKE "${SUBSET[@]}" -c2 --quiet rules &
pid=$!
for _ in $(seq 1 3000); do
    n=$(find results/tiny-killed -name samples.jsonl 2>/dev/null | wc -l || true)
    [ "$n" -ge 1 ] && break
    sleep 0.1
done
kill -KILL -- "-$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
if pgrep -f "results/tiny-killed" >/dev/null; then echo "job processes survived the kill" >&2; exit 1; fi
n=$(find results/tiny-killed -name samples.jsonl | wc -l)
[ "$n" -lt 4 ] || { echo "the run finished before it was killed" >&2; exit 1; }
log "killed with $n of 4 cells run; rerunning"
# a killed Snakemake leaves its lock behind; --unlock is the documented recovery before the rerun
$SNAKEMAKE "${SUBSET[@]}" --unlock
$SNAKEMAKE "${SUBSET[@]}" -c2 --quiet rules --rerun-incomplete
.venv/bin/python - <<'PY'
import csv, json, pathlib
def cells(root):
    rows = list(csv.DictReader(open(f"{root}/aggregate/per_seed.csv")))
    return sorted((r["model"], r["benchmark"], r["strategy"], r["seed"], r["pass_at_1"], r["soft_pass_at_1"]) for r in rows)
killed = cells("results/tiny-killed")
full = [row for row in cells("results/tiny") if row[1] == "mbpp" and row[2] in ("direct", "ga_only")]
assert killed == full and len(killed) == 4, ("metrics differ after kill and rerun", killed, full)
# generation is seeded, so the rerun's solutions must equal the uninterrupted run's, text for text
for path in pathlib.Path("results/tiny-killed").rglob("samples.jsonl"):
    twin = pathlib.Path("results/tiny") / path.relative_to("results/tiny-killed")
    ours = [(r["task_id"], r["solution"]) for r in map(json.loads, path.read_text().splitlines())]
    theirs = [(r["task_id"], r["solution"]) for r in map(json.loads, twin.read_text().splitlines())]
    assert ours == theirs, f"{path}: solutions differ from {twin} after kill and rerun"
for path in pathlib.Path("results/tiny-killed").rglob("*.json"):
    json.loads(path.read_text())  # no truncated file
for path in pathlib.Path("results/tiny-killed").rglob("*.jsonl"):
    [json.loads(line) for line in path.read_text().splitlines()]
print("kill and rerun: same solutions and metrics, every JSON file complete")
PY
unset PROMIS_REPRO_CACHE

log "the paper protocol (config/paper-protocol.yaml) on the tiny settings: direct and ppo on the MBPP test split"
rm -rf results/tiny-paper
PAPER=(--configfile config/tiny.yaml config/paper-protocol.yaml --config "data_dir=$DATA_DIR" results=results/tiny-paper
       compare_with=results/tiny 'benchmarks=["mbpp"]' 'strategies=["direct","ppo"]')
$SNAKEMAKE "${PAPER[@]}" -c2 --quiet rules
.venv/bin/python - <<'PY'
import json, pathlib
table = pathlib.Path("results/tiny-paper/tables/mbpp_oracle.md").read_text()
assert "PAPER PROTOCOL" in table and "LEAKY" in table, "the paper protocol's table is not labelled"
import csv
rows = list(csv.DictReader(open("results/tiny-paper/tables/protocol_comparison.csv")))
assert rows and all(row["Pass@1 (ours)"] != "not run" for row in rows), rows
training = json.loads(pathlib.Path("results/tiny-paper/agents/ppo/smollm2-135m-instruct/seed1/training.json").read_text())
assert training["protocol"] == "paper" and training["train_feedback"] == "all"
assert training["ppo_config"]["policy"] == "shared" and training["ppo_config"]["truncation_is_terminal"]
print("paper protocol: labelled tables, side by side with ours, agent trained the public code's way")
PY

log "one cell through SLURM"
scripts/slurm-cluster.sh start
trap 'scripts/slurm-cluster.sh stop' EXIT
rm -rf results/slurm-ci
timeout -s INT -k 30 900 $SNAKEMAKE --profile profiles/slurm-ci --configfile config/slurm-ci.yaml --config "data_dir=$DATA_DIR" 2>&1 | tee results/slurm-ci.log
test -s results/slurm-ci/aggregate/cells.csv
test -s results/slurm-ci/agents/ppo/smollm2-135m-instruct/seed1/training.json
# every job but the local rules (all, strategy_config) went through sbatch
submitted=$(grep -c "has been submitted with SLURM jobid" results/slurm-ci.log || true)
[ "$submitted" -ge 10 ] || { echo "only $submitted jobs went through SLURM" >&2; exit 1; }
# GPU rules on the gpu partition with the fake A100, as profiles/slurm asks; nothing else there
# (finished jobs stay in scontrol for MinJobAge = 300 s; the comment names each job's rule)
jobs=$(scontrol show job -o)
for rule in run_cell train_agent; do
    # (here-strings, not `echo | grep -q`: under pipefail the writer's SIGPIPE would fail a match)
    rule_jobs=$(grep "Comment=rule_${rule}_" <<<"$jobs" || true)
    grep -q "Partition=gpu .*TresPerJob=gres:gpu:a100:1" <<<"$rule_jobs" \
        || { echo "rule $rule did not ask for the gpu partition and an A100" >&2; exit 1; }
done
cpu_jobs=$(grep -E "Comment=rule_(evaluate_cell|aggregate|data_split)" <<<"$jobs" || true)
if grep -q "Partition=gpu " <<<"$cpu_jobs"; then
    echo "a CPU rule went to the gpu partition" >&2
    exit 1
fi
grep -q "strategy_config" results/slurm-ci.log && ! grep -q "Comment=rule_strategy_config" <<<"$jobs" \
    || { echo "strategy_config was submitted to SLURM (it is a local rule)" >&2; exit 1; }
log "SLURM cell done"
