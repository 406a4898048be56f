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
        per_task=f"{RESULTS}/aggregate/per_task.csv",
        budget_curve=f"{RESULTS}/aggregate/budget_curve.csv",
        per_task_budget=f"{RESULTS}/aggregate/per_task_budget.csv",
        json=f"{RESULTS}/aggregate/cells.json",
    log:
        f"{RESULTS}/logs/aggregate.log",
    conda:
        "../envs/promis-repro.yaml"
    resources:
        **cpu_resources(),
    shell:
        f"promis-repro aggregate --results {RESULTS} --metrics {{input}} > {{log}} 2>&1"
