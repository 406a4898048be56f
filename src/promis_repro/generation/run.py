"""``promis-repro generate``: direct generation for every task of a benchmark, as an evaluator samples file."""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from promis_repro.data.registry import evaluation_tasks
from promis_repro.generation.base import DecodingSettings
from promis_repro.generation.prompts import (
    build_prompt,
    completion_prefix,
    default_description,
    extract_code,
    stop_strings,
)
from promis_repro.generation.service import CachedGenerator, load_generator


def generate_samples(
    model: str,
    benchmark: str,
    settings: DecodingSettings,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    generator: CachedGenerator | None = None,
    **options: Any,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Sample rows (``task_id``, ``solution``, the raw completion and its cost) and a cost summary."""
    tasks = evaluation_tasks(benchmark, data_dir)[:limit]  # mbpp: its test split
    generator = generator or load_generator(model, **options)
    spec = generator.spec
    settings = replace(settings, stop=tuple(dict.fromkeys(settings.stop + stop_strings(spec))))
    prompts = [build_prompt(task, spec) for task in tasks]
    completions = generator.generate(prompts, settings)
    rows = []
    for task, _prompt, completion in zip(tasks, prompts, completions):
        prefix = completion_prefix(task, default_description(task)) if spec.prompt_format == "completion" else ""
        rows.append(
            {
                "task_id": task.task_id,
                "solution": extract_code(task, completion.text, spec, prefix=prefix),
                "completion": completion.text,
                "prompt_tokens": completion.prompt_tokens,
                "completion_tokens": completion.completion_tokens,
                "seconds": completion.seconds,
                "cached": completion.cached,
                "finish_reason": completion.finish_reason,
            }
        )
    stats = generator.cache.stats
    cost = {
        "n_tasks": len(rows),
        "prompt_tokens": sum(r["prompt_tokens"] for r in rows),
        "completion_tokens": sum(r["completion_tokens"] for r in rows),
        "generation_seconds": sum(r["seconds"] for r in rows if not r["cached"]),
        "cache_hits": stats.hits,
        "cache_misses": stats.misses,
        "settings": settings.as_dict(),
        "model": generator.model_id,
    }
    return rows, cost
