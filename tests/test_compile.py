"""`compile: true`: the model's forward goes through torch.compile, with the same outputs and
checkpoint keys; decoding stays eager and, like the evaluation pass, runs in inference mode;
a platform that cannot compile
(or a compiler that fails) gives one warning and an eager run. The real compiler costs a
minute here, so these tests compile with dynamo's `eager` backend (the tracing, not inductor);
bench/compile_cpu.py measures the real one."""

from __future__ import annotations

import warnings
from functools import partial

import pytest
import torch

from lit_models import GPT
from lit_models.compiling import CompiledForward, compile_forward, is_compiled
from lit_models.modules.decoding import generate
from tests.conftest import TINY_GPT, config, run_cli

REAL_COMPILE = torch.compile


def tiny_gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(vocab_size=17, block_size=8, n_layer=1, n_head=2, n_embd=16, dropout=0.0)


@pytest.fixture
def traced_only(monkeypatch):
    """torch.compile with dynamo's eager backend: traced and guarded, no C++ build."""
    torch._dynamo.reset()
    monkeypatch.setattr(torch, "compile", partial(REAL_COMPILE, backend="eager"))
    yield
    torch._dynamo.reset()


def test_compiled_forward_gives_the_eager_outputs_and_keeps_the_state_dict(traced_only):
    model, ids = tiny_gpt(), torch.randint(0, 17, (2, 8))
    eager_logits, keys = model(ids), list(model.state_dict())
    compile_forward(model)
    assert isinstance(model.forward, CompiledForward) and not is_compiled(model)  # at first call
    torch.testing.assert_close(model(ids), eager_logits)
    assert is_compiled(model)
    assert list(model.state_dict()) == keys  # checkpoints load into an uncompiled model


def test_decoding_stays_eager_and_in_inference_mode(traced_only, monkeypatch):
    model = tiny_gpt()
    compile_forward(model)
    model(torch.randint(0, 17, (2, 8)))  # compiled for training
    seen = []
    decode = model._decode

    def spy(*args, **kwargs):
        seen.append((torch.is_inference_mode_enabled(), torch.compiler.is_compiling()))
        return decode(*args, **kwargs)

    monkeypatch.setattr(model, "_decode", spy)
    generate(model, [[1, 2, 3]], max_new_tokens=4, strategy="greedy")
    assert seen and all(inference and not compiling for inference, compiling in seen)


def test_a_platform_without_a_cpp_compiler_warns_once_and_runs_eager(monkeypatch):
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("lit_models.compiling.shutil.which", lambda name: None)
    model, ids = tiny_gpt(), torch.randint(0, 17, (2, 8))
    expected = model(ids)
    compile_forward(model)
    with pytest.warns(UserWarning, match="needs a C\\+\\+ compiler.*runs eager"):
        torch.testing.assert_close(model(ids), expected)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once: the model is eager from now on
        model(ids)
    assert not is_compiled(model) and not isinstance(model.forward, CompiledForward)


def test_a_compiler_that_fails_warns_and_runs_eager(monkeypatch):
    def failing(*args, **kwargs):
        raise torch._inductor.exc.CppCompileError(["g++", "x.cpp"], "x.cpp: fatal error")

    monkeypatch.setattr(torch, "compile", lambda fn, **kwargs: failing)
    model, ids = tiny_gpt(), torch.randint(0, 17, (2, 8))
    expected = model(ids)
    compile_forward(model)
    with pytest.warns(UserWarning, match="torch.compile failed.*runs eager"):
        torch.testing.assert_close(model(ids), expected)


def test_compile_true_on_the_command_line_compiles_the_model(
    traced_only, monkeypatch, shakespeare_dir
):
    import cli.app

    compiled = []
    monkeypatch.setattr(
        cli.app, "compile_forward", lambda m: (compile_forward(m), compiled.append(m))
    )
    run_cli(
        "fit",
        *("--config", config("gpt_shakespeare_char.yaml"), *TINY_GPT),
        *("--trainer.max_steps=1", "--trainer.limit_val_batches=0"),  # the wiring, not the run
        *("--trainer.callbacks=[]", "--trainer.logger=CSVLogger", "--compile=true"),
    )
    (model,) = compiled
    assert is_compiled(model)


def test_the_evaluation_pass_runs_in_inference_mode(monkeypatch):
    from torch.utils.data import DataLoader

    from cli.trainer import Trainer

    model, modes = tiny_gpt(), []
    score = model.score_tokens
    monkeypatch.setattr(
        model,
        "score_tokens",
        lambda *a: (modes.append(torch.is_inference_mode_enabled()), score(*a))[1],
    )
    ids = torch.randint(0, 17, (4, 9))
    batches = [{"input_ids": ids[:, :-1], "targets": ids[:, 1:]}]
    trainer = Trainer(
        accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.validate(model, DataLoader(batches, batch_size=None))
    assert modes == [True]
