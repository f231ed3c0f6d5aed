"""Long-range memory: the tanh RNN against the GRU and the LSTM on the adding problem.

    python bench/long_range.py                                  # the figures of the README
    python bench/long_range.py --lengths 10 50 --max-steps 200  # a quick check

Three experiments, each trained in this process with the suite's pieces (LongRangeDataModule,
SequenceModel, callbacks.GradientFlow) under a Lightning Trainer, fp32 on the CPU:

1. Final MSE against length. Each cell (rnn_tanh, gru, lstm; torch's fused layers, 64
   units) learns the adding problem at each length (10, 50, 100, 200): Adam at lr 0.01,
   batch 64, gradients clipped at 1.0, 10,000 training sequences, validation on 1,000 every
   100 steps, at most `--max-steps` steps; a run stops once val/loss is below 0.001 (it has
   learned the task: the target is 0.01). The figure is test/loss (MSE) on 1,000 held-out
   sequences, next to the baseline of always answering 1 (MSE 1/6 = 0.167).
2. Why: for each cell at length 100, the norm of dLoss/dx_t, the gradient reaching each
   input step t (the mean over 256 test sequences), before the first step and after
   training. The loss reads the last state only, so this is how much of the answer's error
   gets back to step t, where a marked value may sit.
3. Exploding gradients: a tanh RNN whose recurrent matrix starts as 1.5 x an orthogonal
   matrix, trained by plain SGD (lr 0.05) at length 50, with and without clipping the
   gradient norm at 1.0; the training loss and GradientFlow's global norm (before clipping)
   of every step.

Writes bench/results/long_range.json and three plots beside it: long_range_mse.png,
long_range_gradients.png, long_range_exploding.png, and a copy of the heatmap GradientFlow
drew for the LSTM at length 100 (long_range_lstm_heatmap.png). Run folders (every run's
heatmap) go to bench/runs/long_range/ (ignored). A quick check (--max-steps, --lengths or
--cells other than the defaults) writes long_range-quick.json and -quick plots.
"""

from __future__ import annotations

import argparse
import copy
import math
import time
import warnings
from pathlib import Path

import lightning as L
import torch
from common import QUIET_TRAINER, RESULTS, machine_info, results_file, write_report
from lightning.pytorch.callbacks import EarlyStopping

from callbacks import GradientFlow
from callbacks.gradient_flow import log10
from core.files import atomic_path, atomic_write_bytes
from datamodules import LongRangeDataModule
from lit_models import SequenceModel

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "bench" / "runs" / "long_range"
CELLS = ["rnn_tanh", "gru", "lstm"]
LENGTHS = [10, 50, 100, 200]
BASELINE = 1 / 6  # Var(U + U'), U uniform on [0, 1): the MSE of always answering 1
LEARNED = 0.001  # a run stops once val/loss is below this
N_HIDDEN, BATCH, LEARNING_RATE, CLIP = 64, 64, 0.01, 1.0
LABELS = {"rnn_tanh": "tanh RNN", "gru": "GRU", "lstm": "LSTM"}


class LossCurve(L.Callback):
    """The training loss of every step."""

    def __init__(self):
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(outputs["loss"].item())


def trainer(folder: Path, callbacks: list, max_steps: int, **options) -> L.Trainer:
    return L.Trainer(
        **{**QUIET_TRAINER, "logger": False},
        default_root_dir=folder,
        accelerator="cpu",
        max_steps=max_steps,
        max_epochs=-1,
        callbacks=callbacks,
        **options,
    )


def learn(cell: str, seq_len: int, max_steps: int, profile: bool) -> dict:
    """One cell at one length (experiment 1): test MSE, steps taken, seconds; with `profile`
    the gradient reaching each input step before the first step and after training."""
    L.seed_everything(0, verbose=False)
    data = LongRangeDataModule(task="adding", seq_len=seq_len, batch_size=BATCH, seed=0)
    model = SequenceModel(input_size=2, cell=cell, n_hidden=N_HIDDEN, learning_rate=LEARNING_RATE)
    stop = EarlyStopping("val/loss", patience=10**6, stopping_threshold=LEARNED)
    flow = GradientFlow(every_n_steps=100)
    run = trainer(
        RUNS / f"{cell}-{seq_len}",
        [stop, flow],
        max_steps,
        gradient_clip_val=CLIP,
        val_check_interval=100,
        check_val_every_n_epoch=None,
        num_sanity_val_steps=0,
    )
    first = input_gradients(model, data) if profile else None
    start = time.perf_counter()
    run.fit(model, data)
    seconds = time.perf_counter() - start
    (test,) = run.test(model, data, verbose=False)
    trained = input_gradients(model, data) if profile else None
    return {
        "cell": cell,
        "seq_len": seq_len,
        "test_mse": test["test/loss"],
        "steps": run.global_step,
        "learned": test["test/loss"] < 0.01,
        "seconds": round(seconds, 1),
        "ms_per_step": round(1000 * seconds / max(run.global_step, 1), 1),
        "heatmap": str(flow.heatmap_path.relative_to(ROOT)) if flow.heatmap_path else None,
        "input_gradients": {"first_step": first, "trained": trained} if profile else None,
    }


