"""Training throughput of the GPT: Lightning's Trainer against a plain PyTorch loop.

Both loops train the same model (the sizes of configs/gpt_shakespeare_char_cpu.yaml: 4 layers,
4 heads, 128 dims, context 64, batch 12, no dropout, fp32) on Tiny Shakespeare characters for
the same number of steps, from the same seed, on the same batches, with the model's own
AdamW + warmup/cosine schedule and gradient clipping at 1.0:

  lightning  lightning.pytorch.Trainer (cpu, 32-true, no logger, no checkpoints, no progress
             bar, no validation); a callback stamps the end of every step.
  plain      for batch in loader: forward, cross-entropy, zero_grad, backward, clip, step.

The first `--warmup` steps are not timed; the clock covers the next `--steps` steps end to end
(data loading, hooks, scheduler and logging included). After a short untimed run of each,
runs alternate (L P, P L, ...) for `--rounds` rounds; the ratio reported is the median of the
rounds' ratios (each round's two runs see the same machine load), with the median tokens/s,
ms/step, model FLOP/s (tokens/s x model.flops_per_token()) and that as a fraction of the fp32
matmul peak measured here with torch.mm. Both loops must reach the same loss (a sanity check on the comparison).

    python bench/train_throughput.py                       # 300 timed steps x 3 rounds
    python bench/train_throughput.py --steps 50 --warmup 10 --rounds 1   # a quick look

Figures go to bench/results/train_throughput.json. Timings on a busy machine are noisy.
"""

from __future__ import annotations

import argparse
import datetime
import logging
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
import yaml
from common import QUIET_TRAINER, cpu_model, write_json_atomic

from core.constants import IGNORE_INDEX
from datamodules import TinyShakespeareDataModule
from lit_models import GPT

ROOT = Path(__file__).resolve().parents[1]

CONFIG = ROOT / "configs" / "gpt_shakespeare_char_cpu.yaml"
CLIP = 1.0


def default_data_dir() -> Path:
    root = os.environ.get("DATA_DIR") or ROOT.parent / "shared" / "data"
    return Path(root) / "tinyshakespeare"


def recipe(config: Path) -> tuple[dict, dict, int]:
    """Model and data arguments of the CPU recipe, and its max_steps (the cosine decay's end)."""
    cfg = yaml.safe_load(config.read_text())
    model = dict(cfg["model"]["init_args"])
    data = {k: cfg["data"]["init_args"][k] for k in ("tokenizer", "block_size", "batch_size")}
    return model, data, int(cfg["trainer"]["max_steps"])


class StepClock:
    """Time stamps at the end of each step from the last warmup step on, and every loss."""

    def __init__(self, warmup: int):
        self.warmup, self.stamps, self.losses, self.batch_sums = warmup, [], [], []

    def tick(self, step: int, loss: float, batch: dict[str, torch.Tensor]) -> None:
        if step >= self.warmup - 1:
            self.stamps.append(time.perf_counter())
        self.losses.append(loss)
        if step < 3:  # fingerprints of the first batches: both loops must see the same data
            self.batch_sums.append(int(batch["input_ids"].sum()))

    def summary(self, tokens_per_step: int) -> dict:
        times = [b - a for a, b in zip(self.stamps[:-1], self.stamps[1:], strict=True)]
        total = self.stamps[-1] - self.stamps[0]
        return {
            "tokens_per_s": tokens_per_step * len(times) / total,
            "ms_per_step": 1000 * total / len(times),
            "ms_per_step_median": 1000 * statistics.median(times),
            "first_loss": self.losses[0],
            "final_loss": statistics.fmean(self.losses[-10:]),
            "batch_sums": self.batch_sums,
            "threads": torch.get_num_threads(),
        }


class LightningClock(L.Callback):
    def __init__(self, seed: int, warmup: int):
        self.seed, self.clock = seed, StepClock(warmup)

    def on_fit_start(self, trainer, pl_module) -> None:
        torch.manual_seed(self.seed)  # the data order, as the plain loop seeds it

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.clock.tick(batch_idx, float(outputs["loss"]), batch)


