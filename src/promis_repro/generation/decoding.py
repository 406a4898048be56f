"""Batched decoding of a causal LM in which a row computes exactly what it computes alone.

Each prompt is prefilled on its own (no padding), and its keys and values are
stored from slot 0 of its row in a shared buffer (``RowAlignedCache``); a row
shorter than the longest leaves masked slots at its end, never at its start.
So a row's attention sees its own keys at the same offsets whatever else is
in the batch; the masked tail adds exact zeros to the softmax. With matrix
products padded to row counts that round alike (``generation/linears.py``,
which the CPU's models use), a prompt's output does not depend on its batch mates,
and the decode step is free to be continuous: a row that finishes leaves the
batch at once and a waiting prompt takes its place.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers.cache_utils import Cache, DynamicLayer

# slots added to a row buffer when it is full (amortised growth instead of a copy every step)
GROWTH = 64


class RowAlignedLayer(DynamicLayer):
    """One layer's keys/values, ``[rows, heads, capacity, head_dim]``; row ``b`` fills slots ``[0, lengths[b])``."""

    def __init__(self, owner: RowAlignedCache, keys: Any, values: Any) -> None:
        super().__init__()
        self.owner = owner
        self.buffer_keys, self.buffer_values = keys, values
        self.device = keys.device
        self.is_initialized = True
        self._expose()

    def _expose(self) -> None:
        span = self.owner.span
        self.keys, self.values = self.buffer_keys[:, :, :span], self.buffer_values[:, :, :span]

    def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        import torch

        # one new token per row, written at that row's own next slot
        needed = self.owner.span + 1
        if needed > self.buffer_keys.shape[-2]:
            self.buffer_keys = _grow(self.buffer_keys, needed)
            self.buffer_values = _grow(self.buffer_values, needed)
        rows = torch.arange(key_states.shape[0], device=key_states.device)
        self.buffer_keys[rows, :, self.owner.lengths] = key_states[:, :, 0].to(self.buffer_keys.dtype)
        self.buffer_values[rows, :, self.owner.lengths] = value_states[:, :, 0].to(self.buffer_values.dtype)
        return self.buffer_keys[:, :, :needed], self.buffer_values[:, :, :needed]

    def get_seq_length(self) -> int:
        return self.owner.span

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.owner.span + query_length, 0

    def select_rows(self, rows: Any) -> None:
        self.buffer_keys, self.buffer_values = self.buffer_keys[rows], self.buffer_values[rows]
        self._expose()

    def add_row(self, keys: Any, values: Any) -> None:
        """Append a prefilled prompt's ``[1, heads, length, head_dim]`` states as a new row."""
        self.buffer_keys = _append_row(self.buffer_keys, keys)
        self.buffer_values = _append_row(self.buffer_values, values)
        self._expose()


def _grow(buffer: Any, needed: int) -> Any:
    import torch

    extra = max(GROWTH, needed - buffer.shape[-2])
    pad = buffer.new_zeros((*buffer.shape[:2], extra, buffer.shape[-1]))
    return torch.cat([buffer, pad], dim=-2)


def _empty_rows(states: Any, dtype: Any) -> Any:
    """A buffer of no rows shaped like ``states`` (``[1, heads, length, head_dim]``), in ``dtype``."""
    return states.new_zeros((0, states.shape[1], GROWTH, states.shape[-1]), dtype=dtype)


def _append_row(buffer: Any, row: Any) -> Any:
    import torch

    if row.shape[-2] > buffer.shape[-2]:
        buffer = _grow(buffer, row.shape[-2])
    padded = buffer.new_zeros((1, *buffer.shape[1:]))
    padded[:, :, : row.shape[-2]] = row.to(buffer.dtype)
    return torch.cat([buffer, padded], dim=0)


