"""The `generate` and `lr_find` subcommands, driven as a user drives them."""

from __future__ import annotations

import pytest

from cli.commands.lr_find import redebias
from tests.conftest import SHARED_DATA, TINY_GPT, config, need_corpus, run_cli

CPU_CONFIG = config("gpt_shakespeare_char_cpu.yaml")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny Shakespeare GPT trained for a few steps, shared by the tests of this module."""
    need_corpus("tinyshakespeare")
    folder = tmp_path_factory.mktemp("gen")
    env = {
        "DATA_DIR": str(SHARED_DATA),
        "WANDB_MODE": "disabled",
        "XDG_CACHE_HOME": str(folder / "cache"),
    }
    run_cli("fit", "--config", CPU_CONFIG, *TINY_GPT, cwd=folder, env=env)
    (ckpt,) = folder.glob("**/checkpoints/last.ckpt")
    return ckpt, folder, env


def generate(checkpoint, *args, check=True):
    ckpt, folder, env = checkpoint
    return run_cli(
        "generate",
        "--config",
        CPU_CONFIG,
        *TINY_GPT,
        "--ckpt_path",
        str(ckpt),
        *args,
        cwd=folder,
        env=env,
        check=check,
    )


def test_generate_prints_text_that_continues_the_prompt(checkpoint):
    out = generate(checkpoint, "--prompt", "ROMEO:", "--max_new_tokens", "40", "--seed", "3").stdout
    assert "ROMEO:" in out
    text = out[out.index("ROMEO:") :].split("\n" + "-" * 40)[0]
    assert len(text) == len("ROMEO:") + 40  # characters, not token ids
    again = generate(
        checkpoint, "--prompt", "ROMEO:", "--max_new_tokens", "40", "--seed", "3"
    ).stdout
    assert text in again  # same seed, same text


def test_generate_from_a_prompt_file_with_beam_search(checkpoint, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("ROMEO:\nJULIET:\\nO\n")
    out = generate(
        checkpoint,
        "--prompt_file",
        str(prompts),
        "--strategy",
        "beam",
        "--n_best",
        "2",
        "--max_new_tokens",
        "10",
    ).stdout
    assert out.count("[beam score") == 4  # 2 prompts x 2 best
    assert "JULIET:\nO" in out  # \n in a prompt line is a newline


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--prompt", "ROMEO:", "--strategy", "nucleus"], "'greedy', 'sample', 'beam'"),
        (["--prompt", "ROMEO:", "--top_p", "1.5"], "top_p must be in"),
        (["--prompt", "Roméo"], "outside the vocabulary: 'é'"),
        ([], "give a prompt"),
    ],
)
def test_generate_bad_input_gets_one_clear_message(checkpoint, args, message):
    proc = generate(checkpoint, *args, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr


def test_generate_with_a_missing_or_damaged_checkpoint(checkpoint, tmp_path):
    _, folder, env = checkpoint
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(checkpoint[0].read_bytes()[:2000])  # a copy cut short
    for path, message in (
        (tmp_path / "no.ckpt", "no such checkpoint"),
        (damaged, "not a readable checkpoint"),
    ):
        proc = run_cli(
            "generate",
            "--config",
            CPU_CONFIG,
            "--ckpt_path",
            str(path),
            "--prompt",
            "A",
            cwd=folder,
            env=env,
            check=False,
        )
        assert proc.returncode == 2 and message in proc.stderr
        assert "Traceback" not in proc.stderr


def test_lr_find_writes_a_png_and_suggests_a_rate(tmp_path, shakespeare_dir):
    plot = tmp_path / "plots" / "lr.png"
    proc = run_cli(
        "lr_find",
        "--config",
        CPU_CONFIG,
        *TINY_GPT,
        "--trainer.logger=false",
        "--num_training",
        "30",
        "--plot",
        str(plot),
    )
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "suggested learning rate" in proc.stdout


def test_redebias_recovers_the_running_average():
    """A constant loss must read as that constant at every point once re-debiased."""
    beta, loss = 0.98, 4.0
    lightning_style, avg = [], 0.0
    for i in range(30):  # what Lightning records: debiased with global_step = i + 1
        avg = beta * avg + (1 - beta) * loss
        lightning_style.append(avg / (1 - beta ** (i + 2)))
    assert lightning_style[0] == pytest.approx(loss / 1.98, rel=1e-6)  # the bug: half the loss
    assert redebias(lightning_style) == pytest.approx([loss] * 30, rel=1e-9)
