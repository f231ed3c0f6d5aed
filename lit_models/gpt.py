"""GPT: a decoder-only Transformer language model (Radford et al. 2018, 2019).

    h_0 = W_e[x] + W_p[positions]                tokens and positions embedded
    h_l = Block(h_{l-1}),  l = 1..L              pre-LayerNorm blocks, causal self-attention
    P(x_{t+1} | x_{<=t}) = softmax(LN(h_L) W_e^T)  the output layer tied to the input embedding

Sizes follow nanoGPT's names (n_layer, n_head, n_embd); so does the optimisation: AdamW with
weight decay on matrices only, linear warmup then cosine decay.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from core.checks import require_divisor, require_positive, require_probability
from lit_models.language_model import LanguageModel
from lit_models.modules import TransformerBlock, make_positional
from lit_models.modules.positional import Positional
from lit_models.optim import adamw_warmup_cosine, check_warmup_cosine


class GPT(LanguageModel):
    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_layer: int = 6,
        n_head: int = 6,
        n_embd: int = 384,
        dropout: float = 0.2,
        bias: bool = False,
        positional: Positional = "learned",
        tie_weights: bool = True,
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
            positional: `learned` (GPT) or `sinusoidal` (fixed, Vaswani et al.).
            tie_weights: share the token embedding with the output layer.
            lr_decay_steps: step at which cosine decay reaches `min_learning_rate`;
                default: the trainer's total steps (`max_steps`).
            kv_cache: when generating, keep each layer's keys and values so that a new token
                costs one position, not the whole context (off: recompute, for comparison).
        """
        super().__init__()
        require_positive(
            "model", vocab_size=vocab_size, block_size=block_size, n_layer=n_layer, n_embd=n_embd
        )
        # Each head attends over n_embd / n_head dimensions of its own.
        require_divisor("model", "n_head", n_head, "n_embd", n_embd)
        require_probability("model", dropout=dropout)
        check_warmup_cosine(
            learning_rate, min_learning_rate, weight_decay, betas, warmup_steps, lr_decay_steps
        )
        self.save_hyperparameters()
        self.block_size = block_size
        self.token_embedding = nn.Embedding(vocab_size, n_embd)
        self.position = make_positional(positional, block_size, n_embd)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(
                n_embd, n_head, 4 * n_embd, dropout=dropout, bias=bias, norm_first=True
            )
            for _ in range(n_layer)
        )
        self.ln_f = nn.LayerNorm(n_embd, bias=bias)
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        if tie_weights:
            self.lm_head.weight = self.token_embedding.weight
        self.apply(self._init_weights)
        # GPT-2: scale the projections that write into the residual stream by 1/sqrt(2L).
        for name, p in self.named_parameters():
            if name.endswith(("attn.out_proj.weight", "ff.proj.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

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
        h = self.dropout(self.token_embedding(input_ids) + self.position(T))
        for block in self.blocks:
            h = block(h, is_causal=True)
        return self.lm_head(self.ln_f(h))

    # --- decoding (lit_models.modules.decoding drives these) ---------------------------------
    # Each row sees a window of at most block_size tokens. When a new token would overflow a
    # row's window, that row drops its oldest tokens down to its newest block_size // 2, and
    # the keys and values are recomputed with positions from 0 (positions are absolute and
    # learned only up to block_size). With or without the KV cache the model sees the same
    # windows, so both give the same logits; the cache saves recomputing them at every step.

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
        h = self.token_embedding(ids) + self.position.at(positions)
        for i, block in enumerate(self.blocks):
            h = block(h, attn_mask=allowed[:, None], cache=None if caches is None else caches[i])
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