def input_gradients(model: SequenceModel, data: LongRangeDataModule, n: int = 256) -> list[float]:
    """||dLoss/dx_t|| for each input step t, averaged over the first `n` test sequences
    (experiment 2): how much of the answer's error reaches step t."""
    data.setup("test")
    batch = {k: v[:n] for k, v in data.test_set.tensors.items()}
    # In float64: a tanh RNN's gradient 100 steps back is below float32's smallest number.
    model = copy.deepcopy(model).double()
    inputs = batch["inputs"].double().requires_grad_(True)
    model.loss(model(inputs), batch["targets"].double()).backward()
    return inputs.grad.norm(dim=-1).mean(0).tolist()  # [T]


def exploding(clip: float | None, max_steps: int, seq_len: int = 50) -> dict:
    """A tanh RNN with a large recurrent init under plain SGD (experiment 3)."""
    L.seed_everything(0, verbose=False)
    data = LongRangeDataModule(task="adding", seq_len=seq_len, batch_size=BATCH, seed=0)
    model = SequenceModel(
        input_size=2,
        cell="rnn_tanh",
        n_hidden=N_HIDDEN,
        recurrent_gain=1.5,
        optimizer="sgd",
        learning_rate=0.05,
    )
    curve, flow = LossCurve(), GradientFlow(every_n_steps=10)
    run = trainer(
        RUNS / f"exploding-clip{clip}",
        [curve, flow],
        max_steps,
        gradient_clip_val=clip,
        limit_val_batches=0,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the unclipped run's NaN loss, on purpose
        run.fit(model, data)
    norms = [norm for _, norm in flow.history.global_norms]
    finite = [loss for loss in curve.losses if math.isfinite(loss)]
    return {
        "clip": clip,
        "losses": curve.losses,
        "global_norms": norms,
        "first_non_finite_step": next(
            (i for i, loss in enumerate(curve.losses) if not math.isfinite(loss)), None
        ),
        "final_loss": curve.losses[-1],
        "mean_loss_last_50": sum(finite[-50:]) / max(len(finite[-50:]), 1),
    }


# --- plots -----------------------------------------------------------------------------------
def save(figure, path: Path) -> None:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=80, format="png")
    print(f"written: {path}")


def plot_mse(rows: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6, 4))
    ax = figure.add_subplot()
    for cell in dict.fromkeys(r["cell"] for r in rows):
        mine = [r for r in rows if r["cell"] == cell]
        ax.plot(
            [r["seq_len"] for r in mine], [r["test_mse"] for r in mine], "o-", label=LABELS[cell]
        )
    ax.axhline(BASELINE, color="gray", linestyle="--", label="always 1 (0.167)")
    ax.axhline(0.01, color="gray", linestyle=":", label="target 0.01")
    ax.set_yscale("log")
    ax.set_xlabel("sequence length")
    ax.set_ylabel("test MSE")
    ax.set_title("Adding problem: final MSE against length", fontsize=10)
    ax.legend(fontsize=8)
    save(figure, path)


def plot_input_gradients(rows: list[dict], seq_len: int, path: Path) -> None:
    """Two heatmaps, the cells down and the input steps across: log10 ||dLoss/dx_t|| before
    the first step and after training, on one colour scale."""
    from matplotlib.figure import Figure

    mine = [r for r in rows if r["seq_len"] == seq_len]
    panels = {
        when: log10([r["input_gradients"][when] for r in mine])
        for when in ("first_step", "trained")
    }
    low = min(t.min().item() for t in panels.values())
    high = max(t.max().item() for t in panels.values())
    figure = Figure(figsize=(10, 2.8), layout="constrained")
    for column, (when, table) in enumerate(panels.items()):
        ax = figure.add_subplot(1, 2, column + 1)
        image = ax.imshow(
            table.numpy(), aspect="auto", interpolation="nearest", vmin=low, vmax=high
        )
        ax.set_yticks(range(len(mine)), [LABELS[r["cell"]] if column == 0 else "" for r in mine])
        ax.set_xlabel(f"input step t (the answer is read after step {seq_len})")
        title = "at the first step" if when == "first_step" else "after training"
        ax.set_title(f"log10 ||dLoss/dx_t||, {title}", fontsize=10)
    figure.colorbar(image, ax=figure.axes, fraction=0.03)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=80, format="png")
    print(f"written: {path}")


