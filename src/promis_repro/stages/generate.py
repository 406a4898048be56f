"""Generate stage: direct generation for a benchmark's tasks, as a samples file ``evaluate`` scores."""

from __future__ import annotations

import os
from typing import Any

from promis_repro.io import write_outputs
from promis_repro.provenance import provenance


def generate(
    model: str,
    benchmark: str,
    out: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    temperature: float = 0.0,
    top_p: float = 1.0,
    max_new_tokens: int = 512,
    batch_size: int = 32,
) -> dict[str, Any]:
    """``samples.jsonl`` and ``generation.json`` (tokens, cache hits, settings, provenance) in ``out``."""
    from promis_repro.data.registry import load_benchmark
    from promis_repro.generation.base import DecodingSettings
    from promis_repro.generation.run import generate_samples

    settings = DecodingSettings(temperature=temperature, top_p=top_p, max_new_tokens=max_new_tokens, seed=seed)
    rows, cost = generate_samples(model, benchmark, settings, data_dir=data_dir, limit=limit, batch_size=batch_size)
    config = {
        "command": "generate",
        "model": model,
        "benchmark": benchmark,
        "limit": limit,
        "settings": cost["settings"],
    }
    tasks = load_benchmark(benchmark, data_dir)
    cost["provenance"] = provenance(
        config=config, data_hashes={benchmark: tasks[0].source_hash}, model=cost["model"], seed=seed
    )
    out = write_outputs(out, {"samples.jsonl": rows}, {"generation.json": cost})
    print(
        f"{model} on {benchmark}: {len(rows)} samples, {cost['completion_tokens']} new tokens, "
        f"cache {cost['cache_hits']} hits / {cost['cache_misses']} misses -> {out}"
    )
    return cost