def datamodule(data_dir: Path, data_args: dict) -> TinyShakespeareDataModule:
    return TinyShakespeareDataModule(data_dir=str(data_dir), **data_args)


def run_lightning(args, model_args: dict, data_args: dict) -> dict:
    dm = datamodule(args.data_dir, data_args)
    L.seed_everything(args.seed, verbose=False)
    model = GPT(vocab_size=dm.vocab_size, block_size=dm.block_size, **model_args)
    timer = fit_timed(args, model, dm)
    return timer.clock.summary(dm.batch_size * dm.block_size)


def fit_timed(args, model, dm) -> LightningClock:
    """`args.warmup + args.steps` training steps of `model` in Lightning's loop, on the CPU in
    fp32 without validation; the clock that timed them."""
    timer = LightningClock(args.seed, args.warmup)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        precision="32-true",
        max_steps=args.warmup + args.steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        gradient_clip_val=CLIP,
        **QUIET_TRAINER,
        callbacks=[timer],
    )
    trainer.fit(model, datamodule=dm)
    return timer


def run_plain(args, model_args: dict, data_args: dict) -> dict:
    dm = datamodule(args.data_dir, data_args)
    dm.prepare_data()
    dm.setup("fit")
    L.seed_everything(args.seed, verbose=False)
    model = GPT(vocab_size=dm.vocab_size, block_size=dm.block_size, **model_args)
    model.train()
    config = model.configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    clock = StepClock(args.warmup)
    torch.manual_seed(args.seed)
    batches = iter(dm.train_dataloader())
    for step in range(args.warmup + args.steps):
        batch = next(batches)
        logits = model(batch["input_ids"])
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(), batch["targets"].flatten(), ignore_index=IGNORE_INDEX
        )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        schedule.step()
        clock.tick(step, loss.item(), batch)
    return clock.summary(dm.batch_size * dm.block_size)


