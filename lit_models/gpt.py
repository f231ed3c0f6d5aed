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

from lit_models.language_model import LanguageModel
from lit_models.modules import TransformerBlock, make_positional
from lit_models.optim import WarmupCosineSchedule, adamw_decaying_matrices
from suite.errors import UserError


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
        positional: str = "learned",
        tie_weights: bool = True,
        learning_rate: float = 1e-3,
        min_learning_rate: float = 1e-4,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.99),
        warmup_steps: int = 100,
        lr_decay_steps: int | None = None,
    ):
        """
        Args:
            vocab_size: set by the datamodule (linked by the CLI).
            block_size: context length; set by the datamodule's `block_size`.
            positional: `learned` (GPT) or `sinusoidal` (fixed, Vaswani et al.).
            tie_weights: share the token embedding with the output layer.
            lr_decay_steps: step at which cosine decay reaches `min_learning_rate`;
                default: the trainer's total steps (`max_steps`).
        """
        super().__init__()
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

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def flops_per_token(self) -> float:
        """Training FLOPs per token, forward and backward: 6N + 12 L T d (Kaplan et al.; PaLM)."""
        hp = self.hparams
        n_params = self.num_parameters() - (
            0 if hp.positional != "learned" else self.position.embedding.weight.numel()
        )
        return 6 * n_params + 12 * hp.n_layer * self.block_size * hp.n_embd

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = adamw_decaying_matrices(
            self, hp.learning_rate, hp.weight_decay, tuple(hp.betas)
        )
        decay_steps = hp.lr_decay_steps or _total_steps(self)
        schedule = WarmupCosineSchedule(
            optimizer, hp.warmup_steps, decay_steps, hp.min_learning_rate / hp.learning_rate
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def _total_steps(module: LanguageModel) -> int:
    trainer = module._trainer
    if trainer is not None and trainer.max_steps is not None and trainer.max_steps > 0:
        return trainer.max_steps
    estimated = trainer.estimated_stepping_batches if trainer is not None else math.inf
    if math.isinf(estimated):
        raise UserError(
            "set trainer.max_steps or model.init_args.lr_decay_steps: the cosine schedule needs an end."
        )
    return int(estimated)
