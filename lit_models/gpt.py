"""GPT: a decoder-only Transformer language model (Radford et al. 2018, 2019).

    h_0 = W_e[x] + W_p[positions]                tokens and positions embedded
    h_l = Block(h_{l-1}),  l = 1..L              pre-LayerNorm blocks, causal self-attention
    P(x_{t+1} | x_{<=t}) = softmax(LN(h_L) W_e^T)  the output layer tied to the input embedding

Sizes follow nanoGPT's names (n_layer, n_head, n_embd); so does the optimisation: AdamW with
weight decay on matrices only, linear warmup then cosine decay.

The modern decoder of LLaMA (Touvron et al. 2023) and Qwen2 is the same model with other
choices: `norm: rmsnorm`, `positional: rope` (the positions rotate each head's queries and
keys instead of being added to h_0), `mlp: swiglu`, fewer key/value heads (`n_kv_head`,
grouped-query attention), biases on the Q/K/V projections only (`attention_bias`, Qwen2).
`init_from` loads such a model, or a GPT-2, from Hugging Face (lit_models/hf_convert.py).
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace
from typing import Literal

import torch
from torch import nn

from core.checks import require_divisor, require_positive, require_probability
from core.errors import UserError
from core.hub import tokenizer_name_in
from lit_models import hf_convert
from lit_models.language_model import LanguageModel, check_data_tokenizer
from lit_models.modules import RotaryEmbedding, TransformerBlock, make_norm, make_positional
from lit_models.modules.norm import Norm
from lit_models.modules.positional import PositionalOrRotary, check_rope_scaling
from lit_models.optim import adamw_warmup_cosine, check_warmup_cosine

MLP = Literal["gelu", "gelu_tanh", "swiglu"]  # gelu_tanh: GPT-2's approximation


def swiglu_hidden_size(n_embd: int, multiple_of: int = 256) -> int:
    """LLaMA's SwiGLU width: 2/3 of 4 n_embd (three matrices cost what two of 4 n_embd do),
    rounded up to a multiple of 256 (11008 for n_embd 4096)."""
    return multiple_of * math.ceil(int(2 * 4 * n_embd / 3) / multiple_of)


class GPT(LanguageModel):
    def __init__(
        self,
        vocab_size: int | None = None,
        block_size: int | None = None,
        n_layer: int = 6,
        n_head: int = 6,
        n_embd: int = 384,
        dropout: float = 0.2,
        bias: bool = False,
        positional: PositionalOrRotary = "learned",
        tie_weights: bool = True,
        norm: Norm = "layernorm",
        norm_eps: float = 1e-5,
        mlp: MLP = "gelu",
        n_ff: int | None = None,
        n_kv_head: int | None = None,
        attention_bias: bool = False,
        rope_theta: float = 10000.0,
        rope_scaling: dict | None = None,
        init_from: str | None = None,
        learning_rate: float = 1e-3,
        min_learning_rate: float = 1e-4,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.99),
        warmup_steps: int = 100,
        lr_decay_steps: int | None = None,
        kv_cache: bool = True,
    ):
        """
        Args:
            vocab_size: set by the datamodule (linked by the CLI).
            block_size: context length; set by the datamodule's `block_size`.
            bias: biases in every linear layer and LayerNorm.
            positional: `learned` (GPT), `sinusoidal` (fixed, Vaswani et al.) or `rope`
                (rotary, LLaMA; angles from `rope_theta`, frequencies scaled by
                `rope_scaling`, Hugging Face's dict: `{rope_type: linear, factor: 4}` or
                Llama 3.1's `llama3` with factor, low_freq_factor, high_freq_factor and
                original_max_position_embeddings).
            tie_weights: share the token embedding with the output layer.
            norm: `layernorm` (GPT) or `rmsnorm` (LLaMA); `norm_eps` is its epsilon.
            mlp: the feed-forward network: `gelu` (GPT), `gelu_tanh` (GPT-2's GELU) or
                `swiglu` (LLaMA), `n_ff` wide (default 4 n_embd; for swiglu LLaMA's
                2/3 of that, rounded up to a multiple of 256).
            n_kv_head: key/value heads (default n_head; fewer, dividing n_head, is
                grouped-query attention).
            attention_bias: biases on the Q, K, V projections even without `bias` (Qwen2).
            init_from: a Hugging Face model to start from, GPT-2 or LLaMA/Qwen2 family: a
                folder (config.json and model.safetensors) or a hub id already in the local
                cache. Its config sets the architecture (the sizes and choices above) and
                the data's vocabulary must be the model's; block_size is the model's context
                unless the data's is shorter.
            lr_decay_steps: step at which cosine decay reaches `min_learning_rate`;
                default: the trainer's total steps (`max_steps`).
            kv_cache: when generating, keep each layer's keys and values so that a new token
                costs one position, not the whole context (off: recompute, for comparison).
        """
        super().__init__()
        require_probability("model", dropout=dropout)
        check_warmup_cosine(
            learning_rate, min_learning_rate, weight_decay, betas, warmup_steps, lr_decay_steps
        )
        self.save_hyperparameters()
        # Read from the arguments, not self.hparams: built inside another model's __init__
        # (LoRAGPT's base), save_hyperparameters records that model's arguments.
        hp = SimpleNamespace(
            vocab_size=vocab_size,
            block_size=block_size,
            n_layer=n_layer,
            n_head=n_head,
            n_embd=n_embd,
            bias=bias,
            positional=positional,
            tie_weights=tie_weights,
            norm=norm,
            norm_eps=norm_eps,
            mlp=mlp,
            n_ff=n_ff,
            n_kv_head=n_kv_head,
            attention_bias=attention_bias,
            rope_theta=rope_theta,
            rope_scaling=rope_scaling,
        )
        pretrained = None
        if init_from is not None:
            pretrained = hf_convert.read_pretrained(init_from)
            vars(hp).update(hf_convert.fit_to_data(pretrained, vocab_size, block_size))
        check_settings(hp)
        if hp.n_ff is None:
            hp.n_ff = swiglu_hidden_size(hp.n_embd) if hp.mlp == "swiglu" else 4 * hp.n_embd
        # The checkpoints hold the architecture as built, not the folder it came from: they
        # load without it (the folder is kept as `hf_source`, for export_hf's tokenizer).
        self.hparams.update(vars(hp), init_from=None if pretrained else init_from)
        self.block_size = hp.block_size
        self.hf_source = pretrained.folder if pretrained else None
        # The tokenizer beside the weights, which the data must use (checked at setup).
        self.init_from_tokenizer = (
            tokenizer_name_in(Path(pretrained.folder)) if pretrained else None
        )
        self.token_embedding = nn.Embedding(hp.vocab_size, hp.n_embd)
        if hp.positional == "rope":
            self.position, self.rotary = (
                None,
                RotaryEmbedding(hp.n_embd // hp.n_head, hp.rope_theta, hp.rope_scaling),
            )
        else:
            self.position, self.rotary = (
                make_positional(hp.positional, hp.block_size, hp.n_embd),
                None,
            )
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                hp.n_embd,
                hp.n_head,
                hp.n_ff,
                dropout=dropout,
                bias=hp.bias,
                norm_first=True,
                activation=hp.mlp,
                norm=hp.norm,
                norm_eps=hp.norm_eps,
                n_kv_head=hp.n_kv_head,
                qkv_bias=hp.bias or hp.attention_bias,
            )
            for _ in range(hp.n_layer)
        )
        self.ln_f = make_norm(hp.norm, hp.n_embd, bias=hp.bias, eps=hp.norm_eps)
        self.lm_head = nn.Linear(hp.n_embd, hp.vocab_size, bias=False)
        if hp.tie_weights:
            self.lm_head.weight = self.token_embedding.weight
        self.apply(self._init_weights)
        # GPT-2: scale the projections that write into the residual stream by 1/sqrt(2L).
        for name, p in self.named_parameters():
            if name.endswith(("attn.out_proj.weight", "ff.proj.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * hp.n_layer))
        if pretrained is not None:
            hf_convert.load_into(self, pretrained)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Logits of the next token at every position: [B, T] -> [B, T, vocab_size]."""
        T = input_ids.size(1)
        if self.block_size < T:
            raise ValueError(f"sequence of {T} tokens is longer than block_size={self.block_size}")
        h, rotary = self._embed(input_ids, torch.arange(T, device=input_ids.device))
        h = self.dropout(h)
        for block in self.blocks:
            h = block(h, is_causal=True, rotary=rotary)
        return self.lm_head(self.ln_f(h))

    def _embed(self, ids: torch.Tensor, positions: torch.Tensor):
        """The tokens embedded, with their positions added (learned, sinusoidal), or the
        rotary angles of the positions for the attention (rope: then None is added)."""
        h = self.token_embedding(ids)
        if self.rotary is not None:
            return h, self.rotary(positions)
        return h + self.position.at(positions), None

    # --- decoding (lit_models.modules.decoding drives these) ---------------------------------
    # Each row sees a window of at most block_size tokens. When a new token would overflow a
    # row's window, that row drops its oldest tokens down to its newest block_size // 2, and
    # the keys and values are recomputed with positions from 0 (positions are absolute and
    # learned only up to block_size; rotary keys are cached rotated by their position). With or
    # without the KV cache the model sees the same windows, so both give the same logits; the
    # cache saves recomputing them at every step.

    def start_decoding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        window = DecodingWindow(
            input_ids[:, -self.block_size :], attention_mask[:, -self.block_size :]
        )
        return self._read_window(window), window

    def continue_decoding(self, state: DecodingWindow, next_ids: torch.Tensor):
        state.append(next_ids)
        if state.tokens.size(1) > self.block_size:
            state.shorten_rows_longer_than(self.block_size, keep=self.block_size // 2)
            return self._read_window(state), state
        if state.caches is None:  # no cache: recompute the whole window
            return self._read_window(state), state
        positions = state.mask.sum(dim=1, keepdim=True) - 1
        return self._decode(next_ids[:, None], positions, state.mask, state.caches), state

    def reorder_decoding_state(self, state: DecodingWindow, rows: torch.Tensor) -> DecodingWindow:
        state.reorder(rows)
        return state

    def _read_window(self, state: DecodingWindow) -> torch.Tensor:
        """Logits after the last token of the window; fills fresh caches when they are on."""
        B = state.tokens.size(0)
        like = self.token_embedding.weight
        state.caches = (
            [blk.attn.new_cache(B, self.block_size, like) for blk in self.blocks]
            if self.hparams.kv_cache
            else None
        )
        positions = (state.mask.long().cumsum(dim=1) - 1).clamp(min=0)
        return self._decode(state.tokens, positions, state.mask, state.caches)

    def _decode(self, ids, positions, key_mask, caches) -> torch.Tensor:
        """Next-token logits [B, V] after `ids` [B, T], which follow the cached keys (if any).
        `key_mask` [B, S] marks the real (not padding) tokens among all S keys."""
        T, S = ids.size(1), key_mask.size(1)
        query_pos = torch.arange(S - T, S, device=ids.device)[:, None]
        key_pos = torch.arange(S, device=ids.device)[None, :]
        # A query sees earlier real tokens; a padding query sees itself, so no row is all -inf.
        allowed = (key_pos <= query_pos) & (key_mask[:, None, :] | (key_pos == query_pos))
        h, rotary = self._embed(ids, positions)
        for i, block in enumerate(self.blocks):
            cache = None if caches is None else caches[i]
            h = block(h, attn_mask=allowed[:, None], cache=cache, rotary=rotary)
        return self.lm_head(self.ln_f(h[:, -1]))

    def flops_per_token(self) -> float:
        """Training FLOPs per token, forward and backward: 6N + 12 L T d (Kaplan et al.; PaLM)."""
        hp = self.hparams
        n_params = self.num_parameters() - (
            0 if hp.positional != "learned" else self.position.embedding.weight.numel()
        )
        return 6 * n_params + 12 * hp.n_layer * self.block_size * hp.n_embd

    def configure_optimizers(self):
        return adamw_warmup_cosine(self)

    def setup(self, stage: str) -> None:
        if self.init_from_tokenizer:
            check_data_tokenizer(
                self,
                self.init_from_tokenizer,
                f"model.init_args.init_from {self.hf_source}",
                "Tokenize the data with the model's own tokenizer (data.init_args.tokenizer: pretrained, "
                "data.init_args.pretrained_tokenizer: the model's folder).",
            )

    # --- where the weights came from: a Hugging Face folder (export_hf copies its tokenizer) --
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.hf_source:
            checkpoint["hf_source"] = self.hf_source

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.hf_source = checkpoint.get("hf_source", self.hf_source)


def check_settings(hp: SimpleNamespace) -> None:
    """Settings that cannot build a model, named as the config names them."""
    if hp.vocab_size is None or hp.block_size is None:
        raise UserError(
            "model.init_args.vocab_size and model.init_args.block_size are not set: the datamodule sets them "
            "(linked by the CLI), or model.init_args.init_from does."
        )
    require_positive(
        "model", vocab_size=hp.vocab_size, block_size=hp.block_size, n_layer=hp.n_layer
    )
    require_positive("model", n_embd=hp.n_embd)
    # Each head attends over n_embd / n_head dimensions of its own.
    require_divisor("model", "n_head", hp.n_head, "n_embd", hp.n_embd)
    if hp.n_kv_head is not None:
        # Each key/value head serves n_head / n_kv_head query heads.
        require_divisor("model", "n_kv_head", hp.n_kv_head, "n_head", hp.n_head)
    if hp.positional == "rope" and (hp.n_embd // hp.n_head) % 2:
        raise UserError(
            f"model.init_args.positional=rope rotates pairs of dimensions: the head size n_embd / n_head = {hp.n_embd // hp.n_head} must be even."
        )
    if hp.rope_scaling:
        if hp.positional != "rope":
            raise UserError(
                f"model.init_args.rope_scaling scales rotary frequencies: it needs positional=rope, not "
                f"{hp.positional}."
            )
        check_rope_scaling(hp.rope_scaling)


class DecodingWindow:
    """The tokens GPT currently sees when generating (left-padded rows), and their KV caches."""

    def __init__(self, tokens: torch.Tensor, mask: torch.Tensor):
        self.tokens, self.mask = tokens, mask
        self.caches: list | None = None

    def append(self, next_ids: torch.Tensor) -> None:
        self.tokens = torch.cat([self.tokens, next_ids[:, None]], dim=1)
        self.mask = torch.cat([self.mask, torch.ones_like(self.mask[:, :1])], dim=1)

    def shorten_rows_longer_than(self, limit: int, keep: int) -> None:
        """Rows with more than `limit` real tokens keep their newest `keep`; re-pad on the left."""
        rows = [t[m] for t, m in zip(self.tokens, self.mask, strict=True)]
        rows = [r[-keep:] if len(r) > limit else r for r in rows]
        width = max(len(r) for r in rows)
        self.tokens = self.tokens.new_zeros(len(rows), width)
        self.mask = self.mask.new_zeros(len(rows), width)
        for i, r in enumerate(rows):
            self.tokens[i, width - len(r) :], self.mask[i, width - len(r) :] = r, True

    def reorder(self, rows: torch.Tensor) -> None:
        self.tokens, self.mask = self.tokens.index_select(0, rows), self.mask.index_select(0, rows)
        for cache in self.caches or []:
            cache.reorder(rows)
