# Evaluate: the hidden tests score each cell's final solutions once, in the sandbox (CPU).


rule evaluate_cell:
    input:
        samples=rules.run_cell.output.samples,
        trajectories=rules.run_cell.output.trajectories,
        cost=rules.run_cell.output.cost,
    output:
        results=cell_file("results.jsonl"),
        candidates=cell_file("candidates.jsonl"),
        metrics=cell_file("metrics.json"),
    log:
        log_file("evaluate", grid.CELL_TEMPLATE),
    benchmark:
        benchmark_file("evaluate_cell")
    conda:
        "../envs/promis-repro.yaml"
    threads: 1
    resources:
        **cpu_resources(),
    params:
        sandbox=SANDBOX_ARG,
        data_dir=DATA_DIR_ARG,
        cell=lambda wildcards, input: os.path.dirname(input.samples),
        adopt=adopt_arg,
    shell:
        "promis-repro {params.sandbox} evaluate-cell {params.adopt} --cell {params.cell} --benchmark {wildcards.benchmark} --workers {threads} "
        "{params.data_dir} > {log} 2>&1"
