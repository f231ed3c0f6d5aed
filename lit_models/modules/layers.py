"""The two layers the course writes by hand, each equal to PyTorch's own (tests/test_tabular.py):

    Linear(x)      = x W^T + b                                          nn.Linear
    BatchNorm1d(x) = (x - mean) / sqrt(var + eps) * gamma + beta        nn.BatchNorm1d

Batch norm (Ioffe & Szegedy 2015) normalises each feature with the statistics of the batch
while training, and keeps running averages of them for evaluation, when a batch may hold one
example. Both keep PyTorch's parameter and buffer names, so their state dicts load into each
other. `make_linear` / `make_batchnorm` pick PyTorch's or the hand-written one from a config
choice (`Layers`).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn

Layers = Literal["torch", "hand_written"]


class Linear(nn.Module):
    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and bias alike
        # (what kaiming_uniform_ with a=sqrt(5) works out to).
        bound = 1.0 / math.sqrt(self.in_features) if self.in_features > 0 else 0.0
        with torch.no_grad():
            self.weight.uniform_(-bound, bound)
            if self.bias is not None:
                self.bias.uniform_(-bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x @ self.weight.T
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


class BatchNorm1d(nn.Module):
    """Over [batch, features]: one mean and variance per feature."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.weight = nn.Parameter(torch.ones(num_features))  # gamma
        self.bias = nn.Parameter(torch.zeros(num_features))  # beta
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            mean = x.mean(dim=0)
            var = x.var(dim=0, unbiased=False)  # the batch is normalised by its own variance
            with torch.no_grad():
                n = x.shape[0]
                # ... but the running average keeps the unbiased estimate, as PyTorch does.
                unbiased = var * n / max(n - 1, 1)
                self.running_mean.lerp_(mean, self.momentum)
                self.running_var.lerp_(unbiased, self.momentum)
                self.num_batches_tracked += 1
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean) / torch.sqrt(var + self.eps)
        return x_hat * self.weight + self.bias

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}"


def make_linear(layers: Layers, in_features: int, out_features: int) -> nn.Module:
    return (nn.Linear if layers == "torch" else Linear)(in_features, out_features)


def make_batchnorm(layers: Layers, num_features: int) -> nn.Module:
    return (nn.BatchNorm1d if layers == "torch" else BatchNorm1d)(num_features)