def plot_exploding(runs: list[dict], path: Path) -> None:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(9, 3.4))
    for column, (key, label) in enumerate(
        (("losses", "training loss (MSE)"), ("global_norms", "gradient norm before clipping"))
    ):
        ax = figure.add_subplot(1, 2, column + 1)
        for run in runs:
            values = [v if math.isfinite(v) else float("nan") for v in run[key]]
            name = "no clipping" if run["clip"] is None else f"clipped at {run['clip']}"
            ax.plot(range(len(values)), values, label=name, linewidth=1)
            if run["first_non_finite_step"] is not None:
                ax.axvline(run["first_non_finite_step"], color="red", linewidth=0.8, linestyle=":")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_title(label, fontsize=10)
        ax.legend(fontsize=8)
    figure.suptitle("tanh RNN, recurrent init 1.5 x orthogonal, SGD lr 0.05", fontsize=10)
    save(figure, path)


def show_heatmap(rows: list[dict], cell: str, seq_len: int, path: Path) -> None:
    """A copy of the heatmap GradientFlow drew for one run, beside the plots."""
    for row in rows:
        if (row["cell"], row["seq_len"]) == (cell, seq_len) and row["heatmap"]:
            atomic_write_bytes(path, (ROOT / row["heatmap"]).read_bytes())
            print(f"written: {path}")


# --- the report --------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", nargs="+", default=CELLS, choices=CELLS)
    parser.add_argument("--lengths", nargs="+", type=int, default=LENGTHS)
    parser.add_argument("--max-steps", type=int, default=1500, help="per run of experiment 1")
    parser.add_argument("--explode-steps", type=int, default=300, help="per run of experiment 3")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads")
    parser.add_argument("--out", type=Path, help="default: bench/results/long_range.json")
    args = parser.parse_args()
    quick = args.max_steps != 1500 or args.lengths != LENGTHS or args.cells != CELLS
    out = results_file(args.out, "long_range", quick)
    suffix = "-quick" if quick else ""
    torch.set_num_threads(args.threads)
    start = time.perf_counter()

    profile_len = 100 if 100 in args.lengths else args.lengths[-1]
    rows = []
    for cell in args.cells:
        for seq_len in args.lengths:
            row = learn(cell, seq_len, args.max_steps, profile=seq_len == profile_len)
            rows.append(row)
            print(
                f"{LABELS[cell]:>8} T={seq_len:<4} test MSE {row['test_mse']:.4f}  "
                f"{row['steps']} steps  {row['seconds']:.0f} s",
                flush=True,
            )
    explode = [exploding(None, args.explode_steps), exploding(CLIP, args.explode_steps)]

    print(f"\nAdding problem, test MSE (baseline {BASELINE:.3f}; target < 0.01):")
    print(f"{'cell':>8} " + " ".join(f"{'T=' + str(t):>14}" for t in args.lengths))
    for cell in args.cells:
        cells = {r["seq_len"]: r for r in rows if r["cell"] == cell}
        print(
            f"{LABELS[cell]:>8} "
            + " ".join(
                f"{cells[t]['test_mse']:>7.4f} ({cells[t]['steps']:>4})" for t in args.lengths
            )
        )
    print("(steps taken in brackets: a run stops once val/loss < 0.001)")
    print(f"\n||dLoss/dx_t|| at t = 0, T/2, T-1 (T = {profile_len}), first step -> trained:")
    for row in (r for r in rows if r["seq_len"] == profile_len):
        first, trained = (row["input_gradients"][k] for k in ("first_step", "trained"))
        print(
            f"{LABELS[row['cell']]:>8}  "
            + "  ".join(f"{first[i]:.1e} -> {trained[i]:.1e}" for i in (0, profile_len // 2, -1))
        )
    print("\nExploding gradients (tanh RNN, gain 1.5, SGD 0.05, T=50):")
    for run in explode:
        name = "no clipping" if run["clip"] is None else f"clip {run['clip']}"
        print(
            f"  {name:>12}: first norm {run['global_norms'][0]:.1f}, max norm "
            f"{max(n for n in run['global_norms'] if math.isfinite(n)):.3g}, first non-finite "
            f"loss at step {run['first_non_finite_step']}, mean loss of the last 50 finite "
            f"steps {run['mean_loss_last_50']:.3g}"
        )

    plot_mse(rows, RESULTS / f"long_range_mse{suffix}.png")
    plot_input_gradients(rows, profile_len, RESULTS / f"long_range_gradients{suffix}.png")
    plot_exploding(explode, RESULTS / f"long_range_exploding{suffix}.png")
    show_heatmap(rows, "lstm", profile_len, RESULTS / f"long_range_lstm_heatmap{suffix}.png")
    write_report(
        out,
        machine=machine_info(),
        settings={
            "n_hidden": N_HIDDEN,
            "batch_size": BATCH,
            "learning_rate": LEARNING_RATE,
            "gradient_clip_val": CLIP,
            "max_steps": args.max_steps,
            "stop_below_val_loss": LEARNED,
            "train_size": 10_000,
            "test_size": 1_000,
        },
        baseline_mse=BASELINE,
        adding=rows,
        input_gradients_seq_len=profile_len,
        exploding=explode,
        wall_seconds=round(time.perf_counter() - start),
    )


if __name__ == "__main__":
    main()
