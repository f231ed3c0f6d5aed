"""The spread of a headline figure: shipped configs trained and tested over several seeds with
`main.py repeat` (each seed a normal run, tested with its best checkpoint), their test metrics
as mean ± std. Writes bench/results/seeds-<config>.json, which bench/report.py puts in the
README's results table.

    python main.py repeat --config configs/<config>.yaml --seeds 1,2,3

    python bench/seeds.py mlp_names wavenet_names wide_deep_adult
    python bench/seeds.py mlp_names --seeds 1,2 --max-steps 500     # a quick check
    python bench/seeds.py lstm_wikitext2 --threads 2 \
        --set data.init_args.data_dir=$DATA_DIR/wikitext-2-mini --set trainer.max_epochs=6

`--set KEY=VALUE` passes `--KEY=VALUE` to every seed's run (and is recorded in the JSON).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from common import cli, machine_info, results_file, write_report

ROOT = Path(__file__).resolve().parents[1]
RUNS = ROOT / "bench" / "runs" / "seeds"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+", help="shipped config names")
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--max-steps", type=int, help="a quick check of the plumbing")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "WANDB_MODE": "offline"}
    for name in args.configs:
        folder = RUNS / name
        folder.mkdir(parents=True, exist_ok=True)
        extra = [f"--trainer.max_steps={args.max_steps}"] if args.max_steps else []
        command = [
            "repeat",
            "--config",
            str(ROOT / "configs" / f"{name}.yaml"),
            "--seeds",
            args.seeds,
            "--trainer.enable_progress_bar=false",
            "--trainer.logger=CSVLogger",
            *extra,
            *(f"--{setting}" for setting in args.set),
        ]
        seconds, _ = cli(command, folder, env)
        summary = json.loads((folder / "repeat" / name / "summary.json").read_text())
        write_report(
            results_file(None, f"seeds-{name}", bool(args.max_steps)),
            machine=machine_info(),
            config=f"configs/{name}.yaml",
            seeds=[int(s) for s in args.seeds.split(",")],
            settings=args.set,
            seconds=round(seconds, 1),
            metrics={
                k: {"mean": m["mean"], "std": m["std"], "values": m["values"]}
                for k, m in summary["metrics"].items()
            },
        )


if __name__ == "__main__":
    main()
