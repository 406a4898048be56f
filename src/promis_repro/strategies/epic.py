"""EPiC (Taherkhani et al.): evolutionary prompt engineering, faithful to its published algorithm.

1. Generate from the original prompt; accept it if it passes >= ``epic_accept_original``
   of the feedback tests.
2. Population = the original + ``epic_population`` LLM rewrites (``epic_rewrite_template``,
   temperature 0.9, no feedback shown, as EPiC asks for a fuller restatement); fitness = fraction of
   feedback tests passed.
3. After each generation: accept a candidate at fitness 1.0, or the best at
   >= ``epic_accept_best``; otherwise the next generation is 1 survivor plus
   ``epic_population`` mutants of parents, survivor and parents both drawn by
   fitness-proportional roulette (uniform when every fitness is 0). No crossover.
4. At most ``epic_generations`` generations; the run stops early when a generation
   solves <= ``epic_min_gain`` more of the run's problems (a dataset-level rule:
   all tasks of a run meet at a barrier after every generation).
Without acceptance the best candidate found is the answer. The per-task budget caps EPiC like every
strategy (10 generator calls: original, 4 rewrites, 4 mutants, then a cut third generation); the
trajectory records ``budget_exhausted``. EPiC's tests are
LLM-written (``--feedback selfgen``); ``visible`` and ``oracle`` are also allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from promis_repro.strategies.actions import Candidate, EpisodeContext
from promis_repro.strategies.engine import Barrier, Episode

BARRIER = "epic-generation"


def roulette(population: list[Candidate], rng: np.random.Generator) -> Candidate:
    fitness = np.array([c.fitness for c in population], dtype=float)
    if fitness.sum() <= 0:
        return population[int(rng.integers(len(population)))]
    return population[int(rng.choice(len(population), p=fitness / fitness.sum()))]


def make_barrier_resolver(n_tasks: int, min_gain: float) -> Callable[[str, dict[Any, Any]], dict[Any, Any]]:
    """Dataset-level early stop: continue only if this generation solved > ``min_gain`` of all tasks."""

    def resolve(name: str, payloads: dict[Any, Any]) -> dict[Any, Any]:
        newly_solved = sum(1 for p in payloads.values() if p["solved"])
        gain = newly_solved / max(1, n_tasks)
        return {key: {"continue": gain > min_gain, "gain": gain} for key in payloads}

    return resolve


def epic(ctx: EpisodeContext) -> Episode:
    c = ctx.config
    original = yield from ctx.code(ctx.parts.text)
    ctx.log(0, original, epic_generation=0)
    if original.feedback.n_tests and original.fitness >= c.epic_accept_original:
        return ctx.finish(original, accepted="original")
    population = [original]
    for _ in range(c.epic_population):
        if ctx.remaining("generator") <= 0 or ctx.remaining("rewriter") <= 0:
            break
        rewrite = yield from ctx.rewrite(
            ctx.parts.text, original.feedback.text, c.epic_rewrite_template, c.epic_rewriter_temperature
        )
        candidate = yield from ctx.code(rewrite.text)
        ctx.log(2, candidate, rewrite=rewrite.as_dict(), epic_generation=1)
        population.append(candidate)
    generation = 1
    while True:
        best = max(population, key=lambda x: (x.fitness, -x.step))
        accepted = best.feedback.n_tests > 0 and (best.fitness >= 1.0 or best.fitness >= c.epic_accept_best)
        reply = yield Barrier(BARRIER, {"solved": accepted, "generation": generation})
        if accepted:
            return ctx.finish(best, accepted=f"generation {generation}")
        if generation >= c.epic_generations or not (reply or {}).get("continue", True):
            break
        if ctx.remaining("generator") <= 0:
            break
        survivor = roulette(population, ctx.rng)
        next_population = [survivor]
        for _ in range(c.epic_population):
            if ctx.remaining("generator") <= 0:
                break
            parent = roulette(population, ctx.rng)
            mutation = ctx.mutate(parent.text)
            candidate = yield from ctx.code(mutation.text)
            ctx.log(
                1,
                candidate,
                mutation=mutation.as_dict(),
                parent_step=parent.step,
                survivor_step=survivor.step,
                epic_generation=generation + 1,
            )
            next_population.append(candidate)
        population = next_population
        generation += 1
    return ctx.finish(accepted=None, generations=generation, budget_exhausted=ctx.remaining("generator") <= 0)
