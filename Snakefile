# promis-repro: every model x benchmark x strategy x seed cell of the PROMIS reproduction.
#   snakemake --profile profiles/local --configfile config/tiny.yaml      (CPU, minutes)
#   snakemake --profile profiles/slurm                                     (the paper's grid, A100s)
#   snakemake --profile profiles/slurm results/codellama-7b-instruct/mbppplus/ppo/seed1/metrics.json


# the paper's grid unless a --configfile is given (a given file replaces it rather than merging into it)
if not config:

    configfile: "config/config.yaml"


# PATH reaches every job, so the promis-repro command is found wherever a rule runs
envvars:
    "PATH",


# the project image; used when Snakemake is asked for --software-deployment-method apptainer
container: config.get("container", "docker://ghcr.io/promis-repro/promis-repro:latest")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/train.smk"
include: "rules/run.smk"
include: "rules/evaluate.smk"
include: "rules/aggregate.smk"
include: "rules/report.smk"


# `snakemake --report results/report.html`: the workflow description; every report() output joins it
report: "workflow/report/workflow.rst"


rule all:
    default_target: True
    input:
        all_metrics(),
        rules.aggregate.output,
        rules.stats.output,
        rules.tables.output,
        rules.figures.output,
        rules.provenance.output,
        rules.leakage_audit.output,
