"""DPO: a few steps on tiny pairs raise the chosen-over-rejected margin, the reference stays
what the policy started as (a frozen copy, or with LoRA the adapters switched off, with no
second copy), bad JSONL rows are named by file and line, and the CLI trains and logs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.errors import DataError
from datamodules.preference import PreferenceDataModule, split_hh_rlhf
from lit_models.dpo import DPO
from lit_models.gpt import GPT
from lit_models.modules.preference import response_logprobs
from tests.conftest import assert_one_clear_error, logged_metrics, run_cli

BASE = {"vocab_size": 259, "block_size": 32, "n_layer": 1, "n_head": 2, "n_embd": 32}
PAIRS = [  # prompt, chosen, rejected: byte-level text, the chat corpus's ids
    {"prompt": f"film {i}:", "chosen": " great fun", "rejected": " dull mess"} for i in range(8)
]
CSV = ["--trainer.logger=CSVLogger", "--trainer.logger.save_dir=csv"]


def save_gpt_checkpoint(model: GPT, path: Path) -> Path:
    """A checkpoint as `python main.py fit` writes one (the fields a base is read from)."""
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": {**model.hparams, "_class_path": "lit_models.GPT"},
            "pytorch-lightning_version": "2.6.6",
        },
        path,
    )
    return path


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture
def base_ckpt(tmp_path) -> Path:
    torch.manual_seed(0)
    return save_gpt_checkpoint(GPT(**BASE, dropout=0.0), tmp_path / "base.ckpt")


@pytest.fixture
def batch(tmp_path):
    data = PreferenceDataModule(
        train_file=str(write_jsonl(tmp_path / "p.jsonl", PAIRS)), block_size=32
    )
    data.setup("fit")
    return next(iter(data.train_dataloader()))


def train(model: DPO, batch, steps: int, lr: float = 3e-3) -> None:
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        model.preference_step(batch).losses.mean().backward()
        optimizer.step()
    model.eval()


def margin(model: DPO, batch) -> float:
    with torch.no_grad():
        out = model.preference_step(batch)
    return (out.chosen_rewards - out.rejected_rewards).mean().item()


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_training_raises_the_margin_and_the_reference_stays_the_base(base_ckpt, batch, lora):
    options = {"lora": True, "rank": 4, "learning_rate": 1e-2} if lora else {}
    model = DPO(str(base_ckpt), beta=0.5, **options).eval()
    base = GPT.load_from_checkpoint(base_ckpt).eval()
    assert margin(model, batch) == pytest.approx(0.0, abs=1e-5)  # policy = reference at start
    train(model, batch, steps=15, lr=1e-2 if lora else 3e-3)
    assert margin(model, batch) > 0.5
    ids, targets = batch["chosen_input_ids"], batch["chosen_targets"]
    with torch.no_grad():
        policy = model.sequence_logprobs(ids, targets)
        reference = model.sequence_logprobs(ids, targets, reference=True)
        torch.testing.assert_close(reference, response_logprobs(base(ids), targets))
    assert (policy > reference).all()  # the chosen responses became likelier
    if lora:
        # One copy of the weights: the base's, inside the policy, and the adapters.
        assert model.reference is None
        counts = sum(p.numel() for n, p in model.named_parameters() if "lora_" not in n)
        assert counts == sum(p.numel() for p in base.parameters())
    else:
        assert not any(p.requires_grad for p in model.reference.parameters())


def test_bad_rows_are_named_by_file_and_line(tmp_path):
    good = PAIRS[0]
    cases = {
        "missing field rejected": {"prompt": "a", "chosen": " b"},
        "`chosen` is empty": {**good, "chosen": "  "},
        "not valid JSON": "{not json",
        "no room for a response": {**good, "prompt": "x" * 40},
    }
    for message, row in cases.items():
        path = tmp_path / "bad.jsonl"
        path.write_text(
            json.dumps(good) + "\n" + (row if isinstance(row, str) else json.dumps(row)) + "\n"
        )
        data = PreferenceDataModule(train_file=str(path), block_size=32, val_fraction=0.5)
        with pytest.raises(DataError, match=rf"{path}:2: .*{message}"):
            data.setup("fit")


def test_hh_rlhf_dialogues_split_into_prompt_and_responses():
    chosen = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: a film?\n\nAssistant: Try Alien."
    rejected = "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: a film?\n\nAssistant: No."
    assert split_hh_rlhf(chosen, rejected) == (
        "\n\nHuman: hi\n\nAssistant: hello\n\nHuman: a film?\n\nAssistant:",
        " Try Alien.",
        " No.",
    )


def test_fit_through_the_cli_logs_the_rewards_and_saves_no_reference(tmp_path, base_ckpt):
    pairs = write_jsonl(tmp_path / "pairs.jsonl", PAIRS)
    args = [
        "fit",
        "--model=lit_models.DPO",
        f"--model.init_args.base={base_ckpt}",
        "--model.init_args.learning_rate=3e-3",
        "--data=datamodules.PreferenceDataModule",
        f"--data.init_args.train_file={pairs}",
        "--data.init_args.block_size=32",
        "--data.init_args.batch_size=4",
        "--data.init_args.val_fraction=0.25",
        "--trainer.max_steps=6",
        "--trainer.val_check_interval=3",
        "--trainer.check_val_every_n_epoch=null",
        "--trainer.log_every_n_steps=1",
        "--trainer.enable_progress_bar=false",
        *CSV,
    ]
    run_cli(*args)
    metrics = logged_metrics(tmp_path / "csv")
    for stage in ("train", "val"):
        for name in ("loss", "reward_acc", "reward_margin", "chosen_reward", "rejected_reward"):
            assert f"{stage}/{name}" in metrics
    (last,) = tmp_path.rglob("checkpoints/last.ckpt")
    state = torch.load(last, weights_only=True)["state_dict"]
    assert state and not any(k.startswith("reference.") for k in state)
    DPO.load_from_checkpoint(last)  # the reference is rebuilt from the base

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(PAIRS[0]) + "\n" + json.dumps({"prompt": "a"}) + "\n")
    proc = run_cli(*args[:5], f"--data.init_args.train_file={bad}", *args[6:], check=False)
    assert proc.returncode == 2
    assert_one_clear_error(proc, f"{bad}:2", "missing field")
