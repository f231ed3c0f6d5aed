"""Zero- and few-shot sentiment by prompting the suite's GPT trained on review text.

configs/gpt_reviews.yaml (a 4-layer, 128-dim GPT with a 64-token context, trained on
movie-review sentences without their labels) is trained through the CLI as a user runs it,
in a fresh folder under bench/runs/few_shot/, then scored on SST-2's dev phrases with two
prompt formats, each with and without contextual calibration:

    python main.py fit      --config configs/gpt_reviews.yaml
    python main.py few_shot --config configs/gpt_reviews.yaml --ckpt_path <last.ckpt> --source sst2 \\
        --template ... --label_words ... --calibrate true

Prints a table and writes bench/results/few_shot.json and bench/results/few_shot.png.

    python bench/few_shot.py                       # train, then score
    python bench/few_shot.py --ckpt <last.ckpt>    # score a review GPT already trained
    python bench/few_shot.py --max-steps 50 --max-examples 40   # a quick check of the plumbing

A pretrained model (SmolLM2 and the like) is scored with `--init-from <its local folder>`,
read through `model.init_from` and its own tokenizer. A quick check writes
bench/results/few_shot-quick.json instead.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
from pathlib import Path

import torch
from common import RESULTS, cli, machine_info, results_file, write_report

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "gpt_reviews.yaml"
RUNS = ROOT / "bench" / "runs" / "few_shot"

# name -> (template, separator, label words). `labelled` is the usual instruction-like
# format; `natural` continues a review as the training text reads (one lower-cased,
# tokenized sentence a line), which suits a model that has only ever seen reviews.
FORMATS = {
    "labelled": ("Review: {text}\\nSentiment: {label}", "\\n\\n", ["negative", "positive"]),
    "natural": ("{text} all in all , a {label} movie .", "\\n", ["bad", "good"]),
}


def train(args, env) -> Path:
    folder = RUNS / f"gpt_reviews-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    folder.mkdir(parents=True)
    overrides = ["--trainer.enable_progress_bar=false"]
    if args.max_steps:
        overrides += [
            f"--trainer.max_steps={args.max_steps}",
            f"--trainer.val_check_interval={args.max_steps}",
            "--trainer.limit_val_batches=4",
        ]
    cli(["fit", "--config", str(CONFIG), *overrides], folder, env)
    (last,) = folder.rglob("checkpoints/last.ckpt")
    return last


def checkpoint_facts(ckpt: Path) -> dict:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    best = [
        v["best_model_score"]
        for k, v in state["callbacks"].items()
        if k.startswith("ModelCheckpoint{'monitor': 'val/loss'")
    ]
    return {
        "step": state["global_step"],
        "best_val_loss": float(best[0]) if best and best[0] is not None else None,
        # A tied output layer shares the embedding's storage: count each tensor once.
        "parameters": sum({v.data_ptr(): v.numel() for v in state["state_dict"].values()}.values()),
    }


def score(model_args: list[str], name: str, args, folder: Path, env) -> dict:
    template, separator, words = FORMATS[name]
    out = folder / name
    cli(
        [
            "few_shot",
            *model_args,
            f"--source={args.source}",
            f"--template={template}",
            f"--separator={separator}",
            f"--label_words=[{', '.join(words)}]",
            f"--shots=[{', '.join(map(str, args.shots))}]",
            f"--seeds=[{', '.join(map(str, args.seeds))}]",
            "--calibrate=true",
            f"--max_examples={args.max_examples}",
            "--trainer.logger=false",
            f"--output={out}",
        ],
        folder,
        env,
    )
    return json.loads((out / "few_shot.json").read_text())


def plot(reports: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, panels = plt.subplots(1, len(reports), figsize=(4 * len(reports), 3.2), dpi=90)
    for axes, (name, report) in zip(list(panels), reports.items(), strict=True):
        shots = [r["k"] for r in report["results"]]
        for key, label in (("accuracy", "label words' likelihood"), ("calibrated", "calibrated")):
            means = [r[key]["mean"] for r in report["results"]]
            stds = [r[key]["std"] for r in report["results"]]
            axes.errorbar(shots, means, yerr=stds, marker="o", capsize=3, label=label)
        axes.axhline(report["majority"], color="grey", linestyle="--", label="majority class")
        words = "/".join(report["label_words"])
        axes.set_title(f"{name}: {words}", fontsize=9)
        axes.set_xlabel("demonstrations k")
        axes.set_xticks(shots)
        axes.set_ylim(0.2, 1.0)
    panels[0].set_ylabel(f"accuracy ({report['source']}, {report['examples']} examples)")
    panels[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", type=Path, help="a trained review GPT (default: train one)")
    parser.add_argument("--init-from", help="a local Hugging Face model folder to score instead")
    parser.add_argument("--max-steps", type=int, help="train this many steps (a quick check)")
    parser.add_argument("--source", default="sst2", help="sst2, rt-polarity or a TSV file")
    parser.add_argument("--max-examples", type=int, default=500)
    parser.add_argument("--shots", type=int, nargs="+", default=[0, 1, 4, 8])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads")
    parser.add_argument("--out", type=Path, help="default: bench/results/few_shot.json")
    args = parser.parse_args()
    quick = bool(args.max_steps) or args.max_examples < 200
    out = results_file(args.out, "few_shot", quick)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "WANDB_MODE": "disabled"}
    folder = RUNS / f"score-{datetime.datetime.now():%Y%m%d-%H%M%S}"
    folder.mkdir(parents=True)

    if args.init_from:  # a pretrained model, its own tokenizer, a context for 8 shots
        model_args = [
            "--config",
            str(ROOT / "configs" / "smollm_shakespeare.yaml"),
            f"--model.init_args.init_from={args.init_from}",
            f"--data.init_args.pretrained_tokenizer={args.init_from}",
            "--data.init_args.block_size=1024",
        ]
        model = {"init_from": args.init_from}
    else:
        ckpt = args.ckpt or train(args, env)
        model_args = ["--config", str(CONFIG), f"--ckpt_path={ckpt.resolve()}"]
        model = {
            "config": "configs/gpt_reviews.yaml",
            "checkpoint": str(ckpt),
            **checkpoint_facts(ckpt),
        }
    reports = {name: score(model_args, name, args, folder, env) for name in FORMATS}

    print(f"\n{'format':<9} {'k':>2}  {'accuracy':<15} {'calibrated':<15} {'kept':>5}")
    for name, report in reports.items():
        for r in report["results"]:
            acc, cal = r["accuracy"], r["calibrated"]
            print(
                f"{name:<9} {r['k']:>2}  {acc['mean']:.3f} ± {acc['std']:.3f}   "
                f"{cal['mean']:.3f} ± {cal['std']:.3f}   {r['demonstrations_kept_mean']:>5.2f}"
            )
    png = out.with_suffix(".png")
    plot(reports, png)
    print(f"plot: {png.relative_to(ROOT) if png.is_relative_to(ROOT) else png}")
    write_report(
        out,
        model=model,
        formats={
            name: {"template": t, "separator": s, "label_words": w}
            for name, (t, s, w) in FORMATS.items()
        },
        machine=machine_info(),
        reports=reports,
    )


if __name__ == "__main__":
    RESULTS.mkdir(exist_ok=True)
    main()
