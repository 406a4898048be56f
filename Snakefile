# promis-repro: every model x benchmark x strategy x seed cell of the PROMIS reproduction.
#   snakemake --profile profiles/local --configfile config/tiny.yaml      (CPU, minutes)
#   snakemake --profile profiles/slurm                                     (the paper's grid, A100s)
#   snakemake --profile profiles/slurm results/codellama-7b-instruct/mbppplus/ppo/seed1/metrics.json


# the paper's grid unless a --configfile is given (a given file replaces it rather than merging into it);
# --config key=value alone adds to the paper's grid (testing `config` itself would drop the grid then)
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# PATH reaches every job, so the promis-repro command is found wherever a rule runs
envvars:
    "PATH",


include: "rules/common.smk"


# the project image (`container` in the config: a .sif file, by default the one README's two commands
# build, or a docker:// address); used when Snakemake is asked for --software-deployment-method apptainer
container: config["container"]


# trivial rules run where Snakemake runs, never as cluster jobs (an 8 GB SLURM job to write a YAML file);
# the same names as grid.LOCAL_RULES (the directive takes names only; tests/test_cell_and_cost.py checks)
localrules:
    all,
    strategy_config,


include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/train.smk"
include: "rules/run.smk"
include: "rules/evaluate.smk"
include: "rules/aggregate.smk"
include: "rules/report.smk"
include: "rules/cell.smk"


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