class RowAlignedCache(Cache):
    """The model's cache during decoding: per-row lengths, the layers' buffers aligned at slot 0."""

    def __init__(self, device: Any, dtype: Any = None) -> None:
        """``dtype``: the buffers' (None: the model's). float32 for ``row_aligned_attention``, which multiplies
        in float32: converting a row's whole cache every step would cost more."""
        import torch

        self.dtype = dtype
        self.lengths = torch.zeros(0, dtype=torch.long, device=device)
        self.span = 0  # the longest row's length: the slots the next step attends over (plus its own)
        super().__init__(layers=[])

    def add_row(self, prefilled: Cache, length: int) -> None:
        import torch

        if not self.layers:
            self.layers = [
                RowAlignedLayer(
                    self,
                    _empty_rows(layer.keys, self.dtype or layer.keys.dtype),
                    _empty_rows(layer.values, self.dtype or layer.values.dtype),
                )
                for layer in prefilled.layers
            ]
        self.lengths = torch.cat([self.lengths, self.lengths.new_tensor([length])])
        self.span = int(self.lengths.max())
        for layer, source in zip(self.layers, prefilled.layers):
            layer.add_row(source.keys, source.values)

    def select_rows(self, rows: Any) -> None:
        self.lengths = self.lengths[rows]
        self.span = int(self.lengths.max()) if len(self.lengths) else 0
        for layer in self.layers:
            layer.select_rows(rows)

    def advance(self) -> None:
        """After a step: every row holds one more token."""
        self.lengths = self.lengths + 1
        self.span = int(self.lengths.max())
        for layer in self.layers:
            layer._expose()

    def step_inputs(self) -> tuple[Any, Any]:
        """The attention mask (a row's own slots and the new token) and position ids of the next step."""
        import torch

        slots = torch.arange(self.span + 1, device=self.lengths.device)
        mask = (slots[None, :] <= self.lengths[:, None]).long()
        return mask, self.lengths[:, None]


@dataclass
class Row:
    """One prompt being decoded."""

    index: int
    prompt_tokens: int
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish: str = "length"
    seconds: float = 0.0  # its prefill, and its share of each step it was in (rows share a step's time)


def decode(
    model: Any,
    prompt_ids: list[list[int]],
    *,
    batch_size: int,
    max_new_tokens: int | Sequence[int],
    eos: set[int],
    choose: Callable[[Any, list[Row]], Any],
    piece: Callable[[int], str],
    stopped: Callable[[int, str], bool],
    device: Any,
    row_aligned: bool = False,
) -> Iterator[Row]:
    """Decode every prompt, ``batch_size`` rows at a time; yields each row as it finishes.

    ``max_new_tokens``: one limit for every prompt, or one per prompt. ``choose(logits, rows)`` turns a
    step's ``[rows, vocab]`` float logits into the next tokens (greedy or seeded sampling, each row by its
    own settings); ``piece(token)`` is a token's text and ``stopped(index, text)`` says whether prompt
    ``index``'s text has reached its end.
    ``row_aligned``: the model attends with ``row_aligned_attention`` (switched
    to ``ROW_ALIGNED``; the CPU); otherwise its own attention reads the cache
    with the padding mask (a GPU: no batch independence promised there).
    """
    import torch

    from promis_repro.generation.linears import decode_step

    limits = [max_new_tokens] * len(prompt_ids) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    yield from (Row(index=i, prompt_tokens=len(prompt_ids[i])) for i, limit in enumerate(limits) if limit <= 0)
    waiting = [i for i, limit in enumerate(limits) if limit > 0][::-1]
    if not waiting:
        return
    rows: list[Row] = []
    cache = RowAlignedCache(device, torch.float32 if row_aligned else None)
    flags = {"row_aligned": True} if row_aligned else {}
    next_tokens: Any = None
    prefill = functools.partial(_prefill, model, device=device)

    def admit() -> list[Any]:
        logits = []
        while waiting and len(rows) < batch_size:
            index = waiting.pop()
            started = time.monotonic()
            row_logits, prefilled = prefill(prompt_ids[index])
            cache.add_row(prefilled, len(prompt_ids[index]))
            rows.append(Row(index=index, prompt_tokens=len(prompt_ids[index]), seconds=time.monotonic() - started))
            logits.append(row_logits)
        return logits

    with torch.inference_mode():
        pending_logits = admit()
        logits = torch.cat(pending_logits) if pending_logits else None
        while rows:
            # a row's next token: from its prefill (new rows) or from the last step (the others)
            started = time.monotonic()
            next_tokens = choose(logits, rows)
            keep = []
            for position, token in enumerate(next_tokens.tolist()):
                row = rows[position]
                if token in eos:
                    row.finish = "eos"
                    continue
                row.tokens.append(token)
                row.text += piece(token)
                if stopped(row.index, row.text):
                    row.finish = "stop"
                    continue
                if len(row.tokens) >= limits[row.index]:
                    continue
                keep.append(position)
            share = (time.monotonic() - started) / len(rows)
            for row in rows:
                row.seconds += share
            for position in range(len(rows)):
                if position not in keep:
                    yield rows[position]
            if len(keep) < len(rows):
                index = torch.tensor(keep, dtype=torch.long, device=device)
                cache.select_rows(index)
                next_tokens = next_tokens[index]
                rows = [rows[p] for p in keep]
            step_rows = len(rows)
            step_logits = None
            if step_rows:
                started = time.monotonic()
                mask, positions = cache.step_inputs()
                with decode_step():
                    step_logits = model(
                        input_ids=next_tokens[:, None], attention_mask=mask, position_ids=positions, cache=cache,
                        use_cache=True, logits_to_keep=1, **flags,
                    ).logits[:, -1, :].float()  # fmt: skip
                cache.advance()
                share = (time.monotonic() - started) / step_rows
                for row in rows:
                    row.seconds += share
            new_logits = admit()
            parts = ([step_logits] if step_logits is not None else []) + new_logits
            logits = torch.cat(parts) if parts else None


