"""Batched decoding of a causal LM in which a row computes exactly what it computes alone.

Each prompt is prefilled on its own (no padding), and its keys and values are
stored from slot 0 of its row in a shared buffer (``RowAlignedCache``); a row
shorter than the longest leaves masked slots at its end, never at its start.
So a row's attention sees its own keys at the same offsets whatever else is
in the batch, and on a CPU reads exactly its own slots (``row_attention.py``). With matrix
products padded to row counts that round alike (``generation/linears.py``,
which the CPU's models use), a prompt's output does not depend on its batch mates,
and the decode step is free to be continuous: a row that finishes leaves the
batch at once and a waiting prompt takes its place. The same property lets a
greedy row feed draft tokens (``drafts.py``) as extra inputs of a step: each
is computed as it would be on its own, so the tokens kept are plain decoding's.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from transformers.cache_utils import Cache, DynamicLayer

from promis_repro.generation.drafts import DRAFT_INPUTS, NgramDrafter

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
        # each input of the step (a row's token, or a draft after it) written at its own slot of its row
        if self.owner.writes is None:
            raise RuntimeError("RowAlignedCache: plan_step() must say where a step's inputs go before each step")
        rows, slots, needed = self.owner.writes
        if needed > self.buffer_keys.shape[-2]:
            self.buffer_keys = _grow(self.buffer_keys, needed)
            self.buffer_values = _grow(self.buffer_values, needed)
        self.buffer_keys[rows, :, slots] = key_states[:, :, 0].to(self.buffer_keys.dtype)
        self.buffer_values[rows, :, slots] = value_states[:, :, 0].to(self.buffer_values.dtype)
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
        """``dtype``: the buffers' (None: the model's). float32 for ``row_aligned_attention``, which reads
        float32 buffers: converting a row's whole cache every step would cost more."""
        import torch

        self.dtype = dtype
        self.lengths = torch.zeros(0, dtype=torch.long, device=device)
        self.span = 0  # the longest row's length: the slots the next step attends over (plus its own)
        # plan_step's, for one step: the inputs' rows and slots, and the slots needed (rows move after a step)
        self.writes: tuple[Any, Any, int] | None = None
        super().__init__(layers=[])

    def add_row(self, prefilled: Cache, length: int) -> None:
        import torch

        self.writes = None
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
        self.writes = None
        self.lengths = self.lengths[rows]
        self.span = int(self.lengths.max()) if len(self.lengths) else 0
        for layer in self.layers:
            layer.select_rows(rows)

    def plan_step(self, rows: Any = None, offsets: Any = None) -> Any:
        """Where the next step's inputs go: input ``i`` to row ``rows[i]``, ``offsets[i]`` slots past that row's
        length (default: one input a row, at its length). Returns the inputs' positions."""
        import torch

        if rows is None:
            rows = torch.arange(len(self.lengths), device=self.lengths.device)
        if offsets is None:
            offsets = torch.zeros_like(rows)
        positions = self.lengths[rows] + offsets
        self.writes = (rows, positions, int(positions.max()) + 1 if len(positions) else self.span + 1)
        return positions

    def advance(self, counts: Any = 1) -> None:
        """After a step: row ``b`` holds ``counts[b]`` more tokens (a tensor, or one count for every row)."""
        self.lengths = self.lengths + counts
        self.span = int(self.lengths.max()) if len(self.lengths) else 0
        self.writes = None
        for layer in self.layers:
            layer._expose()

    def step_mask(self) -> Any:
        """The attention mask of a step of one input a row: a row's own slots and the new token."""
        import torch

        slots = torch.arange(self.span + 1, device=self.lengths.device)
        return (slots[None, :] <= self.lengths[:, None]).long()