def matmul_peak(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 FLOP/s of an n x n x n torch.mm on this machine."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.mm(a, b)  # warm up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=30, help="untimed steps before them")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each loop, alternated")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument(
        "--config", type=Path, default=CONFIG, help="the recipe whose sizes are trained"
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "train_throughput.json"
    )
    args = parser.parse_args()
    if args.warmup < 1 or args.steps < 10:
        parser.error("need --warmup >= 1 and --steps >= 10")
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")  # torch 2.13 vs lightning's pytree use
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no banners per run

    model_args, data_args, recipe_steps = recipe(args.config)
    model_args["lr_decay_steps"] = recipe_steps  # the recipe's schedule, in both loops
    peak = matmul_peak()  # measured again at the end; the best one counts
    vocab_size = datamodule(args.data_dir, data_args).vocab_size
    flops_per_token = GPT(
        vocab_size=vocab_size, block_size=data_args["block_size"], **model_args
    ).flops_per_token()

    runs = {"lightning": [], "plain": []}
    loops = {"lightning": run_lightning, "plain": run_plain}
    # A short untimed run of each first: the process's first run pays one-off costs (lazy
    # imports, allocator growth, page faults) that would otherwise land on round 1's first loop.
    short = argparse.Namespace(**{**vars(args), "warmup": 1, "steps": 10})
    for loop in loops.values():
        loop(short, model_args, data_args)
    for r in range(args.rounds):
        order = ("lightning", "plain") if r % 2 == 0 else ("plain", "lightning")
        for name in order:
            result = loops[name](args, model_args, data_args)
            runs[name].append(result)
            print(
                f"round {r + 1}/{args.rounds} {name:9s} {result['tokens_per_s']:9,.0f} tokens/s  {result['ms_per_step']:6.2f} ms/step"
            )

    peak = max(peak, matmul_peak())

    def median(name: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[name])

    summary = {}
    for name in runs:
        tps = median(name, "tokens_per_s")
        summary[name] = {
            "tokens_per_s": tps,
            "ms_per_step": median(name, "ms_per_step"),
            "ms_per_step_median": median(name, "ms_per_step_median"),
            "model_flops_per_s": tps * flops_per_token,
            "fraction_of_matmul_peak": tps * flops_per_token / peak,
            "rounds": runs[name],
        }
    ratio = summary["lightning"]["tokens_per_s"] / summary["plain"]["tokens_per_s"]
    ratio_median_step = (
        summary["plain"]["ms_per_step_median"] / summary["lightning"]["ms_per_step_median"]
    )
    # Each round runs both loops back to back, so its ratio sees the same machine load.
    round_ratios = [
        lit["tokens_per_s"] / ref["tokens_per_s"]
        for lit, ref in zip(runs["lightning"], runs["plain"], strict=True)
    ]
    ratio_paired = statistics.median(round_ratios)

    lit, ref = runs["lightning"][0], runs["plain"][0]
    check = {
        "same_batches": lit["batch_sums"] == ref["batch_sums"],
        "first_loss_diff": abs(lit["first_loss"] - ref["first_loss"]),
        "final_loss_rel_diff": abs(lit["final_loss"] - ref["final_loss"]) / ref["final_loss"],
    }
    check["ok"] = (
        check["same_batches"]
        and check["first_loss_diff"] < 1e-4
        and check["final_loss_rel_diff"] < 0.02
    )

    rows = [
        ("tokens/s", "{:,.0f}", "tokens_per_s"),
        ("ms/step (mean)", "{:.2f}", "ms_per_step"),
        ("ms/step (median step)", "{:.2f}", "ms_per_step_median"),
        ("model GFLOP/s", "{:.2f}", "model_flops_per_s"),
        ("of fp32 matmul peak", "{:.1%}", "fraction_of_matmul_peak"),
    ]
    print(f"\n{'median of ' + str(args.rounds) + ' rounds':24s} {'lightning':>12s} {'plain':>12s}")
    for label, fmt, key in rows:
        scale = 1e-9 if key == "model_flops_per_s" else 1
        cells = (fmt.format(summary[n][key] * scale) for n in ("lightning", "plain"))
        print(f"{label:24s} " + " ".join(f"{c:>12s}" for c in cells))
    print(f"{'final loss (last 10)':24s} {lit['final_loss']:12.4f} {ref['final_loss']:12.4f}")
    print(
        f"\nlightning / plain: {ratio_paired:.3f} (median of the rounds' ratios: "
        + ", ".join(f"{r:.3f}" for r in round_ratios)
        + f"; target >= 0.95); {ratio:.3f} from the median tokens/s, "
        f"{ratio_median_step:.3f} by median step"
    )
    print(
        f"fp32 matmul peak: {peak / 1e9:.1f} GFLOP/s (torch.mm 2048^3); model: {flops_per_token / 1e6:.2f} MFLOP/token"
    )
    print(
        f"torch {torch.__version__}, lightning {L.__version__}, {torch.get_num_threads()} threads, {cpu_model()}"
    )
    verdict = "OK" if check["ok"] else "MISMATCH"
    print(
        f"loss check: {verdict} (same batches: {check['same_batches']}, first-step loss diff "
        f"{check['first_loss_diff']:.2e}, final loss rel. diff {check['final_loss_rel_diff']:.2%})"
    )

    write_json_atomic(
        args.out,
        {
            "benchmark": "train_throughput",
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "torch": torch.__version__,
            "lightning_version": L.__version__,
            "python": platform.python_version(),
            "threads": torch.get_num_threads(),
            "cpu": cpu_model(),
            "cpu_count": os.cpu_count(),
            "model": model_args,
            "data": data_args,
            "steps": args.steps,
            "warmup": args.warmup,
            "rounds": args.rounds,
            "seed": args.seed,
            "flops_per_token": flops_per_token,
            "matmul_peak_flops_per_s": peak,
            "lightning_over_plain": ratio_paired,
            "lightning_over_plain_per_round": round_ratios,
            "lightning_over_plain_from_median_tokens_per_s": ratio,
            "lightning_over_plain_by_median_step": ratio_median_step,
            "loss_check": check,
            **summary,
        },
    )
    print(f"wrote {args.out}")
    if not check["ok"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
