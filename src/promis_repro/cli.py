"""``promis-repro`` command line: parses arguments and calls a stage (``promis_repro.stages``).

Every subcommand names its stage function (``set_defaults(stage="module:function")``); its options'
destinations are that function's parameter names, so calling it is a plain keyword call.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from promis_repro.errors import UserError
from promis_repro.grid import AGENTS, BENCHMARKS, FEEDBACK_MODES, PROTOCOLS, REFERENCE_STRATEGY, STRATEGIES
from promis_repro.progress import configure_logging

log = logging.getLogger("promis_repro")


def _add_evaluation_commands(sub: argparse._SubParsersAction) -> None:
    from promis_repro.evaluation.evaluator import IMPORT_HEADERS

    evaluate = sub.add_parser("evaluate", help="score a samples file on a benchmark's hidden tests")
    evaluate.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    evaluate.add_argument("--samples", required=True, help="JSONL rows {task_id, solution}")
    evaluate.add_argument("--out", required=True, help="output directory")
    evaluate.add_argument("--data-dir", default=None, help="directory with the benchmark files")
    evaluate.add_argument("--workers", type=int, default=2, help="sandboxed programs run at once")
    evaluate.add_argument("--import-header", default="none", choices=sorted(IMPORT_HEADERS))
    evaluate.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="the global --quiet")
    evaluate.add_argument(
        "--levels",
        action="store_true",
        help="also record each sample's syntax, execution, tests, quality and efficiency levels (evaluation/levels.py)",
    )
    evaluate.add_argument("--max-complexity", type=int, default=10, help="quality: radon complexity at full marks")
    evaluate.add_argument(
        "--no-security", dest="security", action="store_false", help="quality: leave bandit's security part out"
    )
    evaluate.set_defaults(stage="evaluate:evaluate")

    cell = sub.add_parser("evaluate-cell", help="score a run directory's samples: results.jsonl, metrics.json")
    cell.add_argument("--cell", required=True, help="a run directory (samples.jsonl, cost.json)")
    cell.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    cell.add_argument("--data-dir", default=None)
    cell.add_argument("--workers", type=int, default=2)
    cell.add_argument("--adopt", default=None, help="a group job's staged cell: its scores if it scored these files")
    cell.set_defaults(stage="evaluate:evaluate_cell")

    generate = sub.add_parser("generate", help="direct generation for a benchmark's tasks -> samples.jsonl")
    generate.add_argument("--model", required=True, help="a name from the model registry")
    generate.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    generate.add_argument("--out", required=True, help="output directory")
    generate.add_argument("--data-dir", default=None)
    generate.add_argument("--limit", type=int, default=None, help="first N tasks only")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--temperature", type=float, default=0.0, help="0 = greedy")
    generate.add_argument("--top-p", type=float, default=1.0)
    generate.add_argument("--max-new-tokens", type=int, default=512)
    generate.add_argument("--batch-size", type=int, default=32)
    generate.set_defaults(stage="generate:generate")


def _add_strategy_options(parser: argparse.ArgumentParser) -> None:
    """Options ``run`` and ``train`` share: models, data, strategy settings."""
    parser.add_argument("--model", required=True, help="generator, a name from the model registry")
    parser.add_argument("--rewriter", default=None, help="rewriter LLM (strategies that rewrite prompts)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--limit", type=int, default=None, help="first N tasks only")
    parser.add_argument(
        "--config", dest="config_path", default=None, help="YAML with strategy settings (see strategies/config.py)"
    )
    parser.add_argument("--budget", type=int, default=None, help="generator calls per task (default 10)")
    parser.add_argument("--max-new-tokens", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--protocol", default="ours", choices=PROTOCOLS, help="the label of the run's protocol")


def _add_strategy_commands(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run a prompt strategy on a benchmark -> samples, trajectories, cost")
    run.add_argument("--strategy", required=True, help=f"one of: {', '.join(STRATEGIES)}")
    run.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    run.add_argument("--feedback", default="visible", help=f"one of: {', '.join(FEEDBACK_MODES)}")
    run.add_argument(
        "--trained",
        dest="trained_dir",
        default=None,
        help=f"output directory of promis-repro train ({', '.join(AGENTS)})",
    )
    run.add_argument("--pools", default=None, help="output directory of promis-repro data split (the guard's pools)")
    run.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="the global --quiet")
    run.add_argument("--adopt", default=None, help="a group job's staged cell: taken if it answered this request")
    _add_strategy_options(run)
    run.set_defaults(stage="run:run")

    group = sub.add_parser(
        "run-group",
        help="every strategy of one model x benchmark x seed in one process, each run and scored into a staged "
        "cell that run --adopt and evaluate-cell --adopt take",
    )
    group.add_argument("--strategies", nargs="+", required=True, choices=STRATEGIES)
    group.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    group.add_argument("--feedback", default="visible", help=f"one of: {', '.join(FEEDBACK_MODES)}")
    group.add_argument("--trained", nargs="*", default=None, metavar="STRATEGY=DIR", help="trained agents")
    group.add_argument("--cell-names", nargs="*", default=None, metavar="STRATEGY=PATH", help="the cells staged for")
    group.add_argument("--pools", default=None, help="output directory of promis-repro data split")
    group.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="the global --quiet")
    _add_strategy_options(group)
    group.set_defaults(stage="group:run_group")

    train = sub.add_parser("train", help="train an optimiser on the decontaminated MBPP train pool")
    train.add_argument("--agent", required=True, help=" | ".join(AGENTS))
    train.add_argument("--pools", default=None, help="output directory of promis-repro data split")
    train.add_argument("--selection-limit", type=int, default=None, help="first N selection-pool tasks")
    train.add_argument(
        "--timesteps", type=int, default=None, help="ppo: total timesteps; rl_rewriter, self_correct_rl: TRL steps"
    )
    train.add_argument(
        "--train-feedback",
        default="visible",
        choices=["visible", "all"],
        help="visible: feedback from the visible test only, reward from the held-out tests (as at test time)",
    )
    train.add_argument(
        "--eval-benchmarks", nargs="*", default=None, choices=BENCHMARKS, help="what the agent will be evaluated on"
    )
    _add_strategy_options(train)
    train.set_defaults(stage="train:train")


def _add_analysis_commands(sub: argparse._SubParsersAction) -> None:
    agg = sub.add_parser("aggregate", help="per seed, per task and per cell views of a results tree")
    agg.add_argument("--results", default="results", help="the results tree; writes its aggregate/")
    agg.add_argument("--metrics", nargs="*", default=None, help="only these metrics.json files (default: all)")
    agg.add_argument("--out", default=None, help="output directory (default: RESULTS/aggregate)")
    agg.set_defaults(stage="aggregate:aggregate")

    stats = sub.add_parser("stats", help="paired tests of every strategy against the reference (stats/)")
    stats.add_argument("--results", default="results")
    stats.add_argument("--reference", default=REFERENCE_STRATEGY)
    stats.add_argument("--resamples", type=int, default=9999, help="bootstrap resamples")
    stats.set_defaults(stage="report:stats")

    tables = sub.add_parser("tables", help="the paper's tables as Markdown, LaTeX and CSV (tables/)")
    tables.add_argument("--results", default="results")
    tables.add_argument("--paper", default=None, help="the paper's numbers (config/paper_results.yaml)")
    tables.add_argument("--compare-with", default=None, help="another results tree (the other protocol), side by side")
    tables.set_defaults(stage="report:tables")

    figures = sub.add_parser("figures", help="the figures as PNG and PDF (figures/)")
    figures.add_argument("--results", default="results")
    figures.set_defaults(stage="report:figures")

    audit = sub.add_parser("audit", help="the leakage audit: agents' training tasks vs evaluated tasks (tables/)")
    audit.add_argument("--results", default="results")
    audit.add_argument("--data-dir", default=None)
    audit.set_defaults(stage="report:audit")

    prov = sub.add_parser("provenance", help="the report's provenance appendix (report/provenance.html)")
    prov.add_argument("--results", default="results")
    prov.set_defaults(stage="report:provenance")

    one = sub.add_parser("cell", help="one cell's row of the tables from its seeds alone (cells/)")
    one.add_argument("--results", default="results")
    one.add_argument("--model", required=True)
    one.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    one.add_argument("--strategy", required=True, choices=STRATEGIES)
    one.add_argument("--oracle", action="store_true", help="the cell's leaky oracle twin ({strategy}-oracle)")
    one.add_argument("--seeds", nargs="*", default=None, help="the grid's seeds (default: every one on disk)")
    one.add_argument("--paper", default=None, help="the paper's numbers (config/paper_results.yaml)")
    one.add_argument("--strategies", nargs="*", default=None, help="the grid's strategies (the p-value's seed)")
    one.add_argument("--models", nargs="*", default=None, help="the grid's generators (Holm's family)")
    one.add_argument("--reference", default=REFERENCE_STRATEGY)
    one.add_argument("--resamples", type=int, default=9999, help="bootstrap resamples")
    one.add_argument("--out", default=None, help="the files' path without suffix (default: RESULTS/cells/...)")
    one.set_defaults(stage="cell:cell")

    cost = sub.add_parser("cost", help="jobs and estimated GPU-/CPU-hours per rule of a config's grid")
    cost.add_argument("--configfile", nargs="+", default=None, help="as Snakemake's (default: config/config.yaml)")
    cost.add_argument("--table", default="config/cost_table.yaml", help="per-model estimates where nothing is recorded")
    cost.add_argument("--results", default=None, help="the tree whose costs and done jobs count (default: config's)")
    cost.add_argument("--out", default=None, help="also write the bill as JSON")
    cost.set_defaults(stage="cost:cost")


def _add_preparation_commands(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="model weights")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    fetch = models_sub.add_parser("fetch", help="make a model's weights available locally")
    fetch.add_argument("--model", required=True)
    fetch.add_argument("--out", required=True, help="JSON record of the model's identity and location")
    fetch.set_defaults(stage="models:fetch")
    lock = models_sub.add_parser(
        "lock", help="pin each hub model's branch to its current commit (online; $HF_ENDPOINT, $HF_TOKEN)"
    )
    lock.add_argument("--models", nargs="*", default=None, help="these models only (default: every hub model)")
    lock.add_argument("--out", default=None, help="lock file (default: models.lock.yaml beside the registry)")
    lock.set_defaults(stage="models:lock")

    pipe = sub.add_parser(
        "pipeline",
        help="snakemake with one progress line per finished job, then the report: "
        "promis-repro pipeline [--report FILE] -- SNAKEMAKE-ARGS",
    )
    pipe.add_argument("--report", default=None, metavar="FILE", help="write the HTML report here when the run succeeds")
    pipe.add_argument("snakemake_args", nargs="*", metavar="SNAKEMAKE-ARGS", help="after --: snakemake's arguments")
    pipe.set_defaults(stage="pipeline:pipeline")

    data = sub.add_parser("data", help="data preparation")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    split = data_sub.add_parser("split", help="build the decontaminated training and selection pools")
    split.add_argument("--data-dir", default=None)
    split.add_argument("--out", required=True, help="output directory")
    split.add_argument(
        "--threshold", type=float, default=0.9, help="MiniLM cosine similarity that counts as a duplicate"
    )
    split.add_argument("--embedder", default="all-minilm-l6-v2", help="sentence embedder name or path")
    split.add_argument(
        "--benchmarks", nargs="*", default=None, choices=BENCHMARKS, help="also decontaminate against these"
    )
    split.set_defaults(stage="data:split")
    references = data_sub.add_parser("references", help="write a benchmark's reference solutions as a samples file")
    references.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    references.add_argument("--data-dir", default=None)
    references.add_argument("--out", required=True, help="samples JSONL to write")
    references.set_defaults(stage="data:references")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="promis-repro", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="nothing on the terminal but warnings and errors (none with --log-file, which gets them): "
        "no progress lines or bars; the log file still gets everything",
    )
    parser.add_argument(
        "--log-file",
        default=None,
        metavar="PATH",
        help="append time-stamped log lines here: progress lines and INFO, whatever --quiet says",
    )
    parser.add_argument(
        "--allow-weak-sandbox",
        action="store_true",
        help="run generated code even where the sandbox cannot contain it (no user namespaces); recorded",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    _add_evaluation_commands(sub)
    _add_strategy_commands(sub)
    _add_analysis_commands(sub)
    _add_preparation_commands(sub)
    return parser


def stage_function(args: argparse.Namespace) -> Callable[..., Any]:
    module, name = args.stage.split(":")
    return getattr(importlib.import_module(f"promis_repro.stages.{module}"), name)


def stage_arguments(function: Callable[..., Any], args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options the stage function takes (the rest: ``command``, ``verbose``, ``stage``)."""
    parameters = inspect.signature(function).parameters
    return {key: value for key, value in vars(args).items() if key in parameters}


def main(argv: list[str] | None = None) -> int:
    # the libraries' own bars (weights loading, downloads) are noise in a job's log; ours stay
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    bars = os.environ.get("TQDM_DISABLE")
    if "--quiet" in (sys.argv[1:] if argv is None else argv):
        # no bar at all, the libraries' too (a GGUF conversion); tqdm reads this on import, which the parser does
        os.environ["TQDM_DISABLE"] = "1"
    undo_logging = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.allow_weak_sandbox:  # read by the sandbox, in this process and the jobs it starts
            os.environ["PROMIS_REPRO_ALLOW_WEAK_SANDBOX"] = "1"
        undo_logging = configure_logging(verbose=args.verbose, quiet=args.quiet, log_file=args.log_file)
        function = stage_function(args)
        function(**stage_arguments(function, args))
    except UserError as exc:
        print(f"promis-repro: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("promis-repro: interrupted", file=sys.stderr)
        return 130
    finally:
        if undo_logging is not None:
            undo_logging()
        os.environ.pop("TQDM_DISABLE", None)
        if bars is not None:
            os.environ["TQDM_DISABLE"] = bars
    return 0


if __name__ == "__main__":
    sys.exit(main())
