"""The value encoding that crosses the sandbox boundary, and assert rewriting into probes."""

from __future__ import annotations

import collections
import math

import pytest

from promis_repro.evaluation.probes import rewrite_asserts
from promis_repro.sandbox.child import digest_if_large, encode
from promis_repro.sandbox.values import Digest, Opaque, decode


@pytest.mark.parametrize(
    "value",
    [
        None, True, 0, -7, 2**5000, -(3**4000), 1.5, -0.0, math.inf, "s", b"\x00\xff", 1 + 2j,
        [1, (2, 3), {4}, frozenset({5})], {"a": [1], 2: (None,)}, ((),), [[[]]],
    ],
)  # fmt: skip
def test_round_trip_keeps_value_and_type(value):
    decoded = decode(encode(value))
    assert decoded == value and type(decoded) is type(value)


def test_nan_round_trips():
    assert math.isnan(decode(encode(float("nan"))))


def test_subclasses_keep_a_distinct_type_but_compare_by_value():
    point = collections.namedtuple("Point", "x y")(1, 2)
    decoded = decode(encode(point))
    assert decoded == (1, 2) and type(decoded) is not tuple and isinstance(decoded, tuple)
    assert type(decode(encode(point))) is type(decoded)  # same foreign type both times
    counter = decode(encode(collections.Counter("aab")))
    assert counter == {"a": 2, "b": 1}


def test_hostile_objects_become_opaque():
    class Eq:
        def __eq__(self, other):
            return True

    class EqList(list):
        def __eq__(self, other):
            return True

        def __iter__(self):
            return iter([1, 2, 3])

    assert isinstance(decode(encode(Eq())), Opaque)
    assert decode(encode(Eq())) != decode(encode(Eq()))
    fake = decode(encode(EqList([9])))
    assert fake == [9]  # its real contents, not what its own methods claim


def test_large_values_travel_as_digests():
    big = [(i, str(i)) for i in range(400_000)]
    record = digest_if_large(big)
    assert record is not None
    assert decode(record) == Digest(record["digest"])
    assert decode(record) == big
    assert decode(record) != big[:-1]
    assert digest_if_large([1, 2, 3]) is None


def test_rewrite_asserts_into_probes():
    program = rewrite_asserts(
        "assert f(1) == 2\n"
        "assert math.isclose(g(2), 3.0, rel_tol=0.001)\n"
        "assert not h()\n"
        "assert k([1])\n"
        "def check(candidate):\n"
        "    for i in range(3):\n"
        "        assert candidate(i) in (1, 2)\n"
    )
    kinds = [p.kind for p in program.probes]
    assert kinds == ["compare", "isclose", "not", "truth", "compare"]
    assert "assert" not in program.source
    eq, close, neg, truth, member = program.probes
    assert eq.verdict([2, 2]) and not eq.verdict([2.5, 2])
    assert close.verdict([3.001, 3.0]) and not close.verdict([3.1, 3.0])
    assert neg.verdict([False]) and truth.verdict([True])
    assert member.verdict([1, (1, 2)]) and not member.verdict([3, (1, 2)])
    assert not eq.verdict([Opaque("x"), 2])
