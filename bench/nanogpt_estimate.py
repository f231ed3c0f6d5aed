"""How noisy is nanoGPT's validation loss? nanoGPT reports `estimate_loss()`: the mean loss of
`eval_iters` random batches (the CPU recipe: 20 batches of 12 windows of 64 characters). The
suite's `val/loss` is one ordered pass over the whole validation split. This script takes a
checkpoint of configs/gpt_shakespeare_char_cpu.yaml, draws `--repeats` nanoGPT-style estimates
from the validation text, and prints their mean, standard deviation and the fraction at or
below nanoGPT's figure (1.886), so the gap between the two figures can be read against the
noise of the estimate.

    python bench/nanogpt_estimate.py --ckpt seqmodels/<run-id>/checkpoints/best-step2000-....ckpt

Figures go to bench/results/nanogpt_estimate.json.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import torch
import torch.nn.functional as F
from common import command_line, machine_info, write_json_atomic

from datamodules import TinyShakespeareDataModule
from lit_models import GPT

ROOT = Path(__file__).resolve().parents[1]

NANOGPT_VAL_LOSS = 1.886


@torch.no_grad()
def nanogpt_estimate(model, val: torch.Tensor, iters: int, batch: int, block: int, g) -> float:
    """nanoGPT's estimate_loss on one split: the mean of `iters` random batches' mean losses."""
    losses = []
    for _ in range(iters):
        starts = torch.randint(len(val) - block, (batch,), generator=g)
        x = torch.stack([val[i : i + block] for i in starts])
        y = torch.stack([val[i + 1 : i + 1 + block] for i in starts])
        losses.append(float(F.cross_entropy(model(x).flatten(0, 1), y.flatten())))
    return sum(losses) / len(losses)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True, help="a checkpoint of the CPU recipe")
    parser.add_argument("--data-dir", help="the tinyshakespeare folder (default: $DATA_DIR/...)")
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--eval-iters", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "nanogpt_estimate.json"))
    args = parser.parse_args()

    model = GPT.load_from_checkpoint(args.ckpt, map_location="cpu").eval()
    data = TinyShakespeareDataModule(
        data_dir=args.data_dir, tokenizer="char", block_size=model.block_size, batch_size=12
    )
    data.prepare_data()
    data.setup("fit")
    val = torch.as_tensor(data.encoded("val").ids)
    g = torch.Generator().manual_seed(args.seed)
    estimates = [
        nanogpt_estimate(model, val, args.eval_iters, data.batch_size, model.block_size, g)
        for _ in range(args.repeats)
    ]
    figures = {
        "mean": statistics.mean(estimates),
        "sd": statistics.stdev(estimates),
        "min": min(estimates),
        "max": max(estimates),
        "fraction_at_or_below_nanogpt": sum(e <= NANOGPT_VAL_LOSS for e in estimates)
        / len(estimates),
    }
    print(
        f"{args.repeats} nanoGPT-style estimates ({args.eval_iters} batches of "
        f"{data.batch_size} x {model.block_size}): mean {figures['mean']:.4f}, "
        f"sd {figures['sd']:.4f}, range {figures['min']:.4f}-{figures['max']:.4f}; "
        f"{100 * figures['fraction_at_or_below_nanogpt']:.1f}% at or below {NANOGPT_VAL_LOSS}"
    )
    write_json_atomic(
        Path(args.out),
        {
            "command": command_line(),
            "machine": machine_info(),
            "checkpoint": args.ckpt,
            "repeats": args.repeats,
            "eval_iters": args.eval_iters,
            "nanogpt_val_loss": NANOGPT_VAL_LOSS,
            **figures,
        },
    )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
