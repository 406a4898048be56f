# Train: the agents (grid.AGENTS: ppo, lpo, rl_rewriter, self_correct_rl) per generator and seed, on the decontaminated
# train pool only (self_correct_rl fine-tunes the generator and ignores --rewriter).


rule train_agent:
    input:
        train=rules.data_split.output.train,
        selection=rules.data_split.output.selection,
        strategy_config=rules.strategy_config.output,
        generator=lambda wildcards: model_record(wildcards.model),
        rewriter=model_record(config["rewriter"]),
    output:
        agent_file("training.json"),
    log:
        log_file("train", grid.AGENT_TEMPLATE),
    benchmark:
        benchmark_file("train_agent")
    conda:
        "../envs/promis-repro.yaml"
    resources:
        **gpu_resources(),
    params:
        sandbox=SANDBOX_ARG,
        data_dir=DATA_DIR_ARG,
        pools=lambda wildcards, input: os.path.dirname(input.train),
        rewriter=config["rewriter"],
        out=lambda wildcards, output: os.path.dirname(output[0]),
        timesteps=lambda wildcards: timesteps_arg(wildcards.agent),
        train_feedback=config["train"]["feedback"],
        benchmarks=" ".join(config["benchmarks"]),
        protocol=config["protocol"],
        limits=f"{limit_arg('limit', config['train'])} {limit_arg('selection_limit', config['train'])}",
    shell:
        "promis-repro --log-file {log} --quiet {params.sandbox} train --agent {wildcards.agent} --model {wildcards.model} --rewriter {params.rewriter} "
        "--seed {wildcards.seed} --out {params.out} --pools {params.pools} --config {input.strategy_config} "
        "{params.timesteps} {params.limits} --train-feedback {params.train_feedback} "
        "--eval-benchmarks {params.benchmarks} --protocol {params.protocol} {params.data_dir} "
        ">> {log} 2>&1"
