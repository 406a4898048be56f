"""``promis-repro`` command line: thin wrappers over the library."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from promis_repro.errors import UserError

log = logging.getLogger("promis_repro")


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from promis_repro.data.sources import sha256_of
    from promis_repro.evaluation.evaluator import evaluate_samples
    from promis_repro.io import atomic_write_json, atomic_write_jsonl
    from promis_repro.metrics import summarize
    from promis_repro.provenance import provenance
    from promis_repro.sandbox.runner import detect_isolation

    rows, tasks = evaluate_samples(
        args.benchmark,
        args.samples,
        data_dir=args.data_dir,
        workers=args.workers,
        import_header=args.import_header,
        progress=not args.quiet,
    )
    out = Path(args.out)
    config = {
        "command": "evaluate",
        "benchmark": args.benchmark,
        "import_header": args.import_header,
        "workers": args.workers,
    }
    hashes = {args.benchmark: tasks[0].source_hash} if tasks else {}
    summary: dict[str, Any] = {"benchmark": args.benchmark, **summarize(rows)}
    summary["sandbox"] = detect_isolation().describe()
    summary["provenance"] = provenance(
        config=config,
        data_hashes=hashes | {"samples": sha256_of(Path(args.samples))},
        extra={"import_header": args.import_header},
    )
    atomic_write_jsonl(out / "results.jsonl", rows)
    atomic_write_json(out / "summary.json", summary)
    print(
        f"{args.benchmark}: {summary['n_samples']} samples over {summary['n_tasks']} tasks, "
        f"pass@1 {summary['pass_at_1']:.4f}, softpass@1 {summary['soft_pass_at_1']:.4f} -> {out}"
    )


def _cmd_data_split(args: argparse.Namespace) -> None:
    from promis_repro.data.split import build_pools

    report = build_pools(args.data_dir, Path(args.out), threshold=args.threshold, embedder=args.embedder)
    print(
        f"train pool {report['counts']['train_pool']} tasks, selection pool {report['counts']['selection_pool']} "
        f"tasks ({report['counts']['removed']} removed) -> {args.out}"
    )


def _cmd_data_references(args: argparse.Namespace) -> None:
    from promis_repro.data.registry import load_benchmark
    from promis_repro.io import atomic_write_jsonl

    tasks = [t for t in load_benchmark(args.benchmark, args.data_dir) if t.reference_solution is not None]
    if not tasks:
        raise UserError(f"benchmark {args.benchmark} ships no reference solutions")
    atomic_write_jsonl(args.out, ({"task_id": t.task_id, "solution": t.reference_solution} for t in tasks))
    print(f"{len(tasks)} reference solutions of {args.benchmark} -> {args.out}")


def _cmd_generate(args: argparse.Namespace) -> None:
    from promis_repro.generation.base import DecodingSettings
    from promis_repro.generation.run import generate_samples
    from promis_repro.io import atomic_write_json, atomic_write_jsonl
    from promis_repro.provenance import provenance

    settings = DecodingSettings(
        temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens, seed=args.seed
    )
    rows, cost = generate_samples(
        args.model, args.benchmark, settings, data_dir=args.data_dir, limit=args.limit, batch_size=args.batch_size
    )
    out = Path(args.out)
    config = {
        "command": "generate",
        "model": args.model,
        "benchmark": args.benchmark,
        "limit": args.limit,
        "settings": cost["settings"],
    }
    from promis_repro.data.registry import load_benchmark

    tasks = load_benchmark(args.benchmark, args.data_dir)
    cost["provenance"] = provenance(
        config=config, data_hashes={args.benchmark: tasks[0].source_hash}, model=cost["model"], seed=args.seed
    )
    atomic_write_jsonl(out / "samples.jsonl", rows)
    atomic_write_json(out / "generation.json", cost)
    print(
        f"{args.model} on {args.benchmark}: {len(rows)} samples, {cost['completion_tokens']} new tokens, "
        f"cache {cost['cache_hits']} hits / {cost['cache_misses']} misses -> {out}"
    )


def _load_yaml_mapping(path: str | None, what: str) -> dict[str, Any]:
    if path is None:
        return {}
    import yaml

    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{what} file {path} does not exist") from None
    except yaml.YAMLError as exc:
        raise UserError(f"{what} file {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{what} file {path} must hold a mapping")
    return data


def _strategy_settings(args: argparse.Namespace, sections: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """Strategy config and reward from ``--config``; its ``ppo:``/``grpo:`` sections go into ``sections``."""
    from promis_repro.strategies.config import parse_strategy_file

    values = _load_yaml_mapping(args.config, "strategy config")
    if args.budget is not None:
        values["max_generator_calls"] = args.budget
    if args.max_new_tokens is not None:
        values["max_new_tokens"] = args.max_new_tokens
    parsed = parse_strategy_file(values, where=args.config or "strategy config")
    if sections is not None:
        sections.update(parsed.sections)
    return parsed.config, parsed.reward


def _cmd_run(args: argparse.Namespace) -> None:
    from promis_repro.strategies.feedback import check_mode
    from promis_repro.strategies.registry import check_strategy
    from promis_repro.strategies.runner import run_to_directory

    check_strategy(args.strategy)
    check_mode(args.feedback)
    config, reward = _strategy_settings(args)
    options = {"trained": args.trained} if args.trained else {}
    cost = run_to_directory(
        strategy=args.strategy,
        model=args.model,
        rewriter=args.rewriter,
        benchmark=args.benchmark,
        seed=args.seed,
        feedback=args.feedback,
        out=args.out,
        limit=args.limit,
        data_dir=args.data_dir,
        config=config,
        reward=reward,
        options=options,
        batch_size=args.batch_size,
        progress=not args.quiet,
    )
    leaky = " (oracle feedback: LEAKY)" if cost["leaky"] else ""
    print(
        f"{args.strategy} / {args.model} on {args.benchmark}, seed {args.seed}, feedback {args.feedback}{leaky}: "
        f"{cost['n_tasks']} tasks, {cost['totals']['generator_calls']} generator + "
        f"{cost['totals']['rewriter_calls']} rewriter calls -> {args.out}"
    )


def _cmd_train(args: argparse.Namespace) -> None:
    from promis_repro.data.pools import load_pool
    from promis_repro.io import atomic_write_json
    from promis_repro.provenance import provenance
    from promis_repro.strategies.actions import Tools
    from promis_repro.strategies.runner import Models

    agents = ("lpo", "ppo", "rl_rewriter")
    if args.agent not in agents:
        raise UserError(f"unknown agent {args.agent!r}; known: {', '.join(agents)}")
    # ppo's action 2 and lpo's debugger/optimizer prompts call the rewriter; rl_rewriter trains it
    if args.rewriter is None:
        raise UserError(f"agent {args.agent} needs a rewriter model (--rewriter)")
    sections: dict[str, Any] = {}
    config, reward = _strategy_settings(args, sections)
    train = load_pool("train_pool", args.data_dir, args.pools)[: args.limit]
    selection = load_pool("selection_pool", args.data_dir, args.pools)[: args.selection_limit]
    models = Models(args.model, args.rewriter, batch_size=args.batch_size)
    tools = Tools(models.generator.spec, models.rewriter.spec if models.rewriter else None, config, reward, args.seed)
    out = Path(args.out)
    run_config: dict[str, Any] = {
        "command": "train",
        "agent": args.agent,
        "model": args.model,
        "rewriter": args.rewriter,
        "seed": args.seed,
        "strategy_config": config.as_dict(),
        "reward": reward.as_dict(),
        "limit": args.limit,
        "selection_limit": args.selection_limit,
        **sections,
    }
    model_ids = {"generator": models.generator.model_id}
    if models.rewriter is not None:
        model_ids["rewriter"] = models.rewriter.model_id
    summary: dict[str, Any] = {
        "agent": args.agent,
        "n_train": len(train),
        "n_selection": len(selection),
        "reward": reward.as_dict(),
    }
    if args.agent == "lpo":
        from promis_repro.strategies.lpo import optimize_instruction

        state = optimize_instruction(tools, models.call, train, selection, out, settings=config.lpo)
        summary |= {
            "instruction": state["best_instruction"] or state["instruction"],
            "selection_soft_pass": state["best_score"],
            "cost": state.get("cost"),
        }
        message = f"lpo: best instruction (selection SoftPass {state['best_score']:.3f})"
    elif args.agent == "ppo":
        from promis_repro.agent.ppo import PPOConfig, train_ppo

        ppo_values = dict(sections["ppo"])
        if args.timesteps is not None:
            ppo_values["total_timesteps"] = args.timesteps
        ppo_config = PPOConfig.from_mapping(ppo_values, where=f"{args.config or 'config'}: ppo")
        result = train_ppo(tools, models.call, train, selection, out, ppo_config)
        from dataclasses import asdict

        summary |= {"ppo_config": asdict(ppo_config), **result}
        best = result["best"] or {}
        message = f"ppo: {result['timesteps']} timesteps, best selection SoftPass {best.get('soft_pass', 0):.3f}"
    else:
        from dataclasses import asdict

        from promis_repro.agent.grpo import GRPOSettings, train_rl_rewriter
        from promis_repro.generation.weights import weights_location

        grpo_values = dict(sections["grpo"])
        if args.timesteps is not None:
            grpo_values["max_steps"] = args.timesteps
        settings = GRPOSettings.from_mapping(grpo_values, where=f"{args.config or 'config'}: grpo")
        location, _ = weights_location(models.rewriter.spec)
        result = train_rl_rewriter(tools, models.call, location, train, out, settings)
        summary |= {
            "grpo_settings": asdict(settings),
            "steps": result["steps"],
            "mean_reward_first": result["mean_reward_first"],
            "mean_reward_last": result["mean_reward_last"],
        }
        message = f"rl_rewriter: {result['steps']} GRPO steps, adapter in {result['adapter']}"
    summary["provenance"] = provenance(
        config=run_config, data_hashes={"mbpp": train[0].source_hash}, model=model_ids, seed=args.seed
    )
    atomic_write_json(out / "training.json", summary)
    print(f"{message} -> {out}")


def _cmd_models_fetch(args: argparse.Namespace) -> None:
    from promis_repro.pipeline import fetch_model

    record = fetch_model(args.model, args.out)
    print(f"{args.model}: {record['location']} -> {args.out}")


def _cmd_evaluate_cell(args: argparse.Namespace) -> None:
    from promis_repro.pipeline import evaluate_cell

    metrics = evaluate_cell(args.cell, args.benchmark, args.data_dir, workers=args.workers)
    print(f"{args.cell}: pass@1 {metrics['pass_at_1']:.4f}, softpass@1 {metrics['soft_pass_at_1']:.4f}")


def _cmd_aggregate(args: argparse.Namespace) -> None:
    from promis_repro.analysis.aggregate import aggregate
    from promis_repro.analysis.tree import find_metrics

    files = args.metrics or find_metrics(args.results)
    if not files:
        raise UserError(f"no {{model}}/{{benchmark}}/{{strategy}}/seed{{n}}/metrics.json under {args.results}")
    out = Path(args.out or Path(args.results) / "aggregate")
    cells = aggregate(files, out)
    print(f"{len(files)} metrics files, {len(cells)} cells -> {out}")


def _cmd_stats(args: argparse.Namespace) -> None:
    from promis_repro.analysis.significance import run_stats

    frame = run_stats(args.results, reference=args.reference, n_resamples=args.resamples)
    significant = int(frame["significant_mcnemar"].sum()) if not frame.empty else 0
    print(f"{len(frame)} comparisons with {args.reference}, {significant} significant on Pass@1 after Holm")


def _cmd_tables(args: argparse.Namespace) -> None:
    from promis_repro.analysis.tables import make_tables

    names = make_tables(args.results, paper=args.paper)
    print(f"{len(names)} tables -> {Path(args.results) / 'tables'}: {', '.join(names)}")


def _cmd_figures(args: argparse.Namespace) -> None:
    from promis_repro.analysis.figures import make_figures

    written = make_figures(args.results)
    print(f"{len(written)} figure files -> {Path(args.results) / 'figures'}")


def _cmd_provenance(args: argparse.Namespace) -> None:
    from promis_repro.analysis.provenance_report import write_provenance_report

    print(f"provenance appendix -> {write_provenance_report(args.results)}")


def build_parser() -> argparse.ArgumentParser:
    from promis_repro.data.registry import BENCHMARKS
    from promis_repro.evaluation.evaluator import IMPORT_HEADERS

    parser = argparse.ArgumentParser(prog="promis-repro", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    evaluate = sub.add_parser("evaluate", help="score a samples file on a benchmark's hidden tests")
    evaluate.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    evaluate.add_argument("--samples", required=True, help="JSONL rows {task_id, solution}")
    evaluate.add_argument("--out", required=True, help="output directory")
    evaluate.add_argument("--data-dir", default=None, help="directory with the benchmark files")
    evaluate.add_argument("--workers", type=int, default=2, help="sandboxed programs run at once")
    evaluate.add_argument("--import-header", default="none", choices=sorted(IMPORT_HEADERS))
    evaluate.add_argument("--quiet", action="store_true", help="no progress bars")
    evaluate.set_defaults(func=_cmd_evaluate)

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
    generate.set_defaults(func=_cmd_generate)

    from promis_repro.strategies.feedback import FEEDBACK_MODES
    from promis_repro.strategies.registry import STRATEGIES

    run = sub.add_parser("run", help="run a prompt strategy on a benchmark -> samples, trajectories, cost")
    run.add_argument("--strategy", required=True, help=f"one of: {', '.join(STRATEGIES)}")
    run.add_argument("--model", required=True, help="generator, a name from the model registry")
    run.add_argument("--rewriter", default=None, help="rewriter LLM (strategies that rewrite prompts)")
    run.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--feedback", default="visible", help=f"one of: {', '.join(FEEDBACK_MODES)}")
    run.add_argument("--out", required=True, help="output directory")
    run.add_argument("--limit", type=int, default=None, help="first N tasks only")
    run.add_argument("--data-dir", default=None)
    run.add_argument("--config", default=None, help="YAML with strategy settings (see strategies/config.py)")
    run.add_argument("--budget", type=int, default=None, help="generator calls per task (default 10)")
    run.add_argument("--max-new-tokens", type=int, default=None)
    run.add_argument("--trained", default=None, help="output directory of promis-repro train (lpo, ppo, rl_rewriter)")
    run.add_argument("--batch-size", type=int, default=32)
    run.add_argument("--quiet", action="store_true")
    run.set_defaults(func=_cmd_run)

    train = sub.add_parser("train", help="train an optimiser on the decontaminated MBPP train pool")
    train.add_argument("--agent", required=True, help="lpo | ppo | rl_rewriter")
    train.add_argument("--model", required=True)
    train.add_argument("--rewriter", default=None)
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--out", required=True)
    train.add_argument("--data-dir", default=None)
    train.add_argument("--pools", default=None, help="output directory of promis-repro data split")
    train.add_argument("--limit", type=int, default=None, help="first N train-pool tasks")
    train.add_argument("--selection-limit", type=int, default=None, help="first N selection-pool tasks")
    train.add_argument("--config", default=None)
    train.add_argument("--budget", type=int, default=None)
    train.add_argument("--timesteps", type=int, default=None, help="ppo: total timesteps; rl_rewriter: GRPO steps")
    train.add_argument("--max-new-tokens", type=int, default=None)
    train.add_argument("--batch-size", type=int, default=32)
    train.set_defaults(func=_cmd_train)

    cell = sub.add_parser("evaluate-cell", help="score a run directory's samples: results.jsonl, metrics.json")
    cell.add_argument("--cell", required=True, help="a run directory (samples.jsonl, cost.json)")
    cell.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    cell.add_argument("--data-dir", default=None)
    cell.add_argument("--workers", type=int, default=2)
    cell.set_defaults(func=_cmd_evaluate_cell)

    agg = sub.add_parser("aggregate", help="per seed, per task and per cell views of a results tree")
    agg.add_argument("--results", default="results", help="the results tree; writes its aggregate/")
    agg.add_argument("--metrics", nargs="*", default=None, help="only these metrics.json files (default: all)")
    agg.add_argument("--out", default=None, help="output directory (default: RESULTS/aggregate)")
    agg.set_defaults(func=_cmd_aggregate)

    stats = sub.add_parser("stats", help="paired tests of every strategy against the reference (stats/)")
    stats.add_argument("--results", default="results")
    stats.add_argument("--reference", default="ppo")
    stats.add_argument("--resamples", type=int, default=9999, help="bootstrap resamples")
    stats.set_defaults(func=_cmd_stats)

    tables = sub.add_parser("tables", help="the paper's tables as Markdown, LaTeX and CSV (tables/)")
    tables.add_argument("--results", default="results")
    tables.add_argument("--paper", default=None, help="the paper's numbers (config/paper_results.yaml)")
    tables.set_defaults(func=_cmd_tables)

    figures = sub.add_parser("figures", help="the figures as PNG and PDF (figures/)")
    figures.add_argument("--results", default="results")
    figures.set_defaults(func=_cmd_figures)

    prov = sub.add_parser("provenance", help="the report's provenance appendix (report/provenance.html)")
    prov.add_argument("--results", default="results")
    prov.set_defaults(func=_cmd_provenance)

    models = sub.add_parser("models", help="model weights")
    models_sub = models.add_subparsers(dest="models_command", required=True)
    fetch = models_sub.add_parser("fetch", help="make a model's weights available locally")
    fetch.add_argument("--model", required=True)
    fetch.add_argument("--out", required=True, help="JSON record of the model's identity and location")
    fetch.set_defaults(func=_cmd_models_fetch)

    data = sub.add_parser("data", help="data preparation")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    split = data_sub.add_parser("split", help="build the decontaminated training and selection pools")
    split.add_argument("--data-dir", default=None)
    split.add_argument("--out", required=True, help="output directory")
    split.add_argument(
        "--threshold", type=float, default=0.9, help="MiniLM cosine similarity that counts as a duplicate"
    )
    split.add_argument("--embedder", default="all-minilm-l6-v2", help="sentence embedder name or path")
    split.set_defaults(func=_cmd_data_split)
    references = data_sub.add_parser("references", help="write a benchmark's reference solutions as a samples file")
    references.add_argument("--benchmark", required=True, choices=BENCHMARKS)
    references.add_argument("--data-dir", default=None)
    references.add_argument("--out", required=True, help="samples JSONL to write")
    references.set_defaults(func=_cmd_data_references)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        args.func(args)
    except UserError as exc:
        print(f"promis-repro: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("promis-repro: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
