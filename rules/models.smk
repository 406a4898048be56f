# Models: make each generator's and the rewriter's weights available (convert the tiny GGUF, or download).


rule fetch_model:
    output:
        f"{RESULTS}/models/{{model}}.json",
    log:
        f"{RESULTS}/logs/models/{{model}}.log",
    conda:
        "../envs/promis-repro.yaml"
    resources:
        **cpu_resources(),
    shell:
        "promis-repro models fetch --model {wildcards.model} --out {output} > {log} 2>&1"
