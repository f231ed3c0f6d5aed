"""`compile: true` against eager on nanoGPT's CPU recipe: steps/s and the loss curve.

One process trains the GPT of configs/gpt_shakespeare_char_cpu.yaml (4 layers, 128 dims,
context 64, batch 12, fp32) through Lightning's Trainer from the same seed on the same batches
with the recipe's AdamW, schedule and clipping: eager, and with the model's forward compiled
as `compile: true` compiles it (lit_models/compiling.py), `--rounds` times each, alternated.
The first `--warmup` steps (where the compiler runs) are not timed: their extra seconds are
reported as the compile cost. The clock covers the next `--steps` steps end to end; the ratio
is the median of the rounds'. Round 1's two loss curves must agree (compiled kernels fuse and
reorder float operations: not bit for bit; within 2% on every 25-step mean).

    python bench/compile_cpu.py                      # 300 timed steps each
    python bench/compile_cpu.py --steps 50 --warmup 5 --out /tmp/quick.json

Figures go to bench/results/compile_cpu.json. Timings on a busy machine are noisy.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from common import RESULTS, command_line, machine_info, write_json_atomic
from train_throughput import CONFIG, datamodule, default_data_dir, fit_timed, recipe

from lit_models import GPT
from lit_models.compiling import compile_forward, is_compiled

CURVE_TOLERANCE = 0.02  # relative, on the mean loss of every 25-step window


def run(args, model_args: dict, data_args: dict, compiled: bool) -> dict:
    dm = datamodule(args.data_dir, data_args)
    L.seed_everything(args.seed, verbose=False)
    model = GPT(vocab_size=dm.vocab_size, block_size=dm.block_size, **model_args)
    if compiled:
        compile_forward(model)
    start = time.perf_counter()
    clock = fit_timed(args, model, dm)
    summary = clock.clock.summary(dm.batch_size * dm.block_size)
    summary["warmup_s"] = clock.clock.stamps[0] - start  # data set-up, first steps, compiling
    summary["steps_per_s"] = 1000 / summary["ms_per_step"]
    summary["losses"] = [round(x, 5) for x in clock.clock.losses]
    summary["compiled"] = is_compiled(model)
    return summary


def window_means(losses: list[float], width: int = 25) -> list[float]:
    return [statistics.fmean(losses[i : i + width]) for i in range(0, len(losses), width)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=20, help="untimed steps (compiling)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each, alternated")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)"
    )
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--out", type=Path, default=RESULTS / "compile_cpu.json")
    args = parser.parse_args()
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")  # torch 2.13 vs lightning's pytree use
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)

    torch.set_num_threads(args.threads)
    model_args, data_args, recipe_steps = recipe(CONFIG)
    model_args["lr_decay_steps"] = recipe_steps  # the recipe's schedule in both runs
    runs = {"eager": [], "compiled": []}
    for r in range(args.rounds):
        # Alternated (E C, C E, ...): a change in the machine's load lands on both.
        for name in ("eager", "compiled") if r % 2 == 0 else ("compiled", "eager"):
            result = run(args, model_args, data_args, compiled=name == "compiled")
            runs[name].append(result)
            print(
                f"round {r + 1} {name:9s} {result['steps_per_s']:6.2f} steps/s  "
                f"{result['tokens_per_s']:8,.0f} tokens/s  first {args.warmup} steps "
                f"{result['warmup_s']:.1f} s  final loss {result['final_loss']:.4f}"
            )
    ratios = [
        c["steps_per_s"] / e["steps_per_s"]
        for e, c in zip(runs["eager"], runs["compiled"], strict=True)
    ]
    eager, compiled = runs["eager"][0], runs["compiled"][0]
    curve = [
        abs(c - e) / e
        for e, c in zip(
            window_means(eager["losses"]), window_means(compiled["losses"]), strict=True
        )
    ]
    report = {
        "command": command_line(),
        "machine": machine_info(),
        "config": str(CONFIG.relative_to(CONFIG.parents[1])),
        "steps": args.steps,
        "warmup": args.warmup,
        "threads": args.threads,
        "compiled_over_eager_steps_per_s": statistics.median(ratios),
        "round_ratios": ratios,
        "compile_cost_s": compiled["warmup_s"] - eager["warmup_s"],  # round 1: a cold compile
        "loss_curve_max_rel_diff": max(curve),
        "same_loss_curve": compiled["compiled"] and max(curve) < CURVE_TOLERANCE,
        "eager": runs["eager"],
        "compiled": runs["compiled"],
    }
    write_json_atomic(args.out, report)
    print(
        f"\ncompiled / eager: {report['compiled_over_eager_steps_per_s']:.2f}x steps/s; "
        f"compiling cost {report['compile_cost_s']:.0f} s; loss curves (25-step means) within "
        f"{max(curve):.2%} -> {'same' if report['same_loss_curve'] else 'DIFFERENT'}\n"
        f"written: {args.out}"
    )
    if not all(run["compiled"] for run in runs["compiled"]):
        raise SystemExit("the compiled run ran eager: see the warning above")


if __name__ == "__main__":
    main()
