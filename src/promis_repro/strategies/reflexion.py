"""Reflexion's programming loop (Shinn et al.), with its prompts' structure.

Internal tests are the feedback suite (Reflexion writes its own, one per problem: ``--feedback
selfgen``). First implementation; then, while the internal tests fail and ``reflexion_max_iters``
allows (it counts the first implementation, as in Reflexion's code; by default the generator budget,
so Reflexion may use as many calls as every other strategy): a self-reflection on the
failing code and its test results, then an improved implementation that sees the previous code,
the results and the reflection. Code is written greedily (``reflexion_temperature`` 0). Stops as
soon as the internal tests pass. The answer is the last implementation (Reflexion does not select
by tests); the hidden tests score it once, afterwards. A reflection is a generator call and counts
against the budget.
"""

from __future__ import annotations

from promis_repro.generation.base import ChatPrompt
from promis_repro.generation.prompts import completion_prefix
from promis_repro.strategies.actions import BUDGET, OWN_END, PASSED, EpisodeContext
from promis_repro.strategies.engine import Episode

REFLECTION_SYSTEM = (
    "You are a Python programming assistant. You will be given a function implementation and a series of unit "
    "test results. Your goal is to write a few sentences to explain why your implementation is wrong as "
    "indicated by the tests. You will need this as guidance when you try again later. Only provide the few "
    "sentence description in your answer, not the implementation."
)
IMPROVE_SYSTEM = (
    "You are an AI Python assistant. You will be given your previous implementation of a function, a series of "
    "unit tests results, and your self-reflection on your previous implementation. Write your full improved "
    "implementation in a single ```python code block."
)


def _commented(text: str) -> str:
    return "\n".join(f"# {line}" for line in text.splitlines())


def reflexion(ctx: EpisodeContext) -> Episode:
    spec = ctx.tools.generator_spec
    temperature = ctx.config.reflexion_temperature
    implementation = yield from ctx.code(ctx.parts.text, temperature=temperature)
    ctx.log(0, implementation, reflexion_iteration=0)
    # Reflexion counts the first implementation among its max_iters
    stop = OWN_END
    for iteration in range(1, ctx.config.iterations(ctx.config.reflexion_max_iters)):
        if implementation.feedback.passed:
            stop = PASSED
            break
        if ctx.remaining("generator") < 2:  # a reflection and an implementation no longer fit
            stop = BUDGET
            break
        results = f"[unit test results]:\n{implementation.feedback.text}"
        previous = f"[previous impl]:\n```python\n{implementation.code.rstrip()}\n```"
        if spec.prompt_format == "completion":
            ask = ChatPrompt(text=f"{_commented(implementation.code)}\n{_commented(results)}\n# Why this fails:\n#")
        else:
            ask = ChatPrompt(messages=(("system", REFLECTION_SYSTEM), ("user", f"{previous}\n\n{results}")))
        reflection = (yield from ctx.ask("generator", ask, "reflection", temperature=temperature)).text.strip()
        task_text = ctx.model_prompt(ctx.parts.text)
        if spec.prompt_format == "completion":
            prefix = completion_prefix(ctx.task, ctx.parts.text)
            text = f"{_commented(implementation.code)}\n{_commented(results)}\n{_commented(reflection)}\n{prefix}"
            implementation = yield from ctx.code(
                ctx.parts.text, prompt=ChatPrompt(text=text), prefix=text, temperature=temperature
            )
        else:
            user = (
                f"{task_text.messages[-1][1]}\n{previous}\n\n{results}\n\n[reflection on previous impl]:\n"
                f"{reflection}\n\n[improved impl]:"
            )
            prompt = ChatPrompt(messages=(("system", IMPROVE_SYSTEM), ("user", user)))
            implementation = yield from ctx.code(ctx.parts.text, prompt=prompt, temperature=temperature)
        ctx.log("reflexion", implementation, reflexion_iteration=iteration, reflection=reflection)
    else:  # every iteration ran: why it stopped is the last implementation's feedback, or the budget
        stop = ctx.stop_reason()
    return ctx.finish(implementation, stop=stop)
