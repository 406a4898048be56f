"""A decode step's attention on the CPU, row by row in compiled code (numba).

Each (row, key/value head) is one job: its query heads' scores over exactly
that row's slots, their softmax and the weighted sum of its values, in loops
whose bounds are the row's own length and the head size. A row's bits thus
depend on that row alone, never on how many rows share the step or how long
the longest is, which is what batched SDPA with a padding mask cannot promise
(its kernels and reduction orders follow the padded length). The grouped
query heads of a key/value head share one job, and the jobs
run on torch's thread count. Measured for SmolLM2-135M (32 rows, 100-300
slots, one layer): 0.74 ms against 2.6 ms for the same arithmetic as torch
matrix products row by row (``bench/RESULTS.md``).
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
import torch

# OpenMP first: numba's own "workqueue" pool, its fallback, wakes its threads slower (1.45 against 0.55 ms for
# 32 rows of one SmolLM2 layer, measured here)
numba.config.THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]


def _compiled(function: Any) -> Any:
    """``function`` compiled for parallel loops, its machine code cached beside the module or in numba's
    user cache; where neither is writable (a read-only image and home), compiled anew in each process (~2 s)."""
    try:
        return numba.njit(parallel=True, fastmath=True, cache=True)(function)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(parallel=True, fastmath=True)(function)


def _attend(
    queries: np.ndarray, keys: np.ndarray, values: np.ndarray, owners: np.ndarray, lengths: np.ndarray, out: np.ndarray
) -> None:
    # fastmath lets the loops vectorise; their trip counts (the head size, the input's length) fix the order
    inputs, kv_heads, group, dim = queries.shape
    for job in numba.prange(inputs * kv_heads):
        row = job // kv_heads
        head = job - row * kv_heads
        owner = owners[row]
        length = lengths[row]
        scores = np.empty((group, length), dtype=np.float32)
        for slot in range(length):
            for g in range(group):
                total = np.float32(0.0)
                for d in range(dim):
                    total += queries[row, head, g, d] * keys[owner, head, slot, d]
                scores[g, slot] = total
        for g in range(group):
            top = scores[g, 0]
            for slot in range(1, length):
                top = max(top, scores[g, slot])
            norm = np.float32(0.0)
            for slot in range(length):
                weight = np.float32(math.exp(scores[g, slot] - top))
                scores[g, slot] = weight
                norm += weight
            for d in range(dim):
                out[row, head, g, d] = 0.0
            for slot in range(length):
                weight = scores[g, slot]
                for d in range(dim):
                    out[row, head, g, d] += weight * values[owner, head, slot, d]
            for d in range(dim):
                out[row, head, g, d] /= norm


_attend = _compiled(_attend)


def _whole_buffer(view: torch.Tensor) -> np.ndarray:
    """The contiguous ``[rows, heads, capacity, head_dim]`` buffer behind a cache's ``[:, :, :span]`` view (numba
    vectorises only contiguous arrays; a row reads its own slots only)."""
    rows, heads, _, dim = view.shape
    strides = view.stride()
    if view.dtype != torch.float32 or strides[3] != 1 or strides[2] != dim or strides[0] != heads * strides[1]:
        raise ValueError("row attention reads float32 [rows, heads, capacity, head_dim] buffers sliced on slots")
    return view.as_strided((rows, heads, view.stride(1) // dim, dim), view.stride()).numpy()


def attend_rows(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    lengths: np.ndarray,
    scale: float,
    owners: np.ndarray | None = None,
) -> torch.Tensor:
    """One decode step: ``query`` ``[inputs, heads, 1, head_dim]``; ``key``/``value`` the cache's float32
    ``[rows, kv_heads, span, head_dim]`` views; input ``i`` attends row ``owners[i]``'s slots ``[0, lengths[i])``
    (default: input ``i`` is row ``i``'s). Returns ``[inputs, 1, heads, head_dim]`` in the query's dtype."""
    inputs, heads, _, dim = query.shape
    kv_heads = key.shape[1]
    owners = np.arange(inputs) if owners is None else owners
    if len(lengths) != inputs or len(owners) != inputs:
        raise ValueError(f"{inputs} inputs, {len(lengths)} lengths, {len(owners)} owners")
    rows, _, slots, _ = key.shape
    if inputs and (lengths.min() < 1 or lengths.max() > slots or owners.min() < 0 or owners.max() >= rows):
        raise ValueError(f"lengths {lengths.tolist()} of rows {owners.tolist()} do not fit {key.shape[:3]} keys")
    # query heads grouped by the key/value head they share (head h reads kv head h // group), scaled once
    grouped = (query[:, :, 0].float() * scale).reshape(inputs, kv_heads, heads // kv_heads, dim).contiguous()
    out = np.empty(grouped.shape, dtype=np.float32)
    torch_threads = torch.get_num_threads()  # PROMIS_REPRO_THREADS: one a worker when several share the cores
    threads = min(torch_threads, numba.config.NUMBA_NUM_THREADS)
    if numba.get_num_threads() != threads:
        numba.set_num_threads(threads)
    _attend(
        grouped.numpy(),
        _whole_buffer(key),
        _whole_buffer(value),
        owners.astype(np.int64, copy=False),
        lengths.astype(np.int64, copy=False),
        out,
    )
    if torch.get_num_threads() != torch_threads:
        # numba's OpenMP layer starts (first call of a process) with omp_set_num_threads(NUMBA_NUM_THREADS), the
        # cores' count, in the OpenMP runtime torch shares: torch would then run two threads a worker where it
        # was asked for one, and two workers' spinning threads fight over two cores (the tests took 2.2x longer)
        torch.set_num_threads(torch_threads)
    return torch.from_numpy(out).reshape(inputs, 1, heads, dim).to(query.dtype)
