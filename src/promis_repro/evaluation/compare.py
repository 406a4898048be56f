"""Output comparison in the trusted process, with EvalPlus 0.3.1 and APPS semantics.

``evalplus_matches`` is the body of EvalPlus's ``unsafe_execute`` loop with its
special oracles, applied to decoded values instead of live objects. The
helpers (``is_floats``, the special-oracle task lists and reference functions)
are EvalPlus's own.

One deliberate difference: EvalPlus 0.3.1's HumanEval/32 (``find_zero``)
branch ``continue``s before it records the input as passed, so it scores every
``find_zero`` solution, the canonical one included, as a failure. We record the
input as passed when ``|poly(xs, out)| <= atol``, which is what that oracle
means.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from evalplus.eval import is_floats
from evalplus.eval._special_oracle import (
    MBPP_OUTPUT_NOT_NONE_TASKS,
    MBPP_OUTPUT_SET_EQ_TASKS,
    _digit_distance_nums,
    _poly,
    _surface_Area,
)

from promis_repro.sandbox.values import Opaque


class AtolState:
    """EvalPlus mutates ``atol`` inside its loop (0 becomes 1e-6 at the first float output) and keeps it."""

    def __init__(self, atol: float) -> None:
        self.atol = atol


def evalplus_matches(dataset: str, entry_point: str, inp: Any, out: Any, exp: Any, state: AtolState) -> bool:
    try:
        return _evalplus_matches(dataset, entry_point, inp, out, exp, state)
    except BaseException:
        return False


def _evalplus_matches(dataset: str, entry_point: str, inp: Any, out: Any, exp: Any, state: AtolState) -> bool:
    # an Opaque value equals nothing; only the "is not None" oracle can accept it
    exact_match = out == exp
    if dataset == "mbpp":
        if entry_point == "are_equivalent":  # Mbpp/164 special oracle
            exact_match = True
        elif entry_point == "sum_div":  # Mbpp/295
            exact_match = exact_match or out == 0
        elif entry_point == "surface_Area":  # Mbpp/581
            exact_match = exact_match or abs(out - _surface_Area(*inp)) <= state.atol
        elif entry_point == "digit_distance_nums":  # Mbpp/558
            exact_match = exact_match or out == _digit_distance_nums(*inp)
        elif entry_point in MBPP_OUTPUT_SET_EQ_TASKS:
            exact_match = set(out) == set(exp)
        elif entry_point in MBPP_OUTPUT_NOT_NONE_TASKS:
            exact_match = out == exp if isinstance(out, bool) else exp == (out is not None)
    if dataset == "humaneval" and entry_point == "find_zero":
        return abs(_poly(*inp, out)) <= state.atol
    if state.atol == 0 and is_floats(exp):
        state.atol = 1e-6
    if not exact_match and state.atol != 0:
        if type(out) is not type(exp):
            return False
        if isinstance(exp, (list, tuple)) and len(out) != len(exp):
            return False
        return bool(np.allclose(out, exp, rtol=1e-07, atol=state.atol))
    return bool(exact_match)


def _apps_normalize(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_apps_normalize(v) for v in value]
    if isinstance(value, list):
        return [_apps_normalize(v) for v in value]
    return value


def apps_call_matches(out: Any, expected: Any) -> bool:
    """APPS ``testing_util``: equal to the expected value, or to its single element, tuples read as lists."""
    if isinstance(out, Opaque):
        return False
    try:
        out = _apps_normalize(out)
        if out == _apps_normalize(expected):
            return True
        return isinstance(expected, list) and len(expected) == 1 and out == _apps_normalize(expected[0])
    except BaseException:
        return False


def _tokens(text: str) -> list[str]:
    return text.split()


def _close(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6)


def apps_stdout_matches(stdout: str, expected: str) -> bool:
    """APPS-style stdout check: equal line by line after stripping, else token by token with float tolerance."""
    got = [line.strip() for line in stdout.strip().splitlines()]
    want = [line.strip() for line in expected.strip().splitlines()]
    if got == want:
        return True
    got_tokens, want_tokens = _tokens(stdout), _tokens(expected)
    return len(got_tokens) == len(want_tokens) and all(_close(a, b) for a, b in zip(got_tokens, want_tokens))
