# A reviewer's cell: one model x benchmark x strategy (every configured seed) as its row of the tables,
# without the rest of the grid. Its inputs are that cell's seeds and, for the paired test, the reference
# strategy's (ppo, as in stats) on the same model, benchmark and seeds, when the grid has it.
#   snakemake results/cells/codellama-7b-instruct/mbppplus/direct.md --profile profiles/slurm
from promis_repro.stages.cell import row_inputs


rule cell_row:
    input:
        metrics=lambda wildcards: row_inputs(
            RESULTS,
            wildcards.model,
            wildcards.benchmark,
            wildcards.strategy,
            wildcards.variant,
            config["seeds"],
            config["strategies"],
            grid_variants(),
        ),
        paper=PAPER_RESULTS,
    output:
        csv=f"{RESULTS}/{grid.CELL_ROW_TEMPLATE}.csv",
        md=f"{RESULTS}/{grid.CELL_ROW_TEMPLATE}.md",
    log:
        f"{RESULTS}/logs/{grid.CELL_ROW_TEMPLATE}.log",
    conda:
        "../envs/promis-repro.yaml"
    resources:
        **cpu_resources(),
    params:
        out=lambda wildcards, output: output.csv.removesuffix(".csv"),
        oracle=lambda wildcards: "--oracle" if wildcards.variant else "",
        seeds=" ".join(str(seed) for seed in config["seeds"]),
        strategies=" ".join(config["strategies"]),
        models=" ".join(config["generators"]),
    shell:
        f"promis-repro cell --results {RESULTS} --model {{wildcards.model}} --benchmark {{wildcards.benchmark}} "
        "--strategy {wildcards.strategy} {params.oracle} --seeds {params.seeds} --paper {input.paper} "
        "--strategies {params.strategies} --models {params.models} --out {params.out} > {log} 2>&1"
