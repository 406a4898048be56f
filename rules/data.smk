# Data: the decontaminated MBPP training and selection pools and the report of what was removed.


rule data_split:
    output:
        train=f"{RESULTS}/data/train_pool.jsonl",
        selection=f"{RESULTS}/data/selection_pool.jsonl",
        report=report(
            f"{RESULTS}/data/decontamination.json",
            caption="../workflow/report/decontamination.rst",
            category="Data",
        ),
    log:
        f"{RESULTS}/logs/data_split.log",
    conda:
        "../envs/promis-repro.yaml"
    resources:
        **cpu_resources(),
    params:
        data_dir=DATA_DIR_ARG,
        benchmarks=" ".join(config["benchmarks"]),
        out=lambda wildcards, output: os.path.dirname(output.train),
    shell:
        "promis-repro data split {params.data_dir} --benchmarks {params.benchmarks} --out {params.out} > {log} 2>&1"


rule strategy_config:
    output:
        f"{RESULTS}/config/strategy.yaml",
    log:
        f"{RESULTS}/logs/strategy_config.log",
    conda:
        "../envs/promis-repro.yaml"
    resources:
        **cpu_resources(),
    params:
        settings=lambda wildcards: json.dumps(config["strategy"], sort_keys=True),
    shell:
        "python -c \"import json, sys, yaml; yaml.safe_dump(json.loads(sys.argv[1]), open('{output}', 'w'))\" "
        "{params.settings:q} > {log} 2>&1"
