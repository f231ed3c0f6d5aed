"""Translation quality on Multi30k (German -> English, test_2016_flickr, 1,000 sentences)
against pytorch-seq2seq's notebooks: about 14 BLEU for the LSTM seq2seq (notebook 1), 28 for
GRU + Bahdanau attention (notebook 3), 36 for the Transformer (notebook 6).

Each config is trained through the CLI as a user runs it, in a fresh folder under bench/runs/,
then the best checkpoint (on val/loss, as the notebooks keep) is tested with beam search:

    python main.py fit  --config configs/<name>.yaml
    python main.py test --config configs/<name>.yaml --ckpt_path <best> --model.init_args.test_num_beams=5

Four figures come from the test run, all 0..100 on the detokenized translations against the
references as the corpus writes them: `test/bleu`, SacreBLEU (13a) lower-cased when the data
lower-cases (the LSTM and GRU configs do, the Transformer's BPE does not; torchmetrics
computes it), `test/bleu_tok`, BLEU on
lower-cased word tokens, the figure the notebooks print (torchtext's bleu_score on their spaCy
tokens), and, from the `sacrebleu` package itself, `test/sacrebleu_cased` (BLEU 13a, cased, the
figure papers report) and `test/chrf` (chrF2), with sacrebleu's signatures in the JSON. The
targets are the notebooks' figures, so `bleu_tok` is the one to hold against them. Prints a
table, writes bench/results/translation_quality.json.

    python bench/translation_quality.py                                  # the three Multi30k configs
    python bench/translation_quality.py --config transformer_multi30k --max-epochs 20
    python bench/translation_quality.py --config seq2seq_multi30k --max-epochs 1 \\
        --limit-train-batches 2 --limit-val-batches 2 --limit-test-batches 2 \\
        --set model.init_args.max_new_tokens=10                           # a check of the plumbing

Another seed of a config: a file of its own per seed, which bench/report.py puts with the
config's other runs of the same setting as one mean ± std per figure:

    python bench/translation_quality.py --config transformer_multi30k --threads 1 \\
        --set seed_everything=1 --out bench/results/translation_quality-transformer_multi30k-seed1.json

A quick check (any --limit-* or --set, unless --out names the file) writes
bench/results/translation_quality-quick.json instead, so it never overwrites the real figures.

A fit too long for one sitting (the recurrent models on a CPU) can be stopped and taken up
again from the last epoch it finished: --resume continues the fit in the same folder from its
last.ckpt (same W&B run id, so the checkpoints' best score carries over), then tests. Its fit
time adds up the sittings (fit_sittings.json in the folder), a stopped one up to its last.ckpt.

    python bench/translation_quality.py --resume bench/runs/translation_quality/<config>-<stamp> \\
        --threads 1 --out bench/results/translation_quality-<config>.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import time
from pathlib import Path

import torch
from common import cli, cli_test, machine_info, results_file, write_json_atomic, write_report

from lit_models.modules.sacrebleu_metrics import SacreBLEU, SacreChrF

ROOT = Path(__file__).resolve().parents[1]

# pytorch-seq2seq's test BLEU (0..100) on Multi30k de->en; None: no published figure to meet.
TARGETS = {
    "seq2seq_multi30k": 14.0,
    "seq2seq_attention_multi30k": 28.0,
    "transformer_multi30k": 36.0,
    "transformer_tatoeba_zh_en": None,
}
# What each figure of a run is, exactly (bench/report.py names them so).
METRICS = {
    "test_bleu": "SacreBLEU 13a (torchmetrics), lower-cased when the run's lowercase is, beam 5",
    "test_bleu_tok": "BLEU on lower-cased word tokens (the notebooks' torchtext bleu_score), beam 5",
    "test_sacrebleu_cased": "SacreBLEU 13a cased (the sacrebleu package), beam 5",
    "test_chrf": "chrF2 (the sacrebleu package), beam 5",
}
DEFAULT_CONFIGS = ["seq2seq_multi30k", "seq2seq_attention_multi30k", "transformer_multi30k"]
RUNS = ROOT / "bench" / "runs" / "translation_quality"


def checkpoint_facts(ckpt: Path) -> dict:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    (key,) = (k for k in state["callbacks"] if k.startswith("ModelCheckpoint") and "val/loss" in k)
    # tied weights (the shared embedding and the output layer) are one tensor, counted once
    tensors = {t.data_ptr(): t for t in state["state_dict"].values() if t.is_floating_point()}
    parameters = sum(t.numel() for t in tensors.values())
    data = state.get("datamodule_hyper_parameters") or {}
    return {
        "epoch": state["epoch"],
        "step": state["global_step"],
        "val_loss": float(state["callbacks"][key]["best_model_score"]),
        "parameters": parameters,
        "tokenizer": data.get("tokenizer"),
        "lowercase": data.get("lowercase"),
    }


STAMP = "%Y%m%d-%H%M%S"  # a run folder is <config>-<stamp>, the fit's start
STAMP_CHARS = len("-20261123-211207")
SITTINGS = "fit_sittings.json"  # in a run folder: the seconds of each sitting of its fit


def resume_point(folder: Path) -> tuple[str, list[str], Path]:
    """For a stopped run folder: its config name, the fit options that continue it from its
    last.ckpt (same W&B run id, so the same checkpoint folder), and that last.ckpt."""
    name = folder.name[:-STAMP_CHARS]
    if name not in TARGETS:
        raise SystemExit(
            f"--resume {folder}: expected a folder named <config>-<stamp> from this bench"
        )
    last = sorted(folder.rglob("checkpoints/last.ckpt"), key=lambda p: p.stat().st_mtime)
    if not last:
        raise SystemExit(f"--resume {folder}: no checkpoints/last.ckpt under it; start afresh")
    ckpt = last[-1]
    run_id = ckpt.parent.parent.name  # <save_dir>/<project>/<run id>/checkpoints/last.ckpt
    return name, [f"--ckpt_path={ckpt}", f"--trainer.logger.init_args.id={run_id}"], ckpt


def read_sittings(folder: Path) -> dict:
    """{"seconds": [one per finished sitting], "open_since": start of a sitting that never
    finished (stopped), or None}. A folder without the file has one open sitting since the
    start in its name."""
    path = folder / SITTINGS
    if path.exists():
        return json.loads(path.read_text())
    started = datetime.datetime.strptime(folder.name[-STAMP_CHARS + 1 :], STAMP)
    return {"seconds": [], "open_since": started.timestamp()}


def begin_sitting(folder: Path, resumed_from: Path | None) -> dict:
    """Close a stopped sitting at its last checkpoint (what came after it is lost, so it is
    not counted), open a new one, and write the record."""
    sittings = read_sittings(folder) if resumed_from else {"seconds": []}
    if sittings.get("open_since") is not None:
        # A sitting stopped before its first checkpoint saved nothing: it counts zero.
        kept = max(0.0, resumed_from.stat().st_mtime - sittings["open_since"])
        sittings["seconds"].append(round(kept, 1))
    sittings["open_since"] = time.time()
    write_json_atomic(folder / SITTINGS, sittings)
    return sittings


def end_sitting(folder: Path, sittings: dict, seconds: float) -> float:
    """Record a finished sitting; the fit's seconds over all its sittings."""
    sittings["seconds"].append(round(seconds, 1))
    sittings["open_since"] = None
    write_json_atomic(folder / SITTINGS, sittings)
    return sum(sittings["seconds"])


