"""The Transformer translator (Vaswani et al. 2017): an encoder of self-attention layers over
the source, a decoder of causal self-attention and cross-attention layers over the target.

    e(x)   = sqrt(n_embd) E[x] + PE(position)         one embedding E for source and target
    m      = Encoder(e(source))                        self-attention, source padding masked
    h      = Decoder(e(target_in), m)                  causal self-attention, cross-attention to m
    P(y_t | y_<t, x) = softmax(h_t E^T)                the output layer tied to E

The vocabulary is joint (the data contract), so source and target share E and the output
layer reuses it too (section 3.4, `tie_weights`). Layers are post-norm as in the paper or
pre-norm (`norm_first`, with a final LayerNorm after each stack). Training uses label smoothing
(0.1) and Adam (beta2 0.98, eps 1e-9) with the warmup then 1/sqrt(step) schedule of section 5.3
(`schedule: noam`) or a constant learning rate (`schedule: constant`, pytorch-seq2seq's
notebook 6: Adam 5e-4).

Decoding runs one target token at a time: each decoder layer keeps its self-attention keys and
values in a KV cache, and the memory's cross-attention keys and values are computed once.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

from core.checks import (
    SettingError,
    require_betas,
    require_divisor,
    require_positive,
    require_positive_number,
    require_probability,
)
from lit_models.modules import TransformerBlock, TransformerDecoderBlock, make_positional
from lit_models.modules.positional import Positional
from lit_models.modules.transformer import Activation
from lit_models.optim import NoamSchedule
from lit_models.translation import Translator, index_rows

Schedule = Literal["noam", "constant"]


class TransformerTranslator(Translator):
    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_layer: int = 3,
        n_head: int = 8,
        n_embd: int = 256,
        n_ff: int = 512,
        dropout: float = 0.1,
        norm_first: bool = False,
        activation: Activation = "relu",
        positional: Positional = "sinusoidal",
        tie_weights: bool = True,
        schedule: Schedule = "noam",
        warmup_steps: int = 4000,
        lr_factor: float = 1.0,
        learning_rate: float = 5e-4,
        betas: tuple[float, float] = (0.9, 0.98),
        eps: float = 1e-9,
        label_smoothing: float = 0.1,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        eval_num_beams: int = 1,
        test_num_beams: int = 5,
        length_penalty: float = 1.0,
        max_new_tokens: int | None = None,
    ):
        """
        Args:
            vocab_size, block_size: set by the datamodule (linked by the CLI); block_size is
                the longest source and target the model reads (positions are precomputed up
                to it) and the longest translation it writes.
            n_layer: layers of the encoder and of the decoder.
            n_head: attention heads.
            n_embd: the model width (the paper's d_model).
            n_ff: the inner width of the feed-forward networks (the paper's d_ff).
            norm_first: pre-norm (True) or the paper's post-norm (False).
            activation: relu (the paper) or gelu, in the feed-forward layers.
            positional: sinusoidal (the paper) or learned.
            tie_weights: the output layer reuses the shared embedding.
            schedule: noam, lr = lr_factor * n_embd^-0.5 * min(step^-0.5, step *
                warmup_steps^-1.5) (learning_rate unused); or constant, lr = learning_rate.
        """
        super().__init__()
        require_positive("model", n_layer=n_layer, n_embd=n_embd, n_ff=n_ff)
        # Each head attends over n_embd / n_head dimensions of its own.
        require_divisor("model", "n_head", n_head, "n_embd", n_embd)
        require_probability("model", dropout=dropout)
        if schedule == "noam" and not warmup_steps >= 1:
            raise SettingError(
                f"model.init_args.warmup_steps={warmup_steps} must be >= 1 for schedule noam."
            )
        require_positive_number("model", lr_factor=lr_factor, eps=eps)
        require_betas("model", betas)
        self.save_hyperparameters()
        self.check_translation_hparams()
        self.block_size = block_size
        self.embedding = nn.Embedding(vocab_size, n_embd)  # source and target: one vocabulary
        self.position = make_positional(positional, block_size, n_embd)
        self.drop = nn.Dropout(dropout)
        layer_args = dict(dropout=dropout, norm_first=norm_first, activation=activation)
        self.encoder = nn.ModuleList(
            TransformerBlock(n_embd, n_head, n_ff, **layer_args) for _ in range(n_layer)
        )
        self.decoder = nn.ModuleList(
            TransformerDecoderBlock(n_embd, n_head, n_ff, **layer_args) for _ in range(n_layer)
        )
        # Pre-norm leaves each stack's output un-normalised: one LayerNorm closes it.
        self.encoder_norm = nn.LayerNorm(n_embd) if norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(n_embd) if norm_first else nn.Identity()
        self.out = nn.Linear(n_embd, vocab_size, bias=False)
        for name, p in self.named_parameters():
            if p.dim() > 1 and not name.startswith("embedding"):
                nn.init.xavier_uniform_(p)
        # Scaled by sqrt(n_embd) on the way in, the embedding starts at unit scale there.
        nn.init.normal_(self.embedding.weight, mean=0.0, std=n_embd**-0.5)
        if tie_weights:
            self.out.weight = self.embedding.weight

    def embed(self, ids: torch.Tensor, offset: int = 0) -> torch.Tensor:
        """sqrt(n_embd) E[ids] + PE for ids [B, T] at positions offset .. offset+T-1."""
        T = ids.size(1)
        if offset + T > self.block_size:
            raise ValueError(
                f"{offset + T} tokens are more than block_size={self.block_size}; the "
                f"Transformer reads and writes at most block_size tokens"
            )
        scale = math.sqrt(self.hparams.n_embd)
        return self.drop(self.embedding(ids) * scale + self.position(T, offset=offset))

    def encode_source(self, source: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The memory [B, S, d] and its mask [B, 1, 1, S] (True at real source tokens)."""
        mask = self.source_mask(source)[:, None, None, :]
        h = self.embed(source)
        for layer in self.encoder:
            h = layer(h, attn_mask=mask)
        return self.encoder_norm(h), mask

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        memory, mask = self.encode_source(source)
        h = self.embed(target_in)
        for layer in self.decoder:
            h = layer(h, memory, memory_mask=mask)
        return self.out(self.decoder_norm(h))

    # --- decoding: the KV cache of each decoder layer, the memory's keys and values once ---

    def encode(self, source: torch.Tensor) -> dict:
        memory, mask = self.encode_source(source)
        return {
            "mask": mask,
            "memory_kv": [layer.cross_attn.project_memory(memory) for layer in self.decoder],
        }

    def init_decoder_state(self, memory: dict) -> dict:
        B, like = memory["mask"].size(0), self.embedding.weight
        caches = [layer.self_attn.new_cache(B, self.block_size, like) for layer in self.decoder]
        return {"caches": caches, "length": 0}

    def decode_step(self, memory: dict, state: dict, ids: torch.Tensor):
        h = self.embed(ids[:, None], offset=state["length"])
        for layer, cache, kv in zip(
            self.decoder, state["caches"], memory["memory_kv"], strict=True
        ):
            h = layer(h, memory_mask=memory["mask"], cache=cache, memory_kv=kv)
        logits = self.out(self.decoder_norm(h[:, 0]))
        return logits, {"caches": state["caches"], "length": state["length"] + 1}

    def reorder_decoding(self, memory: dict, state: dict, rows: torch.Tensor):
        for cache in state["caches"]:
            cache.reorder(rows)
        return index_rows(memory, rows), state

    def _max_new_tokens(self, asked: int | None) -> int:
        # Inputs are <bos> and all but the last new token: at most block_size positions.
        return min(super()._max_new_tokens(asked), self.block_size)

    def attention_weights(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        """The last decoder layer's cross-attention weights [B, n_head, T, S], teacher-forced."""
        memory, mask = self.encode_source(source)
        h = self.embed(target_in)
        for layer in self.decoder[:-1]:
            h = layer(h, memory, memory_mask=mask)
        _, weights = self.decoder[-1](h, memory, memory_mask=mask, need_weights=True)
        return weights

    def cross_attention(self, source: list[int], target: list[int]) -> torch.Tensor:
        """Mean over the heads of the last decoder layer: [len(target), len(source)]."""
        with self.decoding_mode():
            source_ids, target_ids = self.teacher_forced_pair(source, target)
            return self.attention_weights(source_ids, target_ids[:, :-1])[0].mean(dim=0)

    def configure_optimizers(self):
        hp = self.hparams
        if hp.schedule == "constant":
            return torch.optim.Adam(
                self.parameters(), lr=hp.learning_rate, betas=tuple(hp.betas), eps=hp.eps
            )
        optimizer = torch.optim.Adam(self.parameters(), lr=1.0, betas=tuple(hp.betas), eps=hp.eps)
        schedule = NoamSchedule(optimizer, hp.n_embd, hp.warmup_steps, hp.lr_factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
