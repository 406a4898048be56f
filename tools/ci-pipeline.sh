#!/usr/bin/env bash
# The pipeline checks of CI, after the unit tests:
#   1. the tiny config end to end with -c2, then a second invocation that must do nothing;
#   2. a run killed midway (SIGKILL) and rerun: same metrics, no corrupt file;
#   3. one full cell through a real one-node SLURM cluster (tools/slurm-cluster.sh), stopped by PID.
set -euo pipefail
cd "$(dirname "$0")/.."
SNAKEMAKE=.venv/bin/snakemake
export PATH="$PWD/.venv/bin:$PATH"
log() { echo "[ci-pipeline $(date +%T)] $*"; }

log "tiny pipeline, -c2"
rm -rf results/tiny
start=$(date +%s)
$SNAKEMAKE --configfile config/tiny.yaml -c2 --quiet rules
log "tiny pipeline done in $(( $(date +%s) - start )) s"
second=$($SNAKEMAKE --configfile config/tiny.yaml -c2 2>&1)
echo "$second" | grep -q "Nothing to be done" || { echo "$second"; echo "second invocation was not a no-op" >&2; exit 1; }
log "second invocation: nothing to be done"

log "kill midway and rerun (the tiny config's direct and ga_only cells on MBPP+)"
rm -rf results/tiny-killed
SUBSET=(--configfile config/tiny.yaml --config results=results/tiny-killed 'strategies=["direct","ga_only"]' 'benchmarks=["mbppplus"]')
# its own session, so that SIGKILL to the group takes every job process with it (as a node failure would)
setsid $SNAKEMAKE "${SUBSET[@]}" -c2 --quiet rules &
pid=$!
for _ in $(seq 1 1500); do
    n=$(find results/tiny-killed -name metrics.json 2>/dev/null | wc -l)
    [ "$n" -ge 1 ] && break
    sleep 0.2
done
kill -KILL -- "-$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
if pgrep -f "results/tiny-killed" >/dev/null; then echo "job processes survived the kill" >&2; exit 1; fi
log "killed with $(find results/tiny-killed -name metrics.json | wc -l) cells scored; rerunning"
$SNAKEMAKE "${SUBSET[@]}" -c2 --quiet rules --rerun-incomplete
.venv/bin/python - <<'PY'
import csv, json, pathlib
def cells(root):
    rows = list(csv.DictReader(open(f"{root}/aggregate/per_seed.csv")))
    return sorted((r["model"], r["benchmark"], r["strategy"], r["seed"], r["pass_at_1"], r["soft_pass_at_1"]) for r in rows)
killed = cells("results/tiny-killed")
full = [row for row in cells("results/tiny") if row[1] == "mbppplus" and row[2] in ("direct", "ga_only")]
assert killed == full and len(killed) == 4, ("metrics differ after kill and rerun", killed, full)
for path in pathlib.Path("results/tiny-killed").rglob("*.json"):
    json.loads(path.read_text())  # no truncated file
for path in pathlib.Path("results/tiny-killed").rglob("*.jsonl"):
    [json.loads(line) for line in path.read_text().splitlines()]
print("kill and rerun: same metrics, every JSON file complete")
PY

log "one cell through SLURM"
tools/slurm-cluster.sh start
trap 'tools/slurm-cluster.sh stop' EXIT
rm -rf results/slurm-ci
timeout -s INT -k 30 900 $SNAKEMAKE --profile profiles/slurm-ci --configfile config/slurm-ci.yaml
test -s results/slurm-ci/aggregate/cells.csv
test -s results/slurm-ci/agents/ppo/smollm2-135m-instruct/seed1/training.json
ls .snakemake/slurm_logs >/dev/null
log "SLURM cell done"
