"""A decode step of a Llama-architecture model (SmolLM2, CodeLlama, DeepSeek-Coder) without the modules' call plumbing.

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


class LlamaDecodeStep:
    """``step(tokens, positions, cache, lengths, owners)`` -> each input's next-token logits ``[inputs, vocab]``
    (float32): input ``i`` (one token) belongs to cache row ``owners[i]`` (default: row ``i``), sits at position
    ``positions[i]`` (where ``cache.plan_step`` writes it) and attends that row's first ``lengths[i]`` slots."""

    def __init__(self, model: Any) -> None:
        from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

        self.model = model
        self.apply_rotary = apply_rotary_pos_emb
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
        # the modules' own forward methods (no __call__ hooks), in LlamaDecoderLayer's order
        hidden = self.embed(tokens)  # [rows, 1, hidden]
        cos, sin = self.rotary(hidden, position_ids=positions)
        shape = (*hidden.shape[:-1], -1, self.head_dim)
        for index, layer in enumerate(self.layers):
            attention, mlp = layer.self_attn, layer.mlp
            residual = hidden
            hidden = layer.input_layernorm.forward(hidden)
            query = attention.q_proj(hidden).view(shape).transpose(1, 2)
            key = attention.k_proj(hidden).view(shape).transpose(1, 2)
            value = attention.v_proj(hidden).view(shape).transpose(1, 2)
            query, key = self.apply_rotary(query, key, cos, sin)
            key, value = cache.layers[index].update(key, value)
            attended = attend_rows(query, key, value, lengths, self.scaling, owners)
            hidden = residual + attention.o_proj(attended.reshape(*hidden.shape[:-1], -1).contiguous())
            residual = hidden
            hidden = residual + mlp.forward(layer.post_attention_layernorm.forward(hidden))
        hidden = self.norm.forward(hidden)
        return self.lm_head(hidden[:, -1:, :])[:, -1, :].float()
