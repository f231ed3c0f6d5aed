"""Lightning's Trainer with `precision: auto`, the suite's default: bf16 mixed precision on
GPUs that support it, fp16 mixed on older GPUs, full fp32 on the CPU (where bf16 matrix
products run about 100x slower than fp32)."""

from __future__ import annotations

import lightning as L
import torch


def resolve_precision(precision, accelerator="auto"):
    if precision != "auto":
        return precision
    on_gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if not on_gpu:
        return "32-true"
    return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"


class Trainer(L.Trainer):
    def __init__(self, *args, precision: str | int | None = "auto", **kwargs):
        """
        Args:
            precision: `auto` (bf16-mixed on recent GPUs, 16-mixed on older ones, 32-true on
                CPU) or any value Lightning accepts: 32-true, 16-mixed, bf16-mixed, 64-true, ...
        """
        super().__init__(
            *args,
            precision=resolve_precision(precision, kwargs.get("accelerator", "auto")),
            **kwargs,
        )
