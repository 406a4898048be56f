"""The model's linear layers on a CPU: decode steps padded to batch sizes that round alike, and float16 weights.

A matrix product's rounding can depend on how many rows it has: a product
of one row runs in a matrix-vector kernel, MKL picks other float32 kernels
for some small row counts, and fbgemm's float16-weight GEMM runs a trailing
block of one or two rows in a kernel of its own. So a decode step (one new
token a row) of ``n`` rows runs its products on ``n`` rows plus copies of
its first, up to a size that rounds like every other (``RoundAlike``, probed
on this CPU), and a prompt's completion does not depend on its batch mates.
Everything else in a step works row by row. (Padding here, not in the cache,
costs a few rows of one product instead of copying every layer's keys and
values twice a step.)

``HALF_WEIGHTS`` (what ``auto`` picks on x86 CPUs with AVX2): the weights are packed
in float16 for fbgemm, which widens them in registers and accumulates in
float32. A float32 decode step there is bound by reading the weights (540 MB
a step for SmolLM2-135M); half the bytes measured 1.7x (32 rows) to 4x
(4 rows) faster per step (``bench/RESULTS.md``). Activations stay float32,
so unlike int8 dynamic quantisation (one scale for the whole batch) a row's
output depends on that row alone.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
from collections import Counter
from collections.abc import Iterator

import torch

from promis_repro.generation.registry import HALF_WEIGHTS

_IN_DECODE_STEP = contextvars.ContextVar("in_decode_step", default=False)
# outputs a layer whose output is rounded to 16 bits is probed with, in each size (``_probe``): enough that a
# rounding which differs in 2 of 10,000 outputs shows
NARROW_PROBE_OUTPUTS = 300_000


@contextlib.contextmanager
def decode_step() -> Iterator[None]:
    """Within: the model's linear layers pad their rows (``decoding.decode`` wraps each step in it). Outside
    (a prompt's prefill, always alone; a plain forward), they run as ``nn.Linear`` would."""
    token = _IN_DECODE_STEP.set(True)
    try:
        yield
    finally:
        _IN_DECODE_STEP.reset(token)


class RoundAlike:
    """The batch sizes, up to a decode batch's ``max_rows``, in which each row of a layer's product gets the bits
    it gets in any other such size, at any position: probed when the model is loaded, once per layer shape
    (with or without bias) and thread count, which the kernels' blocking depends on, not the weights' values."""

    def __init__(self, precision: str, max_rows: int) -> None:
        self.precision = precision
        self.max_rows = max_rows
        self.probed: dict[tuple[int, int, bool, int], list[int]] = {}

    def _key(self, layer: RowPaddedLinear) -> tuple[int, int, bool, int]:
        return (layer.in_features, layer.out_features, layer.has_bias, torch.get_num_threads())

    def probe(self, layer: RowPaddedLinear) -> None:
        key = self._key(layer)
        if key not in self.probed:
            self.probed[key] = _probe(layer, self.max_rows)

    def rows_for(self, rows: int, layer: RowPaddedLinear) -> int:
        self.probe(layer)  # a no-op unless the thread count changed since the load
        size = next((n for n in self.probed[self._key(layer)] if n >= rows), None)
        if size is None:
            raise RuntimeError(
                f"a decode step of {rows} rows: the {layer.in_features}->{layer.out_features} layer was probed for "
                f"batches of up to {self.max_rows} rows (the generator's batch size when it was loaded)"
            )
        return size


def _probe(layer: RowPaddedLinear, max_rows: int) -> list[int]:
    """The sizes up to ``max_rows + 8`` in which every row gets its usual bits. Sizes up to ``max_rows + 24``
    are run, each vector at several positions (size m holds vectors m, m+1, ... of a ring), and a vector's
    usual bits are what most of its appearances give it (each vector appears in 20 sizes or more).

    A float32 output shows any change of the kernel's summation order, so one product a size finds it. An
    output rounded to bfloat16 or float16 hides most of them: on an AMD EPYC with AVX512-BF16 a bf16 product
    of one row (a matrix-vector kernel) differed from the same row among 2 or more in about 2 of 10,000
    outputs, which one vector of 576 outputs almost never shows but a 30-token completion through 30 layers
    does. So such a layer is probed over a ring of vectors holding ``NARROW_PROBE_OUTPUTS`` outputs or more,
    each size running through all of them."""
    accepted, largest = max_rows + 8, max_rows + 24
    dtype = torch.float32 if layer.linear is None else layer.linear.weight.dtype
    narrow = dtype != torch.float32
    ring = max(largest, -(-NARROW_PROBE_OUTPUTS // layer.out_features)) if narrow else largest
    vectors = torch.randn(ring, layer.in_features, generator=torch.Generator().manual_seed(0)).to(dtype)
    # size m: products of m consecutive vectors of the ring from vector m on (narrow: until every one took part)
    groups = {
        m: [[(m + start + j) % ring for j in range(m)] for start in range(0, ring if narrow else m, m)]
        for m in range(1, largest + 1)
    }
    votes: dict[int, Counter[bytes]] = {v: Counter() for v in range(ring)}
    seen: dict[int, list[tuple[int, bytes]]] = {m: [] for m in groups}  # (vector, digest of its output row)
    with torch.inference_mode():
        for m, products in groups.items():
            for rows in products:
                output = layer.product(vectors[rows]).float()
                for vector, row in zip(rows, output):
                    digest = hashlib.blake2b(row.numpy().tobytes(), digest_size=16).digest()
                    votes[vector][digest] += 1
                    seen[m].append((vector, digest))
    usual = {v: counter.most_common(1)[0][0] for v, counter in votes.items()}
    return [m for m in range(1, accepted + 1) if all(d == usual[v] for v, d in seen[m])]


class RowPaddedLinear(torch.nn.Module):
    """``nn.Linear`` whose decode steps run at a row count ``RoundAlike`` allows; float16-packed weights with
    ``HALF_WEIGHTS``. Outside ``decode_step()`` the rows are not padded."""

    def __init__(self, linear: torch.nn.Linear, round_alike: RoundAlike) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.has_bias = linear.bias is not None
        self.round_alike = round_alike
        self.linear: torch.nn.Linear | None = linear
        if round_alike.precision == HALF_WEIGHTS:
            bias = None if linear.bias is None else linear.bias.detach().float()
            self.packed = torch.ops.quantized.linear_prepack_fp16(linear.weight.detach().float(), bias)
            self.linear = None

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        flat = inputs.reshape(-1, self.in_features)
        rows = flat.shape[0]
        target = self.round_alike.rows_for(rows, self) if _IN_DECODE_STEP.get() else rows
        if target > rows:
            flat = torch.cat([flat, flat[:1].expand(target - rows, -1)])
        return self.product(flat)[:rows].reshape(*inputs.shape[:-1], self.out_features)

    def product(self, flat: torch.Tensor) -> torch.Tensor:
        """``[rows, in_features]`` times the weights, as many rows as given."""
        if self.linear is None:
            return torch.ops.quantized.linear_dynamic_fp16(flat.float().contiguous(), self.packed)
        return self.linear(flat)


def pad_linears(model: torch.nn.Module, precision: str, max_rows: int) -> torch.nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (in place) by a ``RowPaddedLinear`` for decode steps of up to
    ``max_rows`` rows, and probe their sizes; returns the model. With ``HALF_WEIGHTS``, a tied LM head is
    packed as a copy: the embedding lookup keeps its float32 matrix."""
    round_alike = RoundAlike(precision, max_rows)

    def replace(module: torch.nn.Module) -> None:
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                padded = RowPaddedLinear(child, round_alike)
                round_alike.probe(padded)
                setattr(module, name, padded)
            else:
                replace(child)

    replace(model)
    return model
