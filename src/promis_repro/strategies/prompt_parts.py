"""The editable natural-language part of a task prompt, and putting an edited one back.

Actions 1 and 2 change only what a human would call the task description:
MBPP's sentence, the prose of a HumanEval docstring (not the signature, not the
``>>>`` examples), an APPS statement's story before its Input/Output sections.
Everything else (code, signatures, examples, shown asserts) is carried through
unchanged, so ``compose(parts, parts.text)`` reproduces the original prompt.
"""

from __future__ import annotations

import ast
import re
import warnings
from dataclasses import dataclass

from promis_repro.data.task import Task
from promis_repro.grid import HUMANEVAL_FAMILY, MBPP_FAMILY

_APPS_SECTION = re.compile(r"^\s*(-{3,}\s*(input|examples?)\s*-{3,}|input:?\s*$)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class PromptParts:
    head: str
    text: str  # the editable description (dedented)
    tail: str
    indent: str = ""  # continuation-line indentation inside a docstring

    def compose(self, text: str) -> str:
        lines = text.strip("\n").split("\n")
        body = lines[0] + "".join(f"\n{self.indent}{line}" if line.strip() else f"\n{line}" for line in lines[1:])
        return self.head + body + self.tail


def _example_start(line: str, entry_point: str | None) -> bool:
    stripped = line.strip().lower()
    if stripped.startswith((">>>", "for example", "example", "e.g.", "test case", "input:", "sample")):
        return True
    return bool(entry_point) and stripped.startswith(f"{entry_point.lower()}(")


def _docstring_parts(prompt: str, entry_point: str | None) -> PromptParts:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(prompt)
    except SyntaxError:
        return PromptParts(prompt, "", "")
    functions = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    target = next((f for f in functions if f.name == entry_point), functions[-1] if functions else None)
    # the first string statement (HumanEval/115 puts ``import math`` above its docstring)
    strings = [
        s.value
        for s in (target.body if target else [])
        if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and isinstance(s.value.value, str)
    ]
    if not strings:
        return PromptParts(prompt, "", "")
    node = strings[0]
    lines_with_ends = prompt.splitlines(keepends=True)
    offsets = [0]
    for line in lines_with_ends:
        offsets.append(offsets[-1] + len(line))

    def position(lineno: int, col: int) -> int:  # ast columns count UTF-8 bytes
        return offsets[lineno - 1] + len(lines_with_ends[lineno - 1].encode()[:col].decode())

    start = position(node.lineno, node.col_offset)
    end = position(node.end_lineno or node.lineno, node.end_col_offset or 0)
    literal = prompt[start:end]
    match = re.match(r'^[rRuU]?("""|\'\'\'|"|\')', literal)
    if match is None or not literal.endswith(match.group(1)):
        return PromptParts(prompt, "", "")
    body_start = start + match.end()
    body_end = end - len(match.group(1))
    raw = prompt[body_start:body_end]
    # the description starts at the docstring's first non-blank character
    text_start = body_start + len(raw) - len(raw.lstrip())
    body = prompt[text_start:body_end]
    lines = body.split("\n")
    stop = next((i for i, line in enumerate(lines) if _example_start(line, entry_point)), len(lines))
    while stop > 0 and not lines[stop - 1].strip():
        stop -= 1
    if stop == 0:
        return PromptParts(prompt[:text_start], "", prompt[text_start:])
    indent = " " * (target.col_offset + 4)
    continuation = [line for line in lines[1:stop] if line.strip()]
    if not all(line.startswith(indent) for line in continuation):
        indent = ""
    # whitespace-only lines are kept as they are (compose copies them back verbatim)
    text_lines = [lines[0]] + [line[len(indent) :] if line.strip() else line for line in lines[1:stop]]
    nl_raw = "\n".join(lines[:stop])
    return PromptParts(
        head=prompt[:text_start],
        text="\n".join(text_lines),
        tail=body[len(nl_raw) :] + prompt[body_end:],
        indent=indent,
    )


def editable_parts(task: Task) -> PromptParts:
    if task.benchmark in MBPP_FAMILY:
        return PromptParts("", task.description or task.prompt, "")
    if task.benchmark in HUMANEVAL_FAMILY:
        return _docstring_parts(task.prompt, task.entry_point)
    match = _APPS_SECTION.search(task.prompt)
    if match is None or match.start() == 0:
        return PromptParts("", task.prompt, "")
    text = task.prompt[: match.start()]
    stripped = text.rstrip()
    return PromptParts("", stripped, text[len(stripped) :] + task.prompt[match.start() :])
