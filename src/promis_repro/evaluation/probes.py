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
import builtins
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
    # operands the harness computed itself (the expected side of ``f(x) == [1, 2]``):
    # their sandbox copies are ignored, so the program cannot supply them
    trusted: dict[int, Any] = field(default_factory=dict)

    def verdict(self, values: list[Any]) -> bool:
        """Apply the assert's test to decoded operand values (raises on nonsense, counted as a failure)."""
        if not isinstance(values, list):
            return False
        values = [self.trusted.get(i, v) for i, v in enumerate(values)]
        if any(isinstance(v, Opaque) for v in values):
            return False
        if self.kind == "compare":
            return bool(_OPS[self.op](values[0], values[1]))
        if self.kind == "isclose":
            return math.isclose(*values, **self.isclose_kwargs)
        if self.kind == "not":
            return not values[0]
        return bool(values[0])


#: pure functions an expected value may be built with (``set((4, 5))``, ``sorted([...])``)
_PURE = {
    name: getattr(builtins, name)
    for name in ("set", "frozenset", "tuple", "list", "dict", "sorted", "str", "int", "float", "bool", "complex",
                 "abs", "round", "len", "min", "max", "sum", "range", "reversed")
}  # fmt: skip
_PURE_NODES = (
    ast.Expression, ast.Constant, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.UnaryOp, ast.BinOp, ast.Call,
    ast.Name, ast.Load, ast.keyword, ast.operator, ast.unaryop, ast.Attribute,
)  # fmt: skip


def trusted_value(node: ast.expr, rebound: frozenset[str] = frozenset()) -> tuple[bool, Any]:
    """Evaluate an operand in the harness when it only uses literals, pure builtins and ``math``.

    ``rebound``: names the test program assigns itself (HumanEval/38 calls a
    local variable ``str``); an operand using one of them is left to the sandbox.
    """
    tree = ast.Expression(body=node)
    for sub in ast.walk(tree):
        if not isinstance(sub, _PURE_NODES):
            return False, None
        if isinstance(sub, ast.Name) and ((sub.id not in _PURE and sub.id != "math") or sub.id in rebound):
            return False, None
        if isinstance(sub, ast.Attribute) and not (isinstance(sub.value, ast.Name) and sub.value.id == "math"):
            return False, None
    try:
        code = compile(ast.fix_missing_locations(tree), "<expected>", "eval")
        return True, eval(code, {"__builtins__": {}, "math": math, **_PURE})
    except Exception:
        return False, None


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


def bound_names(tree: ast.AST) -> frozenset[str]:
    """Every name the program binds: assignments, loop targets, parameters, imports, definitions."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
    return frozenset(names)


class _Rewriter(ast.NodeTransformer):
    def __init__(self, rebound: frozenset[str]) -> None:
        self.probes: list[Probe] = []
        self.rebound = rebound

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
        trusted = {}
        for position, operand in enumerate(operands):
            known, value = trusted_value(operand, self.rebound)
            if known:
                trusted[position] = value
        probe = Probe(probe.kind, probe.op, probe.isclose_kwargs, ast.unparse(node), trusted)
        self.probes.append(probe)
        # the sandbox never sees an operand the harness computed: it gets None
        # in its place, so a program cannot learn the expected value and echo it
        sent = [ast.Constant(None) if i in trusted else operand for i, operand in enumerate(operands)]
        thunk = ast.Lambda(
            args=ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]),
            body=ast.List(elts=sent, ctx=ast.Load()),
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
    rewriter = _Rewriter(bound_names(tree) - {"math"})
    tree = ast.fix_missing_locations(rewriter.visit(tree))
    return ProbeProgram(ast.unparse(tree), rewriter.probes)
