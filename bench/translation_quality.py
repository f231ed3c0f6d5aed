"""Translation quality on Multi30k (German -> English, test_2016_flickr, 1,000 sentences)
against pytorch-seq2seq's notebooks: about 14 BLEU for the LSTM seq2seq (notebook 1), 28 for
GRU + Bahdanau attention (notebook 3), 36 for the Transformer (notebook 6).

Each config is trained through the CLI as a user runs it, in a fresh folder under bench/runs/,
then the best checkpoint (on val/loss, as the notebooks keep) is tested with beam search:

    python main.py fit  --config configs/<name>.yaml
    python main.py test --config configs/<name>.yaml --ckpt_path <best> --model.init_args.test_num_beams=5

Two BLEU figures come from the test run: `test/bleu`, SacreBLEU (13a) on detokenized text, the
figure papers report, and `test/bleu_tok`, BLEU on lower-cased word tokens, the figure the
notebooks print (torchtext's bleu_score on their spaCy tokens). The targets are the notebooks'
figures, so `bleu_tok` is the one to hold against them. Prints a table, writes
bench/results/translation_quality.json.

    python bench/translation_quality.py                                  # the three Multi30k configs
    python bench/translation_quality.py --config transformer_multi30k --max-epochs 20
    python bench/translation_quality.py --config seq2seq_multi30k --max-epochs 1 \\
        --limit-train-batches 2 --limit-val-batches 2 --limit-test-batches 2 \\
        --set model.init_args.max_new_tokens=10                           # a check of the plumbing

A quick check (any --limit-* or --set) writes bench/results/translation_quality-quick.json
instead, so it never overwrites the real figures.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the suite's packages, wherever this is run from

import torch  # noqa: E402
from common import cli, cli_test, machine_info, write_json_atomic  # noqa: E402

# pytorch-seq2seq's test BLEU (0..100) on Multi30k de->en; None: no published figure to meet.
TARGETS = {
    "seq2seq_multi30k": 14.0,
    "seq2seq_attention_multi30k": 28.0,
    "transformer_multi30k": 36.0,
    "transformer_tatoeba_zh_en": None,
}
DEFAULT_CONFIGS = ["seq2seq_multi30k", "seq2seq_attention_multi30k", "transformer_multi30k"]
RESULTS = ROOT / "bench" / "results"
RUNS = ROOT / "bench" / "runs" / "translation_quality"


def checkpoint_facts(ckpt: Path) -> dict:
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    (key,) = (k for k in state["callbacks"] if k.startswith("ModelCheckpoint") and "val/loss" in k)
    # tied weights (the shared embedding and the output layer) are one tensor, counted once
    tensors = {t.data_ptr(): t for t in state["state_dict"].values() if t.is_floating_point()}
    parameters = sum(t.numel() for t in tensors.values())
    return {
        "epoch": state["epoch"],
        "step": state["global_step"],
        "val_loss": float(state["callbacks"][key]["best_model_score"]),
        "parameters": parameters,
    }


def run_config(name: str, args: argparse.Namespace, env: dict[str, str]) -> dict:
    config = ROOT / "configs" / f"{name}.yaml"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = RUNS / f"{name}-{stamp}"
    folder.mkdir(parents=True)
    # The validation lines stay readable; --set overrides go to both runs.
    quiet = ["--trainer.enable_progress_bar=false", *(f"--{o}" for o in args.set)]
    fit_args = list(quiet)
    if args.max_epochs:
        fit_args.append(f"--trainer.max_epochs={args.max_epochs}")
    if args.limit_train_batches:
        fit_args.append(f"--trainer.limit_train_batches={args.limit_train_batches}")
    if args.limit_val_batches:
        fit_args.append(f"--trainer.limit_val_batches={args.limit_val_batches}")
    fit_s, _ = cli(["fit", "--config", str(config), *fit_args], folder, env)
    (best,) = folder.rglob("checkpoints/best-*.ckpt")

    test_args = [*quiet, f"--model.init_args.test_num_beams={args.num_beams}"]
    if args.limit_test_batches:
        test_args.append(f"--trainer.limit_test_batches={args.limit_test_batches}")
    test_s, test = cli_test(config, best, folder, env, test_args)
    facts = checkpoint_facts(best)
    target = TARGETS[name]
    return {
        "config": f"configs/{name}.yaml",
        "max_epochs": args.max_epochs,
        "best_epoch": facts["epoch"],
        "best_step": facts["step"],
        "val_loss": facts["val_loss"],
        "test_loss": test.get("test/loss"),
        "test_ppl": test.get("test/ppl"),
        "test_bleu": test.get("test/bleu"),
        "test_bleu_tok": test.get("test/bleu_tok"),
        "target_bleu": target,
        "meets_target": None if target is None else test.get("test/bleu_tok", 0.0) >= target,
        "num_beams": args.num_beams,
        "overrides": args.set,
        "parameters": facts["parameters"],
        "fit_seconds": round(fit_s, 1),
        "test_seconds": round(test_s, 1),
        "checkpoint": str(best.relative_to(ROOT)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(TARGETS), nargs="+", default=DEFAULT_CONFIGS)
    parser.add_argument("--max-epochs", type=int, help="default: the config's (10)")
    parser.add_argument("--num-beams", type=int, default=5, help="beam width of the test run")
    parser.add_argument("--limit-train-batches", type=int, help="a quick check of the plumbing")
    parser.add_argument("--limit-val-batches", type=int, help="a quick check of the plumbing")
    parser.add_argument("--limit-test-batches", type=int, help="a quick check of the plumbing")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a config override for fit and test, e.g. model.init_args.max_new_tokens=10",
    )
    parser.add_argument("--threads", type=int, help="intra-op threads per run (default: torch's)")
    parser.add_argument("--out", type=Path, help="default: bench/results/translation_quality.json")
    args = parser.parse_args()
    limits = (args.limit_train_batches, args.limit_val_batches, args.limit_test_batches)
    quick = any(limits) or bool(args.set)
    out = args.out or RESULTS / (
        "translation_quality-quick.json" if quick else "translation_quality.json"
    )
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)

    runs = [run_config(name, args, env) for name in args.config]

    print(
        f"\n{'config':<38} {'epoch':>5} {'val loss':>8} {'BLEU':>5} {'BLEU tok':>8} "
        f"{'target':>6} {'ok':>3} {'params':>9} {'fit time':>9}"
    )
    for r in runs:
        target = "-" if r["target_bleu"] is None else f"{r['target_bleu']:.0f}"
        ok = {None: "-", True: "yes", False: "NO"}[r["meets_target"]]
        print(
            f"{r['config']:<38} {r['best_epoch']:>5} {r['val_loss']:>8.4f} "
            f"{r['test_bleu']:>5.1f} {r['test_bleu_tok']:>8.1f} "
            f"{target:>6} {ok:>3} {r['parameters']:>9} {r['fit_seconds']:>8.0f}s"
        )
    report = {
        "command": "python bench/translation_quality.py " + " ".join(sys.argv[1:]),
        "machine": machine_info(),
        "bleu_scale": "0..100, as the notebooks print it",
        "runs": runs,
    }
    write_json_atomic(out, report)
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
