# Train: the agents (ppo, lpo, rl_rewriter) per generator and seed, on the decontaminated train pool only.


rule train_agent:
    input:
        train=rules.data_split.output.train,
        selection=rules.data_split.output.selection,
        strategy_config=rules.strategy_config.output,
        generator=lambda wildcards: model_record(wildcards.model),
        rewriter=model_record(config["rewriter"]),
    output:
        f"{RESULTS}/agents/{{agent}}/{{model}}/seed{{seed}}/training.json",
    log:
        f"{RESULTS}/logs/agents/{{agent}}/{{model}}/seed{{seed}}.log",
    wildcard_constraints:
        agent="ppo|lpo|rl_rewriter",
        seed=r"\d+",
    conda:
        "../envs/promis-repro.yaml"
    resources:
        **gpu_resources(),
    params:
        data_dir=DATA_DIR_ARG,
        pools=lambda wildcards, input: os.path.dirname(input.train),
        rewriter=config["rewriter"],
        out=lambda wildcards, output: os.path.dirname(output[0]),
        steps=lambda wildcards: {
            "ppo": config["train"]["ppo_timesteps"],
            "rl_rewriter": config["train"]["rl_rewriter_steps"],
        }.get(wildcards.agent, ""),
        limits=(
            (
                f"--limit {config['train']['limit']} "
                if config["train"].get("limit")
                else ""
            )
            + (
                f"--selection-limit {config['train']['selection_limit']}"
                if config["train"].get("selection_limit")
                else ""
            )
        ),
    shell:
        "promis-repro train --agent {wildcards.agent} --model {wildcards.model} --rewriter {params.rewriter} "
        "--seed {wildcards.seed} --out {params.out} --pools {params.pools} --config {input.strategy_config} "
        "$( [ -n '{params.steps}' ] && echo --timesteps {params.steps} ) {params.limits} {params.data_dir} "
        "> {log} 2>&1"
