"""The model's linear layers on a CPU: decode steps padded to batch sizes that round alike, and float16 weights.

A matrix product's rounding can depend on how many rows it has: a product
of one row runs in a matrix-vector kernel, MKL picks other float32 kernels
for some small row counts, and fbgemm's float16-weight GEMM runs a trailing
block of one or two rows in a kernel of its own. So a decode step (one new
token a row) of ``n`` rows runs its products on ``n`` rows plus copies of
its first, up to a size that rounds like every other (``RoundAlike``, probed
on this CPU), and a prompt's completion does not depend on its batch mates. Everything else in a step works row by row.
(Padding here, not in the cache, costs a few rows of one product instead of
copying every layer's keys and values twice a step.)

``HALF_WEIGHTS`` (x86 CPUs with AVX2 but no bf16): the weights are packed
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
    """The batch sizes in which each row of a layer's product rounds as in any other such size, probed once per
    layer shape and thread count (the kernels' blocking depends on those, not on the weights' values)."""

    def __init__(self, precision: str) -> None:
        self.precision = precision
        self.probed: dict[tuple[int, int, int], list[int]] = {}

    def rows_for(self, rows: int, layer: RowPaddedLinear) -> int:
        key = (layer.in_features, layer.out_features, torch.get_num_threads())
        sizes = self.probed.get(key, [])
        if not sizes or sizes[-1] < rows:
            sizes = self.probed[key] = _probe(layer, max(2 * rows, 40))
        return next((n for n in sizes if n >= rows), rows)


def _probe(layer: RowPaddedLinear, max_rows: int) -> list[int]:
    """The sizes up to ``max_rows`` in which every row gets its usual bits (what most sizes containing it give)."""
    dtype = torch.float32 if layer.linear is None else layer.linear.weight.dtype
    inputs = torch.randn(max_rows, layer.in_features, generator=torch.Generator().manual_seed(0)).to(dtype)
    bits = []  # bits[m - 1][row]: a digest of the row's output in a product of m rows
    with torch.inference_mode():
        for m in range(1, max_rows + 1):
            output = layer.product(inputs[:m].contiguous()).float()
            bits.append([hashlib.blake2b(row.numpy().tobytes(), digest_size=16).digest() for row in output])
    usual = [Counter(sizes[row] for sizes in bits[row:]).most_common(1)[0][0] for row in range(max_rows)]
    return [m for m in range(1, max_rows + 1) if bits[m - 1] == usual[:m]]


class RowPaddedLinear(torch.nn.Module):
    """``nn.Linear`` whose decode steps run at a row count ``RoundAlike`` allows; float16-packed weights with
    ``HALF_WEIGHTS``. Outside ``decode_step()`` the rows are not padded."""

    def __init__(self, linear: torch.nn.Linear, round_alike: RoundAlike) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
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


def pad_linears(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """Replace every ``nn.Linear`` of ``model`` (in place) by a ``RowPaddedLinear``; returns the model.
    With ``HALF_WEIGHTS``, a tied LM head is packed as a copy: the embedding lookup keeps its float32 matrix."""
    round_alike = RoundAlike(precision)

    def replace(module: torch.nn.Module) -> None:
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear):
                setattr(module, name, RowPaddedLinear(child, round_alike))
            else:
                replace(child)

    replace(model)
    return model
