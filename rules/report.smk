# Statistics and report: paired tests against the reference strategy (ppo), the paper's tables, the figures and the provenance
# appendix, each from the aggregate files (promis_repro.analysis; `snakemake --report` collects them).

PAPER_RESULTS = workflow.source_path("../config/paper_results.yaml")


rule stats:
    input:
        per_task=rules.aggregate.output.per_task,
        per_task_budget=rules.aggregate.output.per_task_budget,
    output:
        csv=report(
            f"{RESULTS}/stats/comparisons.csv",
            caption="../workflow/report/comparisons.rst",
            category="Significance tests",
        ),
        json=f"{RESULTS}/stats/comparisons.json",
        at_budget=f"{RESULTS}/stats/comparisons_at_budget.csv",
    log:
        f"{RESULTS}/logs/stats.log",
    conda:
        "../envs/promis-repro.yaml"
    resources:
        **cpu_resources(),
    shell:
        f"promis-repro stats --results {RESULTS} --reference {grid.REFERENCE_STRATEGY} > {{log}} 2>&1"


rule tables:
    input:
        cells=rules.aggregate.output.cells,
        per_task=rules.aggregate.output.per_task,
        comparisons=rules.stats.output.csv,
        paper=PAPER_RESULTS,
    output:
        **{
            name: report(
                f"{RESULTS}/tables/{name}.html",
                caption=table_caption(name),
                category="Tables",
                labels={"table": name},
            )
            for name in grid.table_names(
                config["benchmarks"],
                feedback_modes(),
                bool(config["compare_with"]),
            )
        },
        index=f"{RESULTS}/tables/index.json",
    log:
        f"{RESULTS}/logs/tables.log",
    conda:
        "../envs/promis-repro.yaml"
    resources:
        **cpu_resources(),
    params:
        # another tree (the other protocol), read when it has been run: not an input, so it never forces a run
        compare=(
            f"--compare-with {config['compare_with']}"
            if config["compare_with"]
            else ""
        ),
    shell:
        f"promis-repro tables --results {RESULTS} --paper {{input.paper}} {{params.compare}} > {{log}} 2>&1"


rule figures:
    input:
        cells=rules.aggregate.output.cells,
        per_seed=rules.aggregate.output.per_seed,
        per_task=rules.aggregate.output.per_task,
        budget_curve=rules.aggregate.output.budget_curve,
        agents=all_agents(),
    output:
        **{
            name: report(
                f"{RESULTS}/figures/{name}.png",
                caption=f"../workflow/report/figure_{name}.rst",
                category="Figures",
                labels={"figure": name},
            )
            for name in grid.FIGURES
        },
        pdf=[f"{RESULTS}/figures/{name}.pdf" for name in grid.FIGURES],
    log:
        f"{RESULTS}/logs/figures.log",
    conda:
        "../envs/promis-repro.yaml"
    resources:
        **cpu_resources(),
    shell:
        f"promis-repro figures --results {RESULTS} > {{log}} 2>&1"


rule provenance:
    input:
        all_metrics(),
        all_agents(),
    output:
        html=report(
            f"{RESULTS}/report/provenance.html",
            caption="../workflow/report/provenance.rst",
            category="Provenance",
        ),
        json=f"{RESULTS}/report/provenance.json",
    log:
        f"{RESULTS}/logs/provenance.log",
    conda:
        "../envs/promis-repro.yaml"
    resources:
        **cpu_resources(),
    shell:
        f"promis-repro provenance --results {RESULTS} > {{log}} 2>&1"


rule leakage_audit:
    input:
        per_task=rules.aggregate.output.per_task,
        agents=all_agents(),
        pools=rules.data_split.output.report,
    output:
        html=report(
            f"{RESULTS}/tables/{grid.LEAKAGE_AUDIT}.html",
            caption="../workflow/report/leakage_audit.rst",
            category="Tables",
            labels={"table": grid.LEAKAGE_AUDIT},
        ),
        csv=f"{RESULTS}/tables/{grid.LEAKAGE_AUDIT}.csv",
    log:
        f"{RESULTS}/logs/leakage_audit.log",
    conda:
        "../envs/promis-repro.yaml"
    resources:
        **cpu_resources(),
    params:
        data_dir=DATA_DIR_ARG,
    shell:
        f"promis-repro audit --results {RESULTS} {{params.data_dir}} > {{log}} 2>&1"
