"""What LoRA adapts in the suite's GPT: its projections by name, or by role.

By name (the modules as the GPT has them): `in_proj` (the stacked [W_Q; W_K; W_V]),
`out_proj` (W^O), `fc` (the FFN's first matrix; SwiGLU's stacked [W_gate; W_up]), `proj` (the
FFN's last matrix, W_down).

By role (as LLaMA's q_proj, k_proj, ... in transformers and peft): q, k, v, o, gate, up, down.
o is out_proj and down is proj; up is fc in a GELU FFN. But q, k, v are rows of one stacked
in_proj, and gate, up rows of one stacked fc, and LoRA cannot adapt some rows of a matrix
(B A's update covers all of W's rows, with one A shared by them). So a role among stacked
rows splits that matrix into its parts first (`split_stacked`: one nn.Linear per role, their
outputs concatenated, which computes what the stacked matrix does) and the asked parts get
adapters of their own, each its own A and B: exactly what peft does to a Hugging Face LLaMA
with target_modules q_proj, v_proj, ... The parts are stacked back after merging
(`restack`), so the merged model is a plain GPT again.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch
from torch import nn

from core.errors import UserError

ModuleName = Literal["in_proj", "out_proj", "fc", "proj"]
Role = Literal["q", "k", "v", "o", "gate", "up", "down"]
Target = Literal["in_proj", "out_proj", "fc", "proj", "q", "k", "v", "o", "gate", "up", "down"]
ROLES: tuple[str, ...] = get_args(Role)
ATTENTION_PARTS = ("q", "k", "v")  # the rows of attn.in_proj, in order
GATED_PARTS = ("gate", "up")  # the rows of SwiGLU's ff.fc, in order


class SplitProjection(nn.Module):
    """A stacked projection as its parts, one nn.Linear each (named by role), their outputs
    concatenated in order: the same function as the stacked nn.Linear it replaces."""

    def __init__(self, parts: dict[str, nn.Linear]):
        super().__init__()
        self.parts = list(parts)
        for name, layer in parts.items():
            self.add_module(name, layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([getattr(self, name)(x) for name in self.parts], dim=-1)

    @staticmethod
    def of(stacked: nn.Linear, sizes: dict[str, int]) -> SplitProjection:
        """`stacked` cut into parts of `sizes` rows (its weights copied, so they own them)."""
        weights = stacked.weight.detach().split(list(sizes.values()), dim=0)
        biases = (
            stacked.bias.detach().split(list(sizes.values()))
            if stacked.bias is not None
            else [None] * len(sizes)
        )
        parts = {}
        for (name, rows), w, b in zip(sizes.items(), weights, biases, strict=True):
            layer = nn.Linear(stacked.in_features, rows, bias=b is not None)
            layer.to(dtype=w.dtype, device=w.device)
            with torch.no_grad():
                layer.weight.copy_(w)
                if b is not None:
                    layer.bias.copy_(b)
            layer.requires_grad_(stacked.weight.requires_grad)
            parts[name] = layer
        return SplitProjection(parts)

    def stacked(self) -> nn.Linear:
        """The parts as one nn.Linear again (each part a plain nn.Linear, e.g. after merging)."""
        layers = [getattr(self, name) for name in self.parts]
        weight = torch.cat([layer.weight.detach() for layer in layers], dim=0)
        has_bias = layers[0].bias is not None
        out = nn.Linear(weight.size(1), weight.size(0), bias=has_bias)
        out.to(dtype=weight.dtype, device=weight.device)
        with torch.no_grad():
            out.weight.copy_(weight)
            if has_bias:
                out.bias.copy_(torch.cat([layer.bias.detach() for layer in layers]))
        return out


def gated(gpt: nn.Module) -> bool:
    return gpt.hparams.get("mlp") == "swiglu"


def check_targets(targets: list[str], gpt: nn.Module) -> None:
    """Targets that overlap, or a role this GPT's FFN does not have, named."""
    if not targets:
        raise UserError(
            "model.init_args.target_modules is empty: name at least one projection or role."
        )
    for stacked, parts in (("in_proj", ATTENTION_PARTS), ("fc", GATED_PARTS)):
        asked = [p for p in parts if p in targets]
        if stacked in targets and asked and (stacked == "in_proj" or gated(gpt)):
            raise UserError(
                f"model.init_args.target_modules has {stacked} and {', '.join(asked)}: {stacked} holds "
                f"{', '.join(parts)} already. Give the stacked matrix (one adapter for all its "
                f"rows) or the roles (one adapter each), not both."
            )
    if "gate" in targets and not gated(gpt):
        raise UserError(
            f"model.init_args.target_modules has gate, but this GPT's feed-forward network is "
            f"mlp={gpt.hparams.get('mlp')}, which has no gate (its roles: up = fc, down = proj)."
        )


def peft_targets(targets: list[str], gpt: nn.Module) -> list[str]:
    """The module-name suffixes peft matches (a module is adapted when its name ends in
    `.suffix`), after `split_stacked`."""
    suffixes = {
        "in_proj": "attn.in_proj",
        "out_proj": "attn.out_proj",
        "o": "attn.out_proj",
        "fc": "ff.fc",
        "proj": "ff.proj",
        "down": "ff.proj",
        **{p: f"attn.in_proj.{p}" for p in ATTENTION_PARTS},
        "gate": "ff.fc.gate",
        "up": "ff.fc.up" if gated(gpt) else "ff.fc",
    }
    return sorted({suffixes[t] for t in targets})


def split_stacked(gpt: nn.Module, targets: list[str]) -> None:
    """Replace the stacked matrices that a role targets by their parts (in every block)."""
    for block in gpt.blocks:
        attn = block.attn
        if any(p in targets for p in ATTENTION_PARTS):
            sizes = dict(zip(ATTENTION_PARTS, attn.qkv_sizes, strict=True))
            attn.in_proj = SplitProjection.of(attn.in_proj, sizes)
        if gated(gpt) and any(p in targets for p in GATED_PARTS):
            half = block.ff.fc.out_features // 2
            block.ff.fc = SplitProjection.of(block.ff.fc, {"gate": half, "up": half})


def restack(gpt: nn.Module) -> None:
    """Undo `split_stacked` (on a model whose parts are plain nn.Linear again)."""
    for block in gpt.blocks:
        if isinstance(block.attn.in_proj, SplitProjection):
            block.attn.in_proj = block.attn.in_proj.stacked()
        if isinstance(block.ff.fc, SplitProjection):
            block.ff.fc = block.ff.fc.stacked()
