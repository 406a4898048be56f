"""Action 2: semantic rewriting of the task description by an instruct LLM, with the paper's output contract.

The rewriter must answer ``Here is the rewritten prompt:`` followed by one
description. ``parse_rewrite`` accepts it only when it is one description (one
paragraph after the prefix, no second prefix, no numbered alternatives),
names the function (when the task has one) and contains no code. Otherwise the
documented fallback of the paper's public code is used:
``Write a Python function named {f} that performs the intended task described
as: {description}`` (for stdin/stdout tasks without a function, the
description is kept unchanged).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "Here is the rewritten prompt:"
DEFAULT_TEMPLATE = (
    "Rewrite the following programming task description so that a code model solves it correctly.\n"
    "Function name: {function}\n"
    "Task description:\n{description}\n\n"
    "Latest test feedback on the code generated from it:\n{feedback}\n\n"
    "Write one clear paragraph that names the function {function}, states its inputs, its output and any "
    "edge cases the feedback reveals. Do not write any code.\n"
    'Start your answer with "Here is the rewritten prompt:".'
)
#: EPiC's initial-population request: a richer restatement of the task (it shows no test feedback)
EPIC_TEMPLATE = (
    "Rewrite the following programming task description so that it is complete and unambiguous: state the "
    "function name {function}, the types of its inputs and of its output, and what it must return, including "
    "edge cases. Do not write code.\nTask description:\n{description}\n\n"
    'Start your answer with "Here is the rewritten prompt:".'
)
FALLBACK = "Write a Python function named {function} that performs the intended task described as: {description}"
CODE = re.compile(
    r"```|^\s*(def |class |import |from \S+ import |return\b|assert\b|for .+:\s*$|while .+:\s*$|if .+:\s*$|>>>)",
    re.MULTILINE,
)
ALTERNATIVES = re.compile(r"^\s*(\d+[.)]\s|alternatively\b|option \d)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class RewriteResult:
    text: str
    valid: bool
    reason: str  # "ok" or why the fallback was used

    def as_dict(self) -> dict[str, object]:
        return {"valid": self.valid, "reason": self.reason}


def rewrite_request(template: str, description: str, function: str | None, feedback: str) -> str:
    values = {
        "description": description.strip(),
        "function": function or "the program",
        "feedback": feedback.strip() or "(no feedback yet)",
    }
    return template.format_map(values)


def validate_rewrite(output: str, function: str | None) -> tuple[str | None, str]:
    """The description inside a rewriter answer, or None and the reason it was rejected."""
    position = output.lower().find(PREFIX.lower())
    if position < 0:
        return None, "missing prefix"
    body = output[position + len(PREFIX) :]
    if PREFIX.lower() in body.lower():
        return None, "more than one rewritten prompt"
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n", body.strip()) if p.strip()]
    if not paragraphs:
        return None, "empty description"
    description = paragraphs[0].strip().strip('"').strip("'").strip()
    if CODE.search(body):
        return None, "contains code"
    if ALTERNATIVES.search(body):
        return None, "several alternative descriptions"
    if len(description.split()) < 4:
        return None, "too short"
    if function and re.search(rf"(?<![A-Za-z0-9_]){re.escape(function)}(?![A-Za-z0-9_])", description) is None:
        return None, f"does not name the function {function}"
    return description, "ok"


def parse_rewrite(output: str, function: str | None, current: str) -> RewriteResult:
    description, reason = validate_rewrite(output, function)
    if description is not None:
        return RewriteResult(description, True, reason)
    lead = FALLBACK.split("{function}")[0]
    if function and not current.startswith(lead):  # never wrap a fallback in another
        return RewriteResult(FALLBACK.format(function=function, description=current.strip()), False, reason)
    return RewriteResult(current, False, reason)
