"""Exact resume: a deterministic CPU run interrupted after a checkpoint and resumed from its
last.ckpt ends bit-identical to the uninterrupted run: the same step, the same weights, the
same val loss. The checkpoint holds the training data's place in its epoch, the random
generators' states and a recurrent model's carried state."""

from __future__ import annotations

import csv
import json
import shutil
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, DistributedSampler

from datamodules.bucketing import BucketBatchSampler
from datamodules.resumable import EpochRandomSampler, ResumableLoader
from datamodules.word2vec import NoiseSampler, Word2VecExamples, keep_probabilities
from tests.conftest import TINY_GPT, config, need_corpus, run_cli, run_cli_subprocess

N = 10  # the interruption; the run is planned for 2N steps, with a checkpoint every 5
NOT_RESUMABLE = "your dataloader is not resumable"  # Lightning's warning


# --- the loader: its place in the epoch, restored without loading what it skips -------------


class Examples(Dataset):
    """0..n-1, remembering which examples were loaded."""

    def __init__(self, n: int):
        self.n, self.loaded = n, []

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        self.loaded.append(i)
        return i


def train_loader(data: Dataset, bucketed: bool = False, **options) -> ResumableLoader:
    sampler = EpochRandomSampler(data, seed=3)
    if bucketed:  # lengths: the examples' own values, so buckets hold neighbours
        lengths = np.arange(len(data)) % 17
        batches = BucketBatchSampler(sampler, 4, lengths=lengths, shuffle=True, seed=3)
        return ResumableLoader(data, batch_sampler=batches, **options)
    return ResumableLoader(data, batch_size=4, sampler=sampler, **options)


def epoch_batches(loader: DataLoader, epoch: int) -> list[list[int]]:
    _set_epoch(loader, epoch)
    return [batch.tolist() for batch in loader]


def _set_epoch(loader: DataLoader, epoch: int) -> None:
    from lightning.fabric.utilities.data import _set_sampler_epoch

    _set_sampler_epoch(loader, epoch)  # as Lightning's fit loop does before every epoch


@pytest.mark.parametrize("bucketed", [False, True])
@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_loaded_position_skips_the_read_batches_without_loading_them(bucketed, num_workers):
    options = {"num_workers": num_workers, "persistent_workers": num_workers > 0}
    whole = epoch_batches(train_loader(Examples(64), bucketed, **options), epoch=1)
    assert epoch_batches(train_loader(Examples(64), bucketed), epoch=2) != whole

    reader = train_loader(Examples(64), bucketed)
    _set_epoch(reader, 1)
    batches = iter(reader)
    read = [next(batches).tolist() for _ in range(5)]
    state = reader.state_dict()
    assert state == {"epoch": 1, "batches": 5} and read == whole[:5]

    data = Examples(64)
    resumed = train_loader(data, bucketed, **options)
    resumed.load_state_dict(state)
    batches = iter(resumed)  # made before set_epoch, as Lightning does on resume
    _set_epoch(resumed, 1)
    assert [batch.tolist() for batch in batches] == whole[5:]
    if num_workers == 0:  # (workers load in processes of their own)
        assert sorted(data.loaded) == sorted(i for batch in whole[5:] for i in batch)
    assert resumed.state_dict() == {"epoch": 1, "batches": len(whole)}
    # The next epoch is read whole (with persistent workers, by the same iterator).
    assert epoch_batches(resumed, 2) == epoch_batches(train_loader(Examples(64), bucketed), 2)


def test_a_position_at_the_end_of_an_epoch_goes_on_with_the_next():
    # Lightning makes an iterator on resume; finding the saved epoch complete, it makes the
    # next epoch's without reading the first.
    loader = train_loader(Examples(64))
    loader.load_state_dict({"epoch": 1, "batches": 16})
    iter(loader)
    assert epoch_batches(loader, 2) == epoch_batches(train_loader(Examples(64)), 2)


