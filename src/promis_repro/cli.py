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
