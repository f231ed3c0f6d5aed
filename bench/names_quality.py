"""Quality of the makemore models on names, against the figures of the lectures: val loss
<= 2.17 for the MLP (mlp_names) and <= 1.99 for the WaveNet (wavenet_names), in nats per
character with the end token counted.

Each config is trained through the CLI as a user runs it, in a fresh folder under bench/runs/:

    python main.py fit  --config configs/<name>.yaml
    python main.py test --config configs/<name>.yaml --ckpt_path <the best checkpoint>

val loss is the best checkpoint's (the score ModelCheckpoint kept), test loss that of the
test run (CSV logger), both over the whole split. Prints a table, samples a few names from
each best checkpoint, and writes bench/results/names_quality.json.

    python bench/names_quality.py                           # both configs as they are
    python bench/names_quality.py --only wavenet_names
    python bench/names_quality.py --max-steps 2000          # a quick check of the plumbing

A quick check (--max-steps) writes bench/results/names_quality-quick.json instead, so it never
overwrites the real figures. The runs use one intra-op thread (--threads): these models are
too small for more to help, and on a busy machine more make them much slower.
"""

from __future__ import annotations

import argparse
import datetime
import os
from pathlib import Path

import torch
import yaml
from common import cli, cli_test, machine_info, results_file, write_report

from datamodules import NamesDataModule
from lit_models import MLPLanguageModel, WaveNetLanguageModel
from lit_models.mlp_lm import sample_names

ROOT = Path(__file__).resolve().parents[1]

TARGETS = {"mlp_names": 2.17, "wavenet_names": 1.99}  # val loss, nats per character
MODELS = {"mlp_names": MLPLanguageModel, "wavenet_names": WaveNetLanguageModel}
RUNS = ROOT / "bench" / "runs" / "names_quality"


def checkpoint_facts(ckpt: Path) -> dict:
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    (key,) = (
        k for k in state["callbacks"] if k.startswith("ModelCheckpoint{'monitor': 'val/loss'")
    )
    return {"step": state["global_step"], "best": state["callbacks"][key]["best_model_score"]}


def run_config(name: str, max_steps: int | None, env: dict[str, str]) -> dict:
    config = ROOT / "configs" / f"{name}.yaml"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = RUNS / f"{name}-{stamp}"
    folder.mkdir(parents=True)
    overrides = ["--trainer.enable_progress_bar=false"]  # the validation lines stay readable
    if max_steps:
        interval = yaml.safe_load(config.read_text())["trainer"]["val_check_interval"]
        overrides += [
            f"--trainer.max_steps={max_steps}",
            f"--trainer.val_check_interval={min(interval, max(1, max_steps // 4))}",
        ]
    fit_s, fit_output = cli(["fit", "--config", str(config), *overrides], folder, env)
    (best,) = folder.rglob("checkpoints/best-*.ckpt")
    test_s, test = cli_test(config, best, folder, env)
    best_facts = checkpoint_facts(best)
    max_steps = max_steps or yaml.safe_load(config.read_text())["trainer"]["max_steps"]
    model = MODELS[name].load_from_checkpoint(best, map_location="cpu")
    return {
        "config": f"configs/{name}.yaml",
        "max_steps": max_steps,
        # Early stopping ends a run silently; reaching max_steps is announced.
        "stopped_early": f"max_steps={max_steps}` reached" not in fit_output,
        "best_step": best_facts["step"],
        "val_loss": float(best_facts["best"]),
        "target_val_loss": TARGETS[name],
        "meets_target": float(best_facts["best"]) <= TARGETS[name],
        "test_loss": test["test/loss"],
        "test_bpc": test.get("test/bpc"),
        "test_word_ppl": test.get("test/word_ppl"),
        "parameters": sum(p.numel() for p in model.parameters()),
        "fit_seconds": round(fit_s, 1),
        "test_seconds": round(test_s, 1),
        "samples": sample_names(model, NamesDataModule(), n=10, seed=1),
        "checkpoint": str(best.relative_to(ROOT)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(TARGETS), nargs="+", default=sorted(TARGETS))
    parser.add_argument("--max-steps", type=int, help="train this many steps (a quick check)")
    parser.add_argument("--threads", type=int, default=1, help="intra-op threads per run")
    parser.add_argument("--out", type=Path, help="default: bench/results/names_quality.json")
    args = parser.parse_args()
    out = results_file(args.out, "names_quality", quick=bool(args.max_steps))
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    torch.set_num_threads(args.threads)

    runs = [run_config(name, args.max_steps, env) for name in args.only]

    print(
        f"\n{'config':<26} {'best at':>7} {'val loss':>8} {'target':>6} {'ok':>3} "
        f"{'test loss':>9} {'params':>7} {'fit time':>9}"
    )
    for r in runs:
        print(
            f"{r['config']:<26} {r['best_step']:>7} {r['val_loss']:>8.4f} {r['target_val_loss']:>6.2f} "
            f"{'yes' if r['meets_target'] else 'NO':>3} {r['test_loss']:>9.4f} "
            f"{r['parameters']:>7} {r['fit_seconds']:>8.0f}s"
        )
        print(f"    {' '.join(r['samples'])}")
    write_report(out, machine=machine_info(), runs=runs)


if __name__ == "__main__":
    main()
