"""direct, ga_only, rewrite_only, random_hybrid, self_correct (and its 2 turns, which self_correct_rl trains)."""

from __future__ import annotations

from collections.abc import Callable

from promis_repro.generation.base import ChatPrompt
from promis_repro.generation.prompts import SYSTEM
from promis_repro.strategies.actions import BUDGET, OWN_END, SINGLE, EpisodeContext
from promis_repro.strategies.engine import Episode

SELF_CORRECT_INSTRUCTION = (
    "There might be an error in the code above because of lack of understanding of the question. "
    "Please correct the error, if any, and rewrite the solution. Only output the final correct Python program!"
)


def direct(ctx: EpisodeContext) -> Episode:
    """Action 0 once."""
    candidate = yield from ctx.code(ctx.parts.text)
    ctx.log(0, candidate)
    return ctx.finish(candidate, stop=SINGLE)


def _once(action: int) -> Callable[[EpisodeContext], Episode]:
    def episode(ctx: EpisodeContext) -> Episode:
        candidate, extra = yield from ctx.act(action, ctx.parts.text, "")
        ctx.log(action, candidate, **extra)
        return ctx.finish(candidate, stop=SINGLE)

    episode.__doc__ = f"The paper's single-application row: action {action} once on the original prompt, then code."
    return episode


#: the paper's "Genetic mutation (action 1)" and "Semantic rewriting (action 2)" rows: one application each
#: (as the agent's first step: no feedback yet), beside our budgeted ga_only and rewrite_only
ga_once = _once(1)
rewrite_once = _once(2)


def ga_only(ctx: EpisodeContext) -> Episode:
    """The original prompt, then mutation steps from the best prompt so far; keep the best by feedback."""
    best = yield from ctx.code(ctx.parts.text)
    ctx.log(0, best)
    while not best.feedback.passed and ctx.remaining("generator") > 0:
        mutation = ctx.mutate(ctx.base_text(best.text))
        candidate = yield from ctx.code(mutation.text)
        ctx.log(1, candidate, mutation=mutation.as_dict())
        best = ctx.best()
    return ctx.finish()


def rewrite_only(ctx: EpisodeContext) -> Episode:
    """The original prompt, then rewriting steps from the best prompt so far; keep the best by feedback."""
    best = yield from ctx.code(ctx.parts.text)
    ctx.log(0, best)
    while not best.feedback.passed and ctx.remaining("generator") > 0 and ctx.remaining("rewriter") > 0:
        rewrite = yield from ctx.rewrite(ctx.base_text(best.text), best.feedback.text)
        candidate = yield from ctx.code(rewrite.text)
        ctx.log(2, candidate, rewrite=rewrite.as_dict())
        best = ctx.best()
    return ctx.finish()


def stepwise(ctx: EpisodeContext, choose: Callable[[str, int, str], int]) -> Episode:
    """Up to ``max_steps`` actions, each picked by ``choose(text, step, last_feedback)``; best by feedback.

    Each step applies its action to the current prompt (or the original, with ``compose: false``)
    and generates code from the result; the episode ends early when every feedback test passes.
    The loop of ``random_hybrid`` and of the trained ``ppo`` policy, so the two differ only in how
    they choose.
    """
    text, last_feedback = ctx.parts.text, ""
    for step in range(ctx.config.max_steps):
        if ctx.remaining("generator") <= 0:
            break
        action = choose(text, step, last_feedback)
        candidate, extra = yield from ctx.act(action, text, last_feedback)
        ctx.log(action, candidate, **extra)
        text, last_feedback = candidate.text, candidate.feedback.text
        if candidate.feedback.passed:
            break
    return ctx.finish()


def random_hybrid(ctx: EpisodeContext) -> Episode:
    """The paper's Random baseline: up to ``max_steps`` uniformly random actions, keep the best by feedback."""
    return (yield from stepwise(ctx, lambda text, step, last_feedback: int(ctx.rng.integers(3))))


def follow_up_prompt(ctx: EpisodeContext, previous_code: str, instruction: str) -> tuple[ChatPrompt, str | None]:
    """A second-turn prompt: chat history for instruct models, commented history for completion models.

    The chat extends the first turn's (``ctx.model_prompt``): system, user, the previous code as the
    assistant's answer in a ```python block, ``instruction`` as the next user message.
    """
    spec = ctx.tools.generator_spec
    first = ctx.model_prompt(ctx.parts.text)
    if spec.prompt_format == "completion":
        from promis_repro.generation.prompts import completion_prefix

        commented = "\n".join(f"# {line}" for line in previous_code.splitlines())
        prefix = completion_prefix(ctx.task, ctx.parts.text)
        text = f"# Previous attempt:\n{commented}\n# {instruction}\n{prefix}"
        return ChatPrompt(text=text), text
    user = first.messages[-1][1]
    messages = (
        ("system", SYSTEM),
        ("user", user),
        ("assistant", f"```python\n{previous_code.rstrip()}\n```"),
        ("user", instruction),
    )
    return ChatPrompt(messages=messages), None


def self_correct(ctx: EpisodeContext) -> Episode:
    """Multi-turn self-correction (SCoRe's prompt): no tests, the last turn's code is the answer.

    ``self_correct_turns`` turns (default: the generator budget, as every strategy may use); SCoRe's
    own protocol is 2 turns (``self_correct_turns: 2``).
    """
    return (yield from self_correct_turns(ctx, ctx.config.iterations(ctx.config.self_correct_turns)))


def self_correct_twice(ctx: EpisodeContext) -> Episode:
    """SCoRe's 2 turns, whatever ``self_correct_turns`` says: what ``self_correct_rl`` was trained on."""
    return (yield from self_correct_turns(ctx, 2))


def self_correct_turns(ctx: EpisodeContext, turns: int) -> Episode:
    """Up to ``turns`` turns (the generator budget permitting): the prompt, then SCoRe's instruction after each."""
    candidate = yield from ctx.code(ctx.parts.text)
    ctx.log(0, candidate)
    for _ in range(turns - 1):
        if ctx.remaining("generator") <= 0:
            break
        prompt, prefix = follow_up_prompt(ctx, candidate.code, SELF_CORRECT_INSTRUCTION)
        candidate = yield from ctx.code(ctx.parts.text, prompt=prompt, prefix=prefix)
        ctx.log("self_correct", candidate)
    # it sees no tests, so it never stops on a pass
    return ctx.finish(candidate, stop=BUDGET if ctx.remaining("generator") <= 0 else OWN_END)