def run_config(
    name: str, args: argparse.Namespace, env: dict[str, str], resume: Path | None = None
) -> dict:
    config = ROOT / "configs" / f"{name}.yaml"
    resume_args, last_ckpt = [], None
    if resume is None:
        folder = RUNS / f"{name}-{datetime.datetime.now().strftime(STAMP)}"
        folder.mkdir(parents=True)
    else:
        folder = resume.resolve()
        _, resume_args, last_ckpt = resume_point(folder)
    sittings = begin_sitting(folder, last_ckpt)
    # The validation lines stay readable; --set overrides go to both runs.
    quiet = ["--trainer.enable_progress_bar=false", *(f"--{o}" for o in args.set)]
    fit_args = [*quiet, *resume_args]
    if args.max_epochs:
        fit_args.append(f"--trainer.max_epochs={args.max_epochs}")
    if args.limit_train_batches:
        fit_args.append(f"--trainer.limit_train_batches={args.limit_train_batches}")
    if args.limit_val_batches:
        fit_args.append(f"--trainer.limit_val_batches={args.limit_val_batches}")
    fit_s, _ = cli(["fit", "--config", str(config), *fit_args], folder, env)
    fit_s = end_sitting(folder, sittings, fit_s)
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
        "test_sacrebleu_cased": test.get("test/sacrebleu_cased"),
        "test_chrf": test.get("test/chrf"),
        "target_bleu": target,
        "meets_target": None if target is None else test.get("test/bleu_tok", 0.0) >= target,
        "num_beams": args.num_beams,
        "overrides": args.set,
        "tokenizer": facts["tokenizer"],
        "lowercase": facts["lowercase"],  # test_bleu is lower-cased only when this is true
        "parameters": facts["parameters"],
        "fit_seconds": round(fit_s, 1),
        "fit_sittings": sittings["seconds"],
        "test_seconds": round(test_s, 1),
        "checkpoint": str(best.relative_to(ROOT) if best.is_relative_to(ROOT) else best),
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
    parser.add_argument(
        "--resume", type=Path, metavar="FOLDER", help="continue a stopped run (see above)"
    )
    parser.add_argument("--threads", type=int, help="intra-op threads per run (default: torch's)")
    parser.add_argument("--out", type=Path, help="default: bench/results/translation_quality.json")
    args = parser.parse_args()
    limits = (args.limit_train_batches, args.limit_val_batches, args.limit_test_batches)
    quick = any(limits) or bool(args.set)
    out = results_file(args.out, "translation_quality", quick)
    env = dict(os.environ)
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
        torch.set_num_threads(args.threads)

    if args.resume:
        runs = [run_config(resume_point(args.resume)[0], args, env, resume=args.resume)]
    else:
        runs = [run_config(name, args, env) for name in args.config]

    print(
        f"\n{'config':<38} {'epoch':>5} {'val loss':>8} {'BLEU':>5} {'BLEU tok':>8} "
        f"{'cased':>5} {'chrF':>5} {'target':>6} {'ok':>3} {'params':>9} {'fit time':>9}"
    )
    for r in runs:
        target = "-" if r["target_bleu"] is None else f"{r['target_bleu']:.0f}"
        ok = {None: "-", True: "yes", False: "NO"}[r["meets_target"]]
        print(
            f"{r['config']:<38} {r['best_epoch']:>5} {r['val_loss']:>8.4f} "
            f"{r['test_bleu']:>5.1f} {r['test_bleu_tok']:>8.1f} "
            f"{r['test_sacrebleu_cased'] or 0:>5.1f} {r['test_chrf'] or 0:>5.1f} "
            f"{target:>6} {ok:>3} {r['parameters']:>9} {r['fit_seconds']:>8.0f}s"
        )
    write_report(
        out,
        machine=machine_info(),
        bleu_scale="0..100, as the notebooks print it",
        metrics=METRICS,
        signatures={"sacrebleu_cased": SacreBLEU().signature, "chrf": SacreChrF().signature},
        runs=runs,
    )


if __name__ == "__main__":
    main()
