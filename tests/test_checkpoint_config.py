"""A checkpoint carries its run's config: trained with overrides, it is tested and sampled
from with --ckpt_path alone, or with its run's saved config.yaml; a config that would build
another model is refused naming the key and both values; evaluation logs into the
checkpoint's own run. And the small traps of the newcomer's path: several prompts, word-level
spacing, TensorBoard without tensorboard, hints spelled as the README spells them."""

from __future__ import annotations

import importlib.util

import pytest

from tests.conftest import assert_one_clear_error, config, run_cli

OVERRIDES = [  # not the config's sizes: 4 layers, 128 wide, context 64
    "--model.init_args.n_layer=1", "--model.init_args.n_head=2", "--model.init_args.n_embd=16",
    "--data.init_args.block_size=32",
]  # fmt: skip
QUICK = [
    "--trainer.enable_progress_bar=false",
    "--trainer.logger=CSVLogger",
    "--trainer.logger.save_dir=csv",
    "--trainer.max_steps=2",
    "--trainer.limit_val_batches=1",
]
STOCK = config("gpt_shakespeare_char_cpu.yaml")


def test_a_checkpoint_alone_rebuilds_its_model_and_data(tmp_path):
    run_cli("fit", "--config", STOCK, *OVERRIDES, *QUICK)
    (ckpt,) = tmp_path.glob("csv/**/checkpoints/last.ckpt")
    run = ckpt.parent.parent

    tested = run_cli("test", "--ckpt_path", str(ckpt), "--trainer.limit_test_batches=2")
    assert "test/loss" in tested.stdout
    assert (run / "test" / "metrics.csv").is_file()  # into the checkpoint's own run
    assert [p.name for p in run.parent.iterdir()] == [run.name]  # no new, empty run
    assert "train/loss" in (run / "metrics.csv").read_text()  # the training's log kept

    two = ["--prompt", "ROMEO:", "--prompt", "JULIET:", "--max_new_tokens=4"]
    for given in ([], ["--config", str(run / "config.yaml")]):  # the run's config, as it is
        out = run_cli("generate", *given, "--ckpt_path", str(ckpt), *two, "--strategy=greedy")
        texts = out.stdout.split("-" * 40)
        assert texts[0].strip().startswith("ROMEO:") and texts[1].strip().startswith("JULIET:")

    proc = run_cli("test", "--config", STOCK, "--ckpt_path", str(ckpt), check=False)
    assert_one_clear_error(
        proc,
        "model.init_args.n_layer: 1 in the checkpoint, 4 in this config",
        "give --ckpt_path alone",
    )
    stock_data = ["--model.init_args.n_layer=1", "--model.init_args.n_head=2"]
    stock_data += ["--model.init_args.n_embd=16"]  # the model's keys, the stock data
    proc = run_cli("test", "--config", STOCK, *stock_data, "--ckpt_path", str(ckpt), check=False)
    assert_one_clear_error(proc, "block_size=32", "block_size=64")


def test_word_level_continuations_keep_their_spacing():
    from datamodules.tokenizers import train_tokenizer
    from lit_models.modules.decoding import continuation

    lines = ["the game of the forest\n", "a cat sat\n"] * 5
    for kind, expected in (("word", " forest"), ("char", "forest"), ("bpe", " forest")):
        tokenizer = train_tokenizer(kind, lines, bpe_vocab_size=300)
        prompt = "the game" if kind != "char" else "the game "
        new = tokenizer.encode("the game forest")[len(tokenizer.encode(prompt)) :]
        assert continuation(tokenizer, tokenizer.encode(prompt), new) == expected, kind


@pytest.mark.skipif(bool(importlib.util.find_spec("tensorboard")), reason="tensorboard here")
def test_tensorboard_without_tensorboard_is_one_line():
    proc = run_cli("fit", "--config", STOCK, "--trainer.logger=TensorBoardLogger", check=False)
    assert_one_clear_error(proc, "pip install tensorboard")


def test_hints_use_the_readme_spelling(tmp_path):
    proc = run_cli(
        "fit", "--config", STOCK, "--data.init_args.data_dir", str(tmp_path / "none"),
        "--data.init_args.download=false", check=False,
    )  # fmt: skip
    message = assert_one_clear_error(proc, "data.init_args.data_dir")
    assert "data.data_dir" not in message and "data.download" not in message
