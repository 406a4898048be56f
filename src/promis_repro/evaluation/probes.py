"""Rewrite assert statements into probes whose verdict the harness computes.

``assert f(x) == 3`` becomes ``__promis_check__(0, lambda: (f(x), 3))``: the
sandbox evaluates the operands and sends their encoded values back; the harness
applies ``==`` to the decoded builtins. Shapes understood:
``a OP b`` (one comparison), ``math.isclose(a, b, ...)``, ``not a`` and any
other expression (its truth value). The probe never raises, so one failing
assert does not hide the ones after it (each counts for SoftPass@1).
"""

from __future__ import annotations

import ast
import math
import operator
from dataclasses import dataclass, field
from typing import Any

from promis_repro.sandbox.values import Opaque

_OPS: dict[type[ast.cmpop], Any] = {
    ast.Eq: operator.eq,
    ast.NotEq: operator.ne,
    ast.Lt: operator.lt,
    ast.LtE: operator.le,
    ast.Gt: operator.gt,
    ast.GtE: operator.ge,
    ast.In: lambda a, b: a in b,
    ast.NotIn: lambda a, b: a not in b,
    # identity only means something for singletons once values crossed a process boundary
    ast.Is: lambda a, b: a is b if _singleton(a) or _singleton(b) else a == b,
    ast.IsNot: lambda a, b: a is not b if _singleton(a) or _singleton(b) else a != b,
}


def _singleton(value: Any) -> bool:
    return value is None or value is True or value is False or value is Ellipsis


@dataclass(frozen=True)
class Probe:
    kind: str  # "compare", "isclose", "not", "truth"
    op: type[ast.cmpop] | None = None
    isclose_kwargs: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def verdict(self, values: list[Any]) -> bool:
        """Apply the assert's test to decoded operand values (raises on nonsense, counted as a failure)."""
        if any(isinstance(v, Opaque) for v in values):
            return False
        if self.kind == "compare":
            return bool(_OPS[self.op](values[0], values[1]))
        if self.kind == "isclose":
            return math.isclose(*values, **self.isclose_kwargs)
        if self.kind == "not":
            return not values[0]
        return bool(values[0])


def _is_isclose(call: ast.expr) -> bool:
    if not isinstance(call, ast.Call) or call.args == [] or len(call.args) != 2:
        return False
    func = call.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    return name == "isclose" and all(kw.arg in {"rel_tol", "abs_tol"} and _is_literal(kw.value) for kw in call.keywords)


def _is_literal(node: ast.expr) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return False
    return True


def _truth(node: ast.expr) -> ast.expr:
    """``bool(node)`` via the sandbox's pristine ``bool``: truth of values like ``re.Match`` that cannot travel."""
    return ast.Call(func=ast.Name(id="__promis_bool__", ctx=ast.Load()), args=[node], keywords=[])


class _Rewriter(ast.NodeTransformer):
    def __init__(self) -> None:
        self.probes: list[Probe] = []

    def visit_Assert(self, node: ast.Assert) -> ast.stmt:
        test = node.test
        if isinstance(test, ast.Compare) and len(test.ops) == 1 and type(test.ops[0]) in _OPS:
            probe, operands = Probe("compare", op=type(test.ops[0])), [test.left, test.comparators[0]]
        elif _is_isclose(test):
            kwargs = {kw.arg: ast.literal_eval(kw.value) for kw in test.keywords}
            probe, operands = Probe("isclose", isclose_kwargs=kwargs), list(test.args)
        elif isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            probe, operands = Probe("not"), [_truth(test.operand)]
        else:
            probe, operands = Probe("truth"), [_truth(test)]
        probe = Probe(probe.kind, probe.op, probe.isclose_kwargs, ast.unparse(node))
        self.probes.append(probe)
        thunk = ast.Lambda(
            args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
            body=ast.List(elts=operands, ctx=ast.Load()),
        )
        call = ast.Call(
            func=ast.Name(id="__promis_check__", ctx=ast.Load()),
            args=[ast.Constant(len(self.probes) - 1), thunk],
            keywords=[],
        )
        return ast.copy_location(ast.Expr(value=call), node)


@dataclass(frozen=True)
class ProbeProgram:
    source: str
    probes: list[Probe]


def rewrite_asserts(source: str) -> ProbeProgram:
    """The test program with every ``assert`` turned into a probe (raises SyntaxError on bad test code)."""
    tree = ast.parse(source)
    rewriter = _Rewriter()
    tree = ast.fix_missing_locations(rewriter.visit(tree))
    return ProbeProgram(ast.unparse(tree), rewriter.probes)
