# Run: one strategy on one benchmark with one generator and one seed (a cell of the results tables).


rule run_cell:
    input:
        unpack(cell_inputs),
    output:
        samples=cell_file("samples.jsonl"),
        trajectories=cell_file("trajectories.jsonl"),
        cost=cell_file("cost.json"),
    log:
        log_file("run", grid.CELL_TEMPLATE),
    benchmark:
        benchmark_file("run_cell")
    conda:
        "../envs/promis-repro.yaml"
    resources:
        **gpu_resources(),
    params:
        sandbox=SANDBOX_ARG,
        data_dir=DATA_DIR_ARG,
        rewriter=config["rewriter"],
        feedback=cell_feedback,
        trained=trained_arg,
        limit=task_limit_arg,
        out=lambda wildcards, output: os.path.dirname(output.samples),
        pools=lambda wildcards, input: os.path.dirname(input.pools),
        protocol=config["protocol"],
        adopt=adopt_arg,
    shell:
        "promis-repro --log-file {log} --quiet {params.sandbox} run {params.adopt} --strategy {wildcards.strategy} --model {wildcards.model} --rewriter {params.rewriter} "
        "--benchmark {wildcards.benchmark} --seed {wildcards.seed} --feedback {params.feedback} "
        "--out {params.out} --pools {params.pools} --config {input.strategy_config} {params.trained} {params.limit} {params.data_dir} "
        "--protocol {params.protocol} >> {log} 2>&1"


# group_cells: one job runs every strategy of a model x benchmark x seed (the models loaded once) into
# staged cells; run_cell and evaluate_cell above take a staged cell over when it answers their own request
rule run_group:
    input:
        unpack(group_inputs),
    output:
        f"{RESULTS}/{grid.GROUP_TEMPLATE}/group.json",
    log:
        f"{RESULTS}/logs/{grid.GROUP_TEMPLATE}.log",
    benchmark:
        benchmark_file("run_group")
    conda:
        "../envs/promis-repro.yaml"
    resources:
        **gpu_resources(),
    params:
        sandbox=SANDBOX_ARG,
        data_dir=DATA_DIR_ARG,
        rewriter=config["rewriter"],
        feedback=cell_feedback,
        trained=group_trained_arg,
        names=group_cell_names,
        strategies=lambda wildcards: " ".join(group_strategies(wildcards)),
        limit=task_limit_arg,
        out=lambda wildcards, output: os.path.dirname(output[0]),
        pools=lambda wildcards, input: os.path.dirname(input.pools),
        protocol=config["protocol"],
    shell:
        "promis-repro --log-file {log} --quiet {params.sandbox} run-group --strategies {params.strategies} "
        "--model {wildcards.model} --rewriter {params.rewriter} --benchmark {wildcards.benchmark} --seed {wildcards.seed} "
        "--feedback {params.feedback} --out {params.out} --pools {params.pools} --config {input.strategy_config} "
        "{params.trained} --cell-names {params.names} {params.limit} {params.data_dir} --protocol {params.protocol} >> {log} 2>&1"