@dataclass
class Row:
    """One prompt being decoded."""

    index: int
    prompt_tokens: int
    tokens: list[int] = field(default_factory=list)
    text: str = ""
    finish: str = "length"
    seconds: float = 0.0  # its prefill, and its share of each step it was in (rows share a step's time)
    drafter: NgramDrafter | None = None
    drafts: list[int] = field(default_factory=list)  # the draft tokens after its last token in the last step
    stepped: bool = False  # whether it was in the last step (else it was just prefilled)


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
    draftable: Callable[[int], bool] | None = None,
) -> Iterator[Row]:
    """Decode every prompt, ``batch_size`` rows at a time; yields each row as it finishes.

    ``max_new_tokens``: one limit for every prompt, or one per prompt. ``choose(logits, rows)`` turns a
    step's ``[inputs, vocab]`` float logits into the next tokens (greedy or seeded sampling, each row by its
    own settings), ``rows`` naming each input's row: a drafted row appears once per input, so for a
    ``draftable`` row ``choose`` must be a function of each logits row alone (no generator draws);
    ``piece(token)`` is a token's text and ``stopped(index, text)`` says whether prompt
    ``index``'s text has reached its end.
    ``row_aligned``: the model attends with ``row_aligned_attention`` (switched
    to ``ROW_ALIGNED``; the CPU); otherwise its own attention reads the cache
    with the padding mask (a GPU: no batch independence promised there).
    ``draftable(index)``: whether prompt ``index`` decodes greedily, so that draft tokens looked up in its
    context (``drafts.py``) may fill the batch's free rows; only with ``LlamaDecodeStep`` (row-aligned, so the
    text is the same with or without drafts).
    """
    import torch

    from promis_repro.generation.linears import decode_step
    from promis_repro.generation.llama_step import LlamaDecodeStep

    limits = [max_new_tokens] * len(prompt_ids) if isinstance(max_new_tokens, int) else list(max_new_tokens)
    yield from (Row(index=i, prompt_tokens=len(prompt_ids[i])) for i, limit in enumerate(limits) if limit <= 0)
    waiting = [i for i, limit in enumerate(limits) if limit > 0][::-1]
    if not waiting:
        return
    rows: list[Row] = []
    cache = RowAlignedCache(device, torch.float32 if row_aligned else None)
    prefill = functools.partial(_prefill, model, device=device)
    # Llama-architecture models step through ``LlamaDecodeStep``: the model's own operations without its modules'
    # Python overhead (same logits, bit for bit); others through their forward
    fast_step = LlamaDecodeStep(model) if row_aligned and LlamaDecodeStep.supports(model) else None

    def admit() -> list[Any]:
        logits = []
        while waiting and len(rows) < batch_size:
            index = waiting.pop()
            started = time.monotonic()
            row_logits, prefilled = prefill(prompt_ids[index])
            cache.add_row(prefilled, len(prompt_ids[index]))
            rows.append(
                Row(
                    index=index,
                    prompt_tokens=len(prompt_ids[index]),
                    seconds=time.monotonic() - started,
                    drafter=NgramDrafter(prompt_ids[index]),
                )
            )
            logits.append(row_logits)
        return logits

    with torch.inference_mode():
        logits = _stack(admit())
        while rows:
            # each row's next tokens: the model's choice after its last input, then after each draft it agreed with
            started = time.monotonic()
            inputs = [row for row in rows for _ in range(1 + len(row.drafts))]
            chosen = choose(logits, inputs).tolist()
            keep, counts, at = [], [], 0
            for position, row in enumerate(rows):
                proposals, drafts = chosen[at : at + 1 + len(row.drafts)], row.drafts
                at += len(proposals)
                agreed = 0
                while agreed < len(drafts) and proposals[agreed] == drafts[agreed]:
                    agreed += 1
                # a stepped row's cache now holds its input and the drafts agreed with; a prefilled one is complete
                counts.append(1 + agreed if row.stepped else 0)
                if _take(row, proposals[: agreed + 1], eos, piece, stopped, limits[row.index]):
                    keep.append(position)
            cache.advance(torch.tensor(counts, dtype=torch.long, device=device))
            share = (time.monotonic() - started) / len(rows)
            for row in rows:
                row.seconds += share
            for position in range(len(rows)):
                if position not in keep:
                    yield rows[position]
            if len(keep) < len(rows):
                cache.select_rows(torch.tensor(keep, dtype=torch.long, device=device))
                rows = [rows[p] for p in keep]
            step_logits = None
            if rows:
                started = time.monotonic()
                # drafts fill a step up to DRAFT_INPUTS inputs (never past ``batch_size``, the size the padded
                # products were probed for)
                drafting = fast_step is not None and draftable is not None
                free = min(batch_size, DRAFT_INPUTS) - len(rows) if drafting else 0
                for row in rows:
                    row.stepped = True
                    row.drafts = []
                    if free > 0 and draftable(row.index):
                        row.drafter.extend(row.tokens[len(row.drafter.tokens) - row.prompt_tokens :])
                        row.drafts = row.drafter.draft(min(free, limits[row.index] - len(row.tokens) - 1))
                        free -= len(row.drafts)
                tokens = torch.tensor(
                    [token for row in rows for token in (row.tokens[-1], *row.drafts)], dtype=torch.long, device=device
                )
                with decode_step():
                    if fast_step is not None:
                        owners = torch.tensor(
                            [p for p, row in enumerate(rows) for _ in range(1 + len(row.drafts))], device=device
                        )
                        offsets = torch.tensor([i for row in rows for i in range(1 + len(row.drafts))], device=device)
                        positions = cache.plan_step(owners, offsets)
                        # each input attends its row's slots up to its own
                        step_logits = fast_step(
                            tokens[:, None], positions[:, None], cache, (positions + 1).numpy(), owners.numpy()
                        )
                    else:
                        positions, mask = cache.plan_step()[:, None], cache.step_mask()
                        flags = {"row_lengths": (cache.lengths + 1).numpy()} if row_aligned else {}
                        step_logits = model(
                            input_ids=tokens[:, None], attention_mask=mask, position_ids=positions, cache=cache,
                            use_cache=True, logits_to_keep=1, **flags,
                        ).logits[:, -1, :].float()  # fmt: skip
                share = (time.monotonic() - started) / len(rows)
                for row in rows:
                    row.seconds += share
            logits = _stack(([step_logits] if step_logits is not None else []) + admit())


