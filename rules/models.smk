# Models: make each generator's and the rewriter's weights available (convert the tiny GGUF, or download).


rule fetch_model:
    output:
        f"{RESULTS}/models/{{model}}.json",
    log:
        f"{RESULTS}/logs/models/{{model}}.log",
    benchmark:
        benchmark_file("fetch_model")
    conda:
        "../envs/promis-repro.yaml"
    resources:
        **cpu_resources(),
    params:
        # the weights' identity (hub id, locked commit): relocking a model reruns everything that used it
        identity=lambda wildcards: model_identity(wildcards.model),
    shell:
        "promis-repro models fetch --model {wildcards.model} --out {output} > {log} 2>&1"
