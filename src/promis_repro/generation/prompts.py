"""Prompt formats per benchmark and model family, and code extraction from completions.

Instruct models get chat messages and answer in a fenced block; completion
models (CodeT5+) continue a code prefix. The task description is a parameter
so that strategies can pass a mutated or rewritten one.
"""

from __future__ import annotations

import ast
import re
import warnings

from promis_repro.data.task import AssertTests, Task
from promis_repro.generation.base import ChatPrompt
from promis_repro.generation.registry import ModelSpec
from promis_repro.grid import HUMANEVAL_FAMILY, MBPP_FAMILY

SYSTEM = (
    "You are an expert Python programmer. Answer with one complete Python program in a single ```python code block."
)
FENCE = re.compile(r"```(?:python|py|Python)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
COMPLETION_STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\nassert ", '\n"""', "\n#")
#: stop strings for instruct models (the closed-fence rule does most of the work)
INSTRUCT_STOPS = ("\n```\n\n",)


def shown_tests(task: Task) -> list[str]:
    tests = task.visible_tests
    if isinstance(tests, AssertTests):
        return list(tests.asserts)
    return []


def instruct_message(task: Task, description: str) -> str:
    if task.benchmark in MBPP_FAMILY:
        tests = "\n".join(shown_tests(task))
        if not tests:  # a task presented without a visible test (training, as some test-time tasks come)
            named = f"\nWrite it as a Python function named {task.entry_point}." if task.entry_point else ""
            return f"{description.strip()}{named}\n"
        return f"{description.strip()}\nYour code should pass this test:\n{tests}\n"
    if task.benchmark in HUMANEVAL_FAMILY:
        return f"Complete the following Python function:\n```python\n{description.rstrip()}\n```\n"
    # APPS
    parts = [description.strip()]
    if task.starter_code.strip():
        parts.append(f"Use this starter code and return the function:\n```python\n{task.starter_code.rstrip()}\n```")
    else:
        parts.append("Read the input from standard input and print the answer to standard output.")
    return "\n\n".join(parts) + "\n"


def completion_prefix(task: Task, description: str) -> str:
    if task.benchmark in HUMANEVAL_FAMILY:
        return description
    tests = "\n".join(shown_tests(task))
    docstring = "\n".join(part for part in (description.strip(), tests) if part)
    prefix = f'"""\n{docstring}\n"""\n'
    if task.starter_code.strip():
        prefix += task.starter_code.rstrip() + "\n"
    elif task.entry_point:
        prefix += f"def {task.entry_point}("
    return prefix


def default_description(task: Task) -> str:
    """The text a prompt is built around: MBPP's sentence (the format adds its shown assert once), else the prompt."""
    mbpp = task.benchmark in MBPP_FAMILY
    return task.description if mbpp and task.description else task.prompt


def build_prompt(task: Task, spec: ModelSpec, description: str | None = None) -> ChatPrompt:
    """The generator's prompt for ``task``; ``description`` replaces the task's own text (for strategies)."""
    text = default_description(task) if description is None else description
    if spec.prompt_format == "completion":
        return ChatPrompt(text=completion_prefix(task, text))
    return ChatPrompt(messages=(("system", SYSTEM), ("user", instruct_message(task, text))))


def stop_strings(spec: ModelSpec) -> tuple[str, ...]:
    return COMPLETION_STOPS if spec.prompt_format == "completion" else INSTRUCT_STOPS


def _parses(code: str) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _defines(code: str, name: str | None) -> bool:
    if not name:
        return True
    base = name.split("().")[0]
    return re.search(rf"^\s*(def|class)\s+{re.escape(base)}\b", code, re.MULTILINE) is not None


def _trim_to_parse(code: str) -> str:
    """Drop trailing lines until the code parses (prose or examples after the program)."""
    lines = code.rstrip().splitlines()
    while lines and not _parses("\n".join(lines)):
        lines.pop()
    return "\n".join(lines) + "\n" if lines else code


_CODE_START = re.compile(r"^(def |class |import |from |@|[A-Za-z_][A-Za-z0-9_]* *=|for |while |if |print\()")


def _code_from_prose(text: str, entry_point: str | None) -> str:
    """The first run of code lines in unfenced text, starting at ``def entry_point`` when there is one."""
    lines = text.splitlines()
    start = None
    if entry_point:
        start = next((i for i, line in enumerate(lines) if _defines(line, entry_point)), None)
        # keep the imports right above the function
        while start and lines[start - 1].startswith(("import ", "from ")):
            start -= 1
    if start is None:
        start = next((i for i, line in enumerate(lines) if _CODE_START.match(line)), None)
    if start is None:
        return ""
    kept = []
    for line in lines[start:]:
        if line and not line[0].isspace() and not _CODE_START.match(line) and not line.startswith(("#", ")", "]")):
            break
        kept.append(line)
    return "\n".join(kept)


def prompt_imports(task: Task) -> list[str]:
    source = task.starter_code or (task.prompt if task.benchmark in HUMANEVAL_FAMILY else "")
    return [line for line in source.splitlines() if line.startswith(("import ", "from "))]


def extract_code(task: Task, completion: str, spec: ModelSpec, prefix: str = "") -> str:
    """A complete program from a completion: a fenced block, else the first code in the prose.

    Prefers a block that defines the entry point and parses; trims trailing
    prose until it parses; adds the prompt's own imports (``from typing import
    List``) when the code uses them without importing.
    """
    if spec.prompt_format == "completion":
        return _trim_to_parse(prefix + completion)
    # candidates: every fenced block, the code before the first fence (small
    # models sometimes write only the closing fence), the code in the prose
    candidates = [b for b in FENCE.findall(completion) if b.strip()]
    before = completion.split("```", 1)[0]
    candidates.append(_code_from_prose(before, task.entry_point))
    if "```" not in completion:
        candidates.append(_code_from_prose(completion, task.entry_point))
    candidates = [_trim_to_parse(c) for c in candidates if c.strip()]
    ranked = sorted(
        candidates,
        key=lambda c: (not _defines(c, task.entry_point), not re.search(r"^(def|class) ", c, re.M), not _parses(c)),
    )
    code = ranked[0] if ranked else ""
    missing = [line for line in prompt_imports(task) if line not in code]
    if missing:
        code = "\n".join(missing) + "\n" + code
    return code