def test_an_order_too_long_to_hold_is_computed_a_chunk_at_a_time(monkeypatch):
    """Past HELD_ORDER_MAX examples (a corpus of gigabytes has a window per token) the sampler
    holds no permutation: each epoch is still every index once, in a seeded order of its own,
    the ranks' shares disjoint, and a resumed loader skips into it the same way."""
    from datamodules import resumable

    monkeypatch.setattr(resumable, "HELD_ORDER_MAX", 50)
    monkeypatch.setattr(resumable, "ORDER_CHUNK", 7)  # several chunks
    n = 1001
    epoch1 = list(EpochRandomSampler(range(n), seed=3))
    assert sorted(epoch1) == list(range(n)) and epoch1 != list(range(n))
    assert list(EpochRandomSampler(range(n), seed=3)) == epoch1  # seeded
    later = EpochRandomSampler(range(n), seed=3)
    later.set_epoch(1)
    assert sorted(later) == list(range(n)) and list(later) != epoch1
    for world in (2, 3):
        shares = [list(EpochRandomSampler(range(n), 3, rank, world)) for rank in range(world)]
        assert {len(share) for share in shares} == {-(-n // world)}  # padded to equal shares
        assert set().union(*shares) == set(range(n))
        assert sum(map(len, shares)) - n == -n % world  # only the padding repeats
    whole = epoch_batches(train_loader(Examples(200)), epoch=1)
    resumed = train_loader(Examples(200))
    resumed.load_state_dict({"epoch": 1, "batches": 5})
    assert epoch_batches(resumed, 1) == whole[5:]


def test_the_loader_survives_lightnings_distributed_sampler():
    """Under DDP Lightning builds the loader again around its DistributedSampler (from the
    arguments it caught); the new one is resumable as well, and skips in its own order."""
    from lightning.fabric.utilities.data import _replace_dunder_methods
    from lightning.pytorch.trainer.states import RunningStage
    from lightning.pytorch.utilities.data import _update_dataloader

    for bucketed in (False, True):
        with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
            loader = train_loader(Examples(64), bucketed)
        sampler = DistributedSampler(loader.dataset, num_replicas=2, rank=1, shuffle=True, seed=5)
        shard = _update_dataloader(loader, sampler, mode=RunningStage.TRAINING)
        assert isinstance(shard, ResumableLoader)
        whole = epoch_batches(shard, 1)
        assert len(whole) == 8
        shard.load_state_dict({"epoch": 1, "batches": 3})
        assert epoch_batches(shard, 1) == whole[3:]


def word2vec_loader() -> ResumableLoader:
    ids = np.random.default_rng(0).integers(0, 50, size=3000)
    counts = np.bincount(ids, minlength=50).astype(np.float64)
    data = Word2VecExamples(
        ids,
        np.arange(len(ids)) // 20,  # sentences of 20 words
        keep_probabilities(counts, 1e-2),
        NoiseSampler(counts / counts.sum()),
        "skipgram",
        window=3,
        negative=4,
        batch_size=256,
        seed=7,
    )
    return ResumableLoader(data, batch_size=None)


def assert_same_batches(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_word2vec_batches_resume_with_the_same_examples_and_noise():
    uninterrupted = word2vec_loader()
    epochs = [list(uninterrupted) for _ in range(3)]  # the dataset counts its own passes
    resumed = word2vec_loader()
    resumed.load_state_dict({"epoch": 1, "batches": 4})
    assert_same_batches([*resumed, *resumed], epochs[1][4:] + epochs[2])
    # Saved at the end of epoch 1: the iterator made on resume is left unread.
    resumed = word2vec_loader()
    resumed.load_state_dict({"epoch": 1, "batches": len(epochs[1])})
    iter(resumed)
    assert_same_batches(list(resumed), epochs[2])


def fit(args: list[str], save_dir: str, steps: int, *extra: str, run=run_cli, check=True):
    logger = ["--trainer.logger=CSVLogger", f"--trainer.logger.save_dir={save_dir}"]
    return run("fit", *args, *logger, f"--trainer.max_steps={steps}", *extra, check=check)


def last_ckpt(save_dir: str) -> Path:
    (path,) = Path(save_dir).rglob("last.ckpt")
    return path


def val_losses(save_dir: str) -> dict[int, float]:
    (path,) = Path(save_dir).rglob("metrics.csv")
    with path.open() as f:
        return {int(r["step"]): float(r["val/loss"]) for r in csv.DictReader(f) if r["val/loss"]}


def resume(args: list[str], interrupted: str, run=run_cli) -> None:
    """Resumes the run saved under `interrupted` from its last.ckpt to step 2N, under
    ./resumed (in this process; the SIGKILL and DDP tests resume in a process of their own,
    which knows of the first run only its checkpoint)."""
    first = last_ckpt(interrupted)
    assert torch.load(first, weights_only=True)["global_step"] == N
    resumed = fit(args, "resumed", 2 * N, f"--ckpt_path={first}", run=run)
    assert NOT_RESUMABLE not in resumed.stderr


def assert_same_end(whole: str, resumed: str) -> None:
    """Both runs ended at step 2N with equal weights (every tensor, bit for bit) and val loss."""
    a = torch.load(last_ckpt(whole), map_location="cpu", weights_only=True)
    b = torch.load(last_ckpt(resumed), map_location="cpu", weights_only=True)
    assert a["global_step"] == b["global_step"] == 2 * N
    assert a["state_dict"].keys() == b["state_dict"].keys()
    diff = max((a["state_dict"][k] - v).abs().max().item() for k, v in b["state_dict"].items())
    loss_a, loss_b = val_losses(whole)[2 * N - 1], val_losses(resumed)[2 * N - 1]
    print(f"max weight difference {diff}; val loss {loss_a} and {loss_b}")
    for name, tensor in a["state_dict"].items():
        assert torch.equal(b["state_dict"][name], tensor), name
    assert loss_b == loss_a


def assert_resume_is_exact(args: list[str]) -> None:
    fit(args, "whole", 2 * N)
    fit(args, "first", N)
    resume(args, "first")
    assert_same_end("whole", "resumed")


# --- (a) random windows: GPT on Tiny Shakespeare ------------------------------------------

GPT = [
    *("--config", config("gpt_shakespeare_char.yaml"), *TINY_GPT),
    "--model.init_args.dropout=0.1",  # dropout draws: the generators' states must be restored
    *("--model.init_args.warmup_steps=4", "--model.init_args.lr_decay_steps=30"),
    "--trainer.val_check_interval=5",  # validation and checkpoints every 5 steps
]


def test_gpt_resumes_exactly_from_the_end_of_an_epoch(shakespeare_dir):
    # Epochs of 5 steps: the checkpoint of step N lands at the end of epoch 2. (Mid-epoch,
    # and on into the next epoch: the SIGKILL test below, with epochs of 7.)
    assert_resume_is_exact([*GPT, "--trainer.limit_train_batches=5"])


@pytest.mark.slow
def test_a_run_killed_by_sigkill_resumes_exactly_from_its_last_checkpoint(shakespeare_dir):
    args = [*GPT, "--trainer.limit_train_batches=7"]
    fit(args, "whole", 2 * N)
    # Planned for 2N steps, killed at step N + 3: nothing is saved on the way out.
    kill = json.dumps(
        {"class_path": "tests.interruptions.KillAtStep", "init_args": {"step": N + 3}}
    )
    killed = fit(
        args, "killed", 2 * N, f"--trainer.callbacks+={kill}", run=run_cli_subprocess, check=False
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    resume(args, "killed", run=run_cli_subprocess)
    assert_same_end("whole", "resumed")


# --- (b) a recurrent model on contiguous streams, its state carried ------------------------

LSTM = [
    *("--config", config("lstm_shakespeare_char.yaml")),  # dropout 0.2
    *("--model.init_args.n_embd=16", "--model.init_args.n_hidden=16"),
    *("--data.init_args.block_size=8", "--data.init_args.batch_size=4"),
    "--data.init_args.eval_batch_size=4",
    "--trainer.check_val_every_n_epoch=null",  # every 5 steps, across epochs
    "--trainer.val_check_interval=5",
    "--trainer.limit_train_batches=7",  # resumed mid-epoch 1, goes on into epoch 2
    "--trainer.limit_val_batches=3",
    "--trainer.enable_progress_bar=false",
    "--trainer.callbacks.max_new_tokens=5",  # the last callback: TextSamples
]


def test_recurrent_stream_resumes_exactly_with_its_state(shakespeare_dir):
    assert_resume_is_exact(LSTM)


# --- (c) bucketed translation batches -------------------------------------------------------

TRANSLATOR = [
    *("--config", config("seq2seq_multi30k.yaml")),  # dropout and teacher forcing draw
    *("--model.init_args.n_embd=16", "--model.init_args.n_hidden=24"),
    "--model.init_args.n_layer=1",
    "--model.init_args.max_new_tokens=8",
    "--data.init_args.batch_size=8",
    "--trainer.check_val_every_n_epoch=null",
    "--trainer.val_check_interval=5",
    "--trainer.limit_train_batches=7",
    "--trainer.limit_val_batches=2",
    "--trainer.enable_progress_bar=false",
]


@pytest.mark.slow
def test_bucketed_translation_batches_resume_exactly():
    need_corpus("multi30k")
    assert_resume_is_exact(TRANSLATOR)


# --- under DDP: every rank's share of the streams and its recurrent state ----------------

DDP = ["--trainer.accelerator=cpu", "--trainer.strategy=ddp", "--trainer.devices=2"]


@pytest.mark.slow
def test_ddp_resumes_exactly(shakespeare_dir):
    # The LSTM: each rank's share of the data and its own carried hidden state (the random
    # windows' DistributedSampler is covered by the loader tests above).
    args = [*LSTM, *DDP]
    # DDP starts its workers by running the command line again: real processes throughout.
    # The whole run keeps the checkpoint of every validation: its step-N one is what a run
    # interrupted after step N leaves (one DDP run fewer than a separate interrupted run).
    keep_every = ["--last_checkpoint.filename=last-{step}", "--last_checkpoint.save_top_k=-1"]
    fit(args, "whole", 2 * N, *keep_every, run=run_cli_subprocess)
    by_step = {
        torch.load(p, weights_only=True)["global_step"]: p for p in Path("whole").rglob("last-*")
    }
    assert {N, 2 * N} <= by_step.keys(), sorted(by_step)
    interrupted = Path("first") / "checkpoints" / "last.ckpt"
    interrupted.parent.mkdir(parents=True)
    shutil.copy(by_step[N], interrupted)
    by_step[2 * N].rename(by_step[2 * N].with_name("last.ckpt"))
    resume(args, "first", run=run_cli_subprocess)
    assert_same_end("whole", "resumed")
