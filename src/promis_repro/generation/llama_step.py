"""A decode step of a Llama-architecture model (SmolLM2, CodeLlama, DeepSeek-Coder) without transformers' modules.

A step of one new token a row through ``LlamaForCausalLM.__call__`` spends as
long in Python (module calls, keyword plumbing, a mask no row-aligned attention
reads) as in the matrix products when few rows remain: ~20 ms of a 57 ms step
at 3 rows for SmolLM2-135M (``bench/RESULTS.md``). ``LlamaDecodeStep`` runs the
same tensor operations in the same order and dtypes on the model's own weights
and modules, so its logits are bit for bit the ones the model gives
(``tests/test_decoding.py`` checks this), with row-aligned attention
(``row_attention.attend_rows``) and the cache's own ``update``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from promis_repro.generation.row_attention import attend_rows


def _rms_norm(norm: Any, hidden: torch.Tensor) -> torch.Tensor:
    # LlamaRMSNorm.forward, operation for operation
    input_dtype = hidden.dtype
    hidden = hidden.to(torch.float32)
    variance = hidden.pow(2).mean(-1, keepdim=True)
    hidden = hidden * torch.rsqrt(variance + norm.variance_epsilon)
    return norm.weight * hidden.to(input_dtype)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class LlamaDecodeStep:
    """``step(tokens, positions, cache, lengths, owners)`` -> each input's next-token logits ``[inputs, vocab]``
    (float32): input ``i`` (one token) belongs to cache row ``owners[i]`` (default: row ``i``), sits at position
    ``positions[i]`` (where ``cache.plan_step`` writes it) and attends that row's first ``lengths[i]`` slots."""

    def __init__(self, model: Any) -> None:
        self.model = model
        base = model.model
        self.embed, self.rotary, self.norm, self.lm_head = base.embed_tokens, base.rotary_emb, base.norm, model.lm_head
        self.layers = list(base.layers[: model.config.num_hidden_layers])
        self.head_dim = self.layers[0].self_attn.head_dim
        self.scaling = self.layers[0].self_attn.scaling

    @staticmethod
    def supports(model: Any) -> bool:
        """Exactly transformers' Llama classes (a subclass may change what a layer does)."""
        from transformers.models.llama import modeling_llama as llama

        return (
            type(model) is llama.LlamaForCausalLM
            and type(model.model) is llama.LlamaModel
            and all(type(layer) is llama.LlamaDecoderLayer for layer in model.model.layers)
            and all(type(layer.self_attn) is llama.LlamaAttention for layer in model.model.layers)
            and all(type(layer.mlp) is llama.LlamaMLP for layer in model.model.layers)
            and all(
                type(norm) is llama.LlamaRMSNorm
                for layer in model.model.layers
                for norm in (layer.input_layernorm, layer.post_attention_layernorm)
            )
            and type(model.model.norm) is llama.LlamaRMSNorm
        )

    def __call__(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        cache: Any,
        lengths: np.ndarray,
        owners: np.ndarray | None = None,
    ) -> torch.Tensor:
        hidden = self.embed(tokens)  # [rows, 1, hidden]
        cos, sin = self.rotary(hidden, position_ids=positions)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        shape = (*hidden.shape[:-1], -1, self.head_dim)
        for index, layer in enumerate(self.layers):
            attention, mlp = layer.self_attn, layer.mlp
            residual = hidden
            hidden = _rms_norm(layer.input_layernorm, hidden)
            query = attention.q_proj(hidden).view(shape).transpose(1, 2)
            key = attention.k_proj(hidden).view(shape).transpose(1, 2)
            value = attention.v_proj(hidden).view(shape).transpose(1, 2)
            query = (query * cos) + (_rotate_half(query) * sin)
            key = (key * cos) + (_rotate_half(key) * sin)
            key, value = cache.layers[index].update(key, value)
            attended = attend_rows(query, key, value, lengths, self.scaling, owners)
            hidden = residual + attention.o_proj(attended.reshape(*hidden.shape[:-1], -1).contiguous())
            residual = hidden
            hidden = _rms_norm(layer.post_attention_layernorm, hidden)
            hidden = residual + mlp.down_proj(mlp.act_fn(mlp.gate_proj(hidden)) * mlp.up_proj(hidden))
        hidden = _rms_norm(self.norm, hidden)
        return self.lm_head(hidden[:, -1:, :])[:, -1, :].float()