def _stack(parts: list[Any]) -> Any:
    import torch

    return torch.cat(parts) if parts else None


def _take(
    row: Row, tokens: list[int], eos: set[int], piece: Callable[[int], str], stopped: Callable[[int, str], bool],
    limit: int,
) -> bool:  # fmt: skip
    """Append ``tokens`` to ``row`` up to its end (an end-of-sequence token, a stop, its limit); whether it goes on."""
    for token in tokens:
        if token in eos:
            row.finish = "eos"
            return False
        row.tokens.append(token)
        row.text += piece(token)
        if stopped(row.index, row.text):
            row.finish = "stop"
            return False
        if len(row.tokens) >= limit:
            return False
    return True


ROW_ALIGNED = "promis_row_aligned"


def row_aligned_attention(
    module: Any, query: Any, key: Any, value: Any, attention_mask: Any, scaling: float | None = None, **kwargs: Any
) -> tuple[Any, None]:
    """Attention that gives each decoding row what it would get alone.

    Batched SDPA over rows of different lengths needs a mask, and a masked
    call takes other kernels than an unmasked one (transformers even packs
    grouped heads differently), whose roundings depend on the longest row. So
    a decode step attends row by row over exactly that row's slots
    (``row_attention.attend_rows``: compiled loops bounded by the row's own
    length); a prompt's prefill (always alone) is plain SDPA.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    # only decode() steps over a RowAlignedCache (which pass each row's slot count) go row by row; anything else
    # (a prompt's prefill, a plain forward or generate on this model) is ordinary SDPA
    row_lengths = kwargs.pop("row_lengths", None)
    if row_lengths is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    from promis_repro.generation.row_attention import attend_rows

    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return attend_rows(query, key, value, row_lengths, scale), None


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
