"""The README's quick start, timed as a newcomer runs it: the installed `seqmodels` command,
from a scratch folder outside the repository, its output piped.

    seqmodels fit --config gpt_shakespeare_char_cpu

(nanoGPT's CPU recipe: a 0.8M-parameter GPT, 2000 steps on Tiny Shakespeare characters,
samples of `ROMEO:` and a newline at every evaluation). Recorded: the wall time of the whole
command (imports, the character cache, training, the 8 evaluations with their samples,
checkpoints), when the first progress line came, every progress line, the last val/loss the
run printed and the last samples. W&B is off (`WANDB_MODE=disabled`), as in bench/cpu_recipe.py.

    python bench/quick_start.py                 # the quick start as the README gives it
    python bench/quick_start.py --steps 100     # a quick check (bench/results/quick_start-quick.json)

Figures go to bench/results/quick_start.json.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import machine_info, results_file, write_json_atomic

PROGRESS = re.compile(r"^step \d+/\d+ ")
SAMPLE = re.compile(r"^\[step (\d+), \w+\] ")
VAL_LOSS = re.compile(r"val/loss[:=]\s*([\d.]+)")


def seqmodels_command() -> Path:
    script = Path(sys.executable).parent / "seqmodels"
    if not script.exists():
        raise SystemExit(f"{script} is missing: install the suite with `pip install -e .`")
    return script


def run(args: list[str], folder: Path, env: dict[str, str]) -> tuple[float, list[tuple]]:
    """The command in `folder`, stdout and stderr piped together: (wall seconds, [(seconds
    since the start, line), ...]), each line shown as it comes."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        args, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines = []
    for line in proc.stdout:
        sys.stdout.write(line)
        lines.append((time.perf_counter() - start, line.rstrip("\n")))
    if proc.wait() != 0:
        raise SystemExit(f"{' '.join(args)} failed (exit status {proc.returncode})")
    return time.perf_counter() - start, lines


def last_samples(lines: list[str]) -> list[str]:
    """The samples of the last evaluation: from its first `[step N, strategy]` line to the next
    line that is not a sample (a progress line, Lightning's end of fit), at most 40 lines."""
    headers = [i for i, line in enumerate(lines) if SAMPLE.match(line)]
    if not headers:
        return []
    last_step = SAMPLE.match(lines[headers[-1]]).group(1)
    first = next(i for i in headers if SAMPLE.match(lines[i]).group(1) == last_step)
    samples = []
    for line in lines[first : first + 40]:
        if PROGRESS.match(line) or line.startswith("`Trainer.fit` stopped"):
            break
        samples.append(line)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="fewer steps: a quick check")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    command = [str(seqmodels_command()), "fit", "--config", "gpt_shakespeare_char_cpu"]
    if args.steps:
        command += [
            f"--trainer.max_steps={args.steps}",
            f"--trainer.val_check_interval={args.steps}",
        ]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    load_before = os.getloadavg()[0]  # other work on the machine slows the run down
    with tempfile.TemporaryDirectory(prefix="quick_start.") as folder:
        env.setdefault("XDG_CACHE_HOME", str(Path(folder) / "cache"))  # a first run's cache
        wall, timed = run(command, Path(folder), env)

    lines = [line for _, line in timed]
    progress = [(round(t, 1), line) for t, line in timed if PROGRESS.match(line)]
    val_losses = [float(m.group(1)) for line in lines for m in VAL_LOSS.finditer(line)]
    report = {
        "benchmark": "quick_start",
        "command": " ".join(["seqmodels", *command[1:]]) + "  (piped, from a scratch folder)",
        "machine": machine_info(),
        "load_average_1m": {"before": load_before, "after": os.getloadavg()[0]},
        "wall_s": round(wall, 1),
        "first_progress_line_s": progress[0][0] if progress else None,
        "progress_lines": len(progress),
        "progress": [line for _, line in progress],
        "val_loss_last_printed": val_losses[-1] if val_losses else None,
        "last_samples": last_samples(lines),
    }
    out = results_file(args.out, "quick_start", quick=bool(args.steps))
    write_json_atomic(out, report)
    print("\n| wall | first progress line | progress lines | last val/loss |\n|---|---|---|---|")
    print(
        f"| {report['wall_s']:.0f} s | {report['first_progress_line_s']} s | "
        f"{report['progress_lines']} | {report['val_loss_last_printed']} |"
    )
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