ROW_ALIGNED = "promis_row_aligned"


def row_aligned_attention(
    module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float | None = None, **kwargs: Any
) -> tuple[Any, None]:
    """Attention that gives each decoding row what it would get alone.

    Batched SDPA over rows of different lengths needs a mask, and a masked
    call takes other kernels than an unmasked one (transformers even packs
    grouped heads differently), whose roundings depend on the longest row. So
    a decode step attends row by row over exactly that row's slots, with plain
    matrix products in float32; a prompt's prefill (always alone) is plain
    SDPA. Row by row, these cost a third of SDPA's CPU kernel (measured for
    SmolLM2-135M, bench/RESULTS.md: 44 vs 129 us a row and layer; bf16
    products of a new length each step are slower still, 238 us).
    """
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    # only decode() steps over a RowAlignedCache (which pass row_aligned=True) go row by row; anything else
    # (a prompt's prefill, a plain forward or generate on this model) is ordinary SDPA
    if not kwargs.pop("row_aligned", False):
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    if attention_mask is None:
        lengths = [key.shape[2]] * query.shape[0]
    else:
        lengths = attention_mask[:, 0, -1, :].sum(-1).tolist()
    heads, kv_heads, dim = query.shape[1], key.shape[1], query.shape[-1]
    scale = scaling if scaling is not None else dim**-0.5
    # query heads grouped by the key/value head they share (head h reads kv head h // group), scaled once
    grouped = (query[:, :, 0].float() * scale).reshape(query.shape[0], kv_heads, heads // kv_heads, dim)
    keys, values = key.float().transpose(2, 3), value.float()  # no-ops: RowAlignedCache keeps float32 here
    outputs = []
    for row, length in enumerate(lengths):
        weights = torch.softmax(torch.bmm(grouped[row], keys[row, :, :, :length]), dim=-1)
        outputs.append(torch.bmm(weights, values[row, :, :length]))
    return torch.stack(outputs).reshape(query.shape[0], 1, heads, dim).to(query.dtype), None


@functools.cache
def register_row_aligned_attention() -> str:
    """Make ``ROW_ALIGNED`` an attention implementation transformers models can be switched to."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ROW_ALIGNED, row_aligned_attention)
    # a boolean mask (True = attend), from which each row's length is read
    AttentionMaskInterface.register(ROW_ALIGNED, sdpa_mask)
    return ROW_ALIGNED


def _prefill(model: Any, ids: list[int], *, device: Any) -> tuple[Any, Cache]:
    """One prompt alone through the model: its last position's logits and its keys/values."""
    import torch
    from transformers import DynamicCache

    prefilled = DynamicCache()
    input_ids = torch.tensor([ids], dtype=torch.long, device=device)
    output = model(input_ids=input_ids, cache=prefilled, use_cache=True, logits_to_keep=1)
    return output.logits[:, -1, :].float(), prefilled
