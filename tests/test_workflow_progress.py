"""The pipeline command: one progress line per finished Snakemake job with an ETA, then the report."""

from __future__ import annotations

import stat
import sys

import pytest

from promis_repro.errors import UserError
from promis_repro.stages import pipeline as pipeline_stage
from promis_repro.workflow_progress import PipelineProgress, clock, describe

# Snakemake 9's lines around two jobs, as it prints them (a rule block, then the job's end)
SNAKEMAKE_LINES = """\
Building DAG of jobs...
Job stats:
job             count
------------  -------
all                 1
run_cell            1
total               2

[Wed Dec  2 15:20:01 2026]
rule run_cell:
    input: results/tiny/config/strategy.yaml
    output: results/tiny/smollm2-135m-instruct/mbpp/direct/seed1/samples.jsonl
    log: results/tiny/logs/run/smollm2-135m-instruct/mbpp/direct/seed1.log
    jobid: 7
    reason: Missing output files
    wildcards: model=smollm2-135m-instruct, benchmark=mbpp, strategy=direct, variant=, seed=1
    resources: tmpdir=/tmp
[Wed Dec  2 15:20:09 2026]
Finished jobid: 7 (Rule: run_cell)
1 of 2 steps (50%) done
[Wed Dec  2 15:20:09 2026]
localrule all:
    input: results/tiny/aggregate/cells.csv
    jobid: 0
    reason: Input files updated by another job
    resources: tmpdir=/tmp
[Wed Dec  2 15:20:09 2026]
Finished jobid: 0 (Rule: all)
2 of 2 steps (100%) done
"""


def test_one_line_per_finished_job_with_an_eta():
    times = iter([0.0, 8.0, 12.0])
    progress = PipelineProgress(now=lambda: next(times))
    shown = [line for line in map(progress.read, SNAKEMAKE_LINES.splitlines()) if line]
    assert shown == [
        "[0:00:08] 1/2 jobs (50%)  run_cell smollm2-135m-instruct/mbpp/direct/seed1  ETA 0:00:08",
        "[0:00:12] 2/2 jobs (100%)  all  ETA 0:00:00",
    ]


def test_clock_and_wildcards():
    assert clock(0) == "0:00:00" and clock(3725.4) == "1:02:05" and clock(-3) == "0:00:00"
    assert describe("agent=ppo, model=m, seed=2") == "m/ppo/seed2"
    assert describe("model=m, benchmark=humanevalplus, strategy=epic, variant=-oracle, seed=1") == (
        "m/humanevalplus/epic/-oracle/seed1"
    )


def fake_snakemake(tmp_path, body: str):
    script = tmp_path / "snakemake"
    script.write_text(f"#!{sys.executable}\nimport sys\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_pipeline_prints_progress_then_writes_the_report(tmp_path, monkeypatch, capsys):
    body = f"""
if "--report" in sys.argv:
    open(sys.argv[sys.argv.index("--report") + 1], "w").write("<html>")
    sys.exit(0)
sys.stdout.write({SNAKEMAKE_LINES!r})
"""
    monkeypatch.setattr(pipeline_stage, "snakemake_command", lambda: fake_snakemake(tmp_path, body))
    report = tmp_path / "report.html"
    pipeline_stage.pipeline(["--configfile", "config/tiny.yaml", "-c2"], report=str(report))
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "promis-repro pipeline: --configfile config/tiny.yaml -c2"
    assert [line.split("]", 1)[1] for line in out[1:3]] == [
        " 1/2 jobs (50%)  run_cell smollm2-135m-instruct/mbpp/direct/seed1  ETA " + out[1].rsplit(" ", 1)[1],
        " 2/2 jobs (100%)  all  ETA 0:00:00",
    ]
    assert out[3].startswith("pipeline done in ") and out[4] == f"report: {report}"
    assert report.read_text() == "<html>"


def test_a_failed_run_shows_snakemake_s_last_lines_and_writes_no_report(tmp_path, monkeypatch, capsys):
    body = 'print("Error in rule run_cell:\\n    jobid: 7"); sys.exit(1)'
    monkeypatch.setattr(pipeline_stage, "snakemake_command", lambda: fake_snakemake(tmp_path, body))
    with pytest.raises(UserError, match=r"snakemake failed \(exit 1\)"):
        pipeline_stage.pipeline(["-c1"], report=str(tmp_path / "report.html"))
    assert "Error in rule run_cell:" in capsys.readouterr().err
    assert not (tmp_path / "report.html").exists()


def test_group_jobs_and_checkpoints_each_get_their_line():
    lines = """\
[Wed Dec  2 15:20:01 2026]
checkpoint split:
    jobid: 3
    wildcards: seed=1
[Wed Dec  2 15:20:02 2026]
group job cells (jobs in lexicogr. order):
    [Wed Dec  2 15:20:02 2026]
    rule run_cell:
        jobid: 4
        wildcards: model=m, benchmark=mbpp, strategy=direct, variant=, seed=1
    [Wed Dec  2 15:20:02 2026]
    rule evaluate_cell:
        jobid: 5
        wildcards: model=m, benchmark=mbpp, strategy=direct, variant=, seed=1
Finished jobid: 3 (Rule: split)
1 of 3 steps (33%) done
Finished jobid: 4 (Rule: run_cell)
Finished jobid: 5 (Rule: evaluate_cell)
3 of 3 steps (100%) done
"""
    progress = PipelineProgress(now=lambda: 6.0, started=0.0)
    shown = "\n".join(line for line in map(progress.read, lines.splitlines()) if line).splitlines()
    assert [line.split("  ", 2)[1] for line in shown] == ["split seed1", "run_cell m/mbpp/direct/seed1",
                                                           "evaluate_cell m/mbpp/direct/seed1"]  # fmt: skip
    assert [line.split("] ")[1].split(" jobs")[0] for line in shown] == ["1/3", "2/3", "3/3"]


def test_snakemake_quiet_is_refused(tmp_path):
    with pytest.raises(UserError, match=r"snakemake argument --quiet: the pipeline command needs"):
        pipeline_stage.pipeline(["--quiet", "rules", "-c1"])
