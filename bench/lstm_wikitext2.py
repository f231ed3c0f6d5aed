"""The LSTM of configs/lstm_wikitext2.yaml against pytorch/examples word_language_model, at
equal epochs, through the CLI as a user runs it:

    python main.py fit  --config configs/lstm_wikitext2.yaml \\
        --data.init_args.data_dir=$DATA_DIR/wikitext-2-mini --trainer.max_epochs=6
    python main.py test --config configs/lstm_wikitext2.yaml ... --ckpt_path <best checkpoint>

with a CSV logger in place of W&B so that the figures can be read back: val/ppl, the learning
rate and seconds (training + validation, `callbacks.EpochTimer`) for each epoch, and test/ppl
of the best checkpoint on val/loss (pytorch/examples tests its best model too).

The anchor (the issue): pytorch/examples itself, same recipe, on wikitext-2-mini reaches val
ppl 294 and test ppl 305 after 6 epochs at about 95 s an epoch on this project's CPU.

    python bench/lstm_wikitext2.py                   # 6 epochs: about 10 minutes on a quiet CPU
    python bench/lstm_wikitext2.py --max-epochs 1 --limit-batches 20   # checks the script only

Results go to bench/results/lstm_wikitext2.json (not with --limit-batches, unless --out says so).
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine_info, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "lstm_wikitext2.json"
CONFIG = ROOT / "configs" / "lstm_wikitext2.yaml"
ANCHOR = {"source": "pytorch/examples word_language_model", "epochs": 6}
ANCHOR |= {"val_ppl": 294.0, "test_ppl": 305.0, "s_per_epoch": 95.0}


def default_data_dir() -> Path:
    shared = Path(os.environ.get("DATA_DIR", ROOT.parent / "shared" / "data"))
    return shared / "wikitext-2-mini"


def run(args: list[str], cwd: Path) -> float:
    """`python main.py ARGS` in `cwd`; its wall time. Its output streams through."""
    start = time.perf_counter()
    subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, check=True)
    return time.perf_counter() - start


def read_metrics(save_dir: Path) -> list[dict[str, float]]:
    rows = []
    for path in sorted(save_dir.rglob("metrics.csv")):
        with path.open() as f:
            rows += [{k: float(v) for k, v in r.items() if v != ""} for r in csv.DictReader(f)]
    return rows


def per_epoch(rows: list[dict[str, float]]) -> list[dict[str, float]]:
    """One record per epoch: val metrics, seconds, learning rate (logged on separate rows)."""
    epochs: dict[int, dict[str, float]] = {}
    lrs = [r["lr-SGD"] for r in rows if "lr-SGD" in r]
    for r in rows:
        if "epoch" in r and ("val/ppl" in r or "time/epoch_s" in r):
            epochs.setdefault(int(r["epoch"]), {}).update(r)
    out = []
    for e, r in sorted(epochs.items()):
        out.append(
            {
                "epoch": e + 1,
                "lr": lrs[e] if e < len(lrs) else None,
                "val_loss": r.get("val/loss"),
                "val_ppl": r.get("val/ppl"),
                "s_per_epoch": r.get("time/epoch_s"),
            }
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument(
        "--limit-batches", type=int, default=None, help="train/val/test batches (a trial)"
    )
    parser.add_argument("--impl", choices=["torch", "scratch"], default="torch")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary one")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    trial = args.limit_batches is not None
    out = args.out or (None if trial else RESULTS)

    with tempfile.TemporaryDirectory(prefix="lstm_wikitext2-") as tmp:
        work = args.workdir or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        common = [
            "--config",
            str(CONFIG),
            f"--data.init_args.data_dir={args.data_dir}",
            f"--model.init_args.impl={args.impl}",
            "--trainer.logger=CSVLogger",
            f"--trainer.logger.save_dir={work / 'csv'}",
            "--trainer.enable_progress_bar=false",
        ]
        if trial:
            common += [
                f"--trainer.limit_{split}_batches={args.limit_batches}"
                for split in ("train", "val", "test")
            ]
        fit_s = run(["fit", *common, f"--trainer.max_epochs={args.max_epochs}"], work)
        epochs = per_epoch(read_metrics(work / "csv"))
        (best,) = sorted(work.rglob("best-*.ckpt"))
        run(["test", *common, f"--ckpt_path={best}"], work)
        test = {k: v for r in read_metrics(work / "csv") for k, v in r.items() if "test/" in k}

    print(f"\nLSTM 2 x 200, tied, SGD lr 20 /4 on plateau; {args.data_dir.name}, impl {args.impl}")
    print(f"{'epoch':>5} | {'lr':>7} | {'val loss':>8} | {'val ppl':>8} | {'s/epoch':>7}")
    for e in epochs:
        lr = f"{e['lr']:.4g}" if e["lr"] is not None else "-"
        print(
            f"{e['epoch']:>5} | {lr:>7} | {e['val_loss']:>8.4f} | {e['val_ppl']:>8.2f} | "
            f"{e['s_per_epoch']:>7.1f}"
        )
    print(f"test ppl (best checkpoint {best.name}): {test['test/ppl']:.2f}")
    print(
        f"anchor, pytorch/examples after {ANCHOR['epochs']} epochs: val ppl {ANCHOR['val_ppl']}, "
        f"test ppl {ANCHOR['test_ppl']}, {ANCHOR['s_per_epoch']} s/epoch"
    )
    result = {
        "benchmark": "lstm_wikitext2",
        "command": f"python main.py fit {' '.join(common)} --trainer.max_epochs={args.max_epochs}",
        "data": args.data_dir.name,
        "trial": trial,
        "epochs": epochs,
        "best_checkpoint": best.name,
        "test_ppl": test.get("test/ppl"),
        "test_loss": test.get("test/loss"),
        "fit_wall_s": fit_s,
        "anchor": ANCHOR,
        "machine": machine_info(),
    }
    if out is not None:
        write_json_atomic(out, result)
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
