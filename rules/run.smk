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
        limit=limit_arg(),
        out=lambda wildcards, output: os.path.dirname(output.samples),
        pools=lambda wildcards, input: os.path.dirname(input.pools),
        protocol=config["protocol"],
    shell:
        "promis-repro --log-file {log} --quiet {params.sandbox} run --strategy {wildcards.strategy} --model {wildcards.model} --rewriter {params.rewriter} "
        "--benchmark {wildcards.benchmark} --seed {wildcards.seed} --feedback {params.feedback} "
        "--out {params.out} --pools {params.pools} --config {input.strategy_config} {params.trained} {params.limit} {params.data_dir} "
        "--protocol {params.protocol} >> {log} 2>&1"
