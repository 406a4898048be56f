"""Visible tests a prompt already shows: doctest examples and ``f(x) -> y`` lines of HumanEval docstrings."""

from __future__ import annotations

import ast
import doctest
import re

_ARROWS = r"(?:==>|=>|➞|->|→|==|\bshould return\b|\breturns?\b|\bshould be\b)"


def _valid_assert(source: str) -> str | None:
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assert):
        return None
    return source


def _literalish(text: str) -> bool:
    """True when ``text`` is a Python expression without names other than True/False/None."""
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError:
        return False
    return all(not isinstance(node, ast.Name) or node.id in {"True", "False", "None"} for node in ast.walk(tree))


def docstring_asserts(prompt: str, entry_point: str) -> list[str]:
    """Assert statements for the examples shown in ``prompt`` (doctest style first, then arrow lines)."""
    found: list[str] = []
    for example in doctest.DocTestParser().get_examples(prompt):
        source = example.source.strip()
        # the closing quotes of the docstring follow the last example's output
        want = "\n".join(line for line in example.want.splitlines() if line.strip() not in ('"""', "'''")).strip()
        if entry_point in source and want and "\n" not in source and _literalish(want):
            candidate = _valid_assert(f"assert {source} == {want}")
            if candidate:
                found.append(candidate)
    call = re.compile(rf"(?P<call>\b{re.escape(entry_point)}\(.*\))\s*{_ARROWS}\s*(?P<out>.+?)\s*$")
    for line in prompt.splitlines():
        match = call.search(line.strip().removeprefix(">>>").strip())
        if not match:
            continue
        out = match.group("out").rstrip(".,;")
        if not _literalish(out):
            continue
        candidate = _valid_assert(f"assert {match.group('call')} == {out}")
        if candidate and candidate not in found:
            found.append(candidate)
    return found


def prompt_asserts(prompt: str) -> list[str]:
    """The ``assert ...`` lines an MBPP+ prompt embeds."""
    return [
        line.strip()
        for line in prompt.splitlines()
        if line.strip().startswith("assert ") and _valid_assert(line.strip())
    ]
