"""`compile: true`: a model's forward run through `torch.compile`, for every model of the suite.

Every model's training and evaluation steps call its forward (`self(batch...)`), so compiling
that one method, as Lightning does with a compiled module, speeds up both without touching the
model or its checkpoints (the state dict keeps its names). Word2vec's hand-written updates
and DPO's preference step do not go through forward and stay eager. Decoding stays eager too
(lit_models.modules.decoding.evaluating): each new prompt and cache length would recompile.

Where the platform cannot compile (no C++ compiler for the CPU backend, no Triton for CUDA,
a Python that torch.compile does not support) or the compiler fails, one warning says why and
the model runs eager: the run goes on, only slower.
"""

from __future__ import annotations

import os
import shutil
import sys
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn


def _compile_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the compiler failed", not "the model's code failed"."""
    import torch._dynamo.exc as dynamo_exc
    import torch._inductor.exc as inductor_exc

    names = ("InductorError", "CppCompileError", "CUDACompileError")
    found = tuple(getattr(inductor_exc, n) for n in names if hasattr(inductor_exc, n))
    return (dynamo_exc.BackendCompilerFailed, *found)


def cpp_compiler() -> str | None:
    """The C++ compiler inductor's CPU backend would call: $CXX, else the usual names."""
    names = [os.environ["CXX"]] if os.environ.get("CXX") else []
    names += ["cl"] if sys.platform == "win32" else ["g++", "clang++", "c++"]
    return next((path for name in names if (path := shutil.which(name))), None)


def why_cannot_compile(device: torch.device) -> str | None:
    """Why torch.compile cannot run on this platform for `device`, or None when it can."""
    import torch._dynamo

    if not torch._dynamo.is_dynamo_supported():
        python = ".".join(map(str, sys.version_info[:2]))
        return f"torch {torch.__version__} cannot compile on Python {python} ({sys.platform})"
    if device.type == "cpu" and cpp_compiler() is None:
        return "its CPU backend needs a C++ compiler and none was found (install g++ or set CXX)"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        if not has_triton():
            return "its CUDA backend needs Triton, which is not installed (pip install triton)"
    return None


def _device_of(args: tuple, kwargs: dict[str, Any], model: nn.Module) -> torch.device:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor):
            return value.device
    return next(model.parameters()).device


class CompiledForward:
    """Stands in for `model.forward`: the compiled forward once the first call has found the
    platform able to compile, else (or when the compiler fails) the eager one, for good."""

    def __init__(self, model: nn.Module):
        self.model, self.eager = model, model.forward
        self.compiled = None

    def __call__(self, *args, **kwargs):
        if self.compiled is None:
            reason = why_cannot_compile(_device_of(args, kwargs, self.model))
            if reason is not None:
                return self._fall_back(reason)(*args, **kwargs)
            self.compiled = torch.compile(self.eager)
        try:
            return self.compiled(*args, **kwargs)
        except _compile_errors() as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err)
            return self._fall_back(f"torch.compile failed ({first_line})")(*args, **kwargs)

    def _fall_back(self, reason: str):
        rank_zero_warn(f"compile: true, but {reason}; the model runs eager (not compiled).")
        self.model.forward = self.eager
        return self.eager


def compile_forward(model: nn.Module) -> None:
    """Route `model`'s forward through torch.compile from its first call on (see above)."""
    if not isinstance(model.forward, CompiledForward):
        model.forward = CompiledForward(model)


def is_compiled(model: nn.Module) -> bool:
    """Whether `model`'s forward goes through torch.compile (decided at its first call)."""
    forward = model.forward
    return isinstance(forward, CompiledForward) and forward.compiled is not None
