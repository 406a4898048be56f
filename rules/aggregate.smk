# Aggregate: per-seed rows and per-cell mean and spread over seeds (the statistics rules build on these).


rule aggregate:
    input:
        all_metrics(),
    output:
        cells=report(
            f"{RESULTS}/aggregate/cells.csv",
            caption="../workflow/report/cells.rst",
            category="Results",
        ),
        per_seed=f"{RESULTS}/aggregate/per_seed.csv",
        json=f"{RESULTS}/aggregate/cells.json",
    log:
        f"{RESULTS}/logs/aggregate.log",
    conda:
        "../envs/promis-repro.yaml"
    resources:
        **cpu_resources(),
    params:
        out=lambda wildcards, output: os.path.dirname(output.cells),
    shell:
        "promis-repro aggregate --metrics {input} --out {params.out} > {log} 2>&1"
