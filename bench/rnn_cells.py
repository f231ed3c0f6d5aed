"""Training speed of the hand-written recurrent cells against torch's fused ones.

    python bench/rnn_cells.py                          # 10 timed steps x 3 rounds per case
    python bench/rnn_cells.py --steps 5 --rounds 1     # a quick look

Sizes of configs/lstm_wikitext2.yaml: 2 layers of 200 units over 200-dim embeddings, batch
20 x 35 steps (BPTT), dropout 0.2, fp32 on the CPU. For each cell (rnn_tanh, rnn_relu, gru,
lstm) and implementation (torch: nn.RNN / nn.GRU / nn.LSTM; scratch: lit_models/modules/
recurrent.py), one training step is timed two ways:

  layers  the recurrent stack alone: forward + backward of its outputs;
  model   the whole language model (vocabulary `--vocab-size`, tied output layer): forward,
          cross-entropy, backward, gradient clipping at 0.25 and the SGD step.

tokens/s = batch x steps / seconds per step; the median over rounds is reported. Runs of the
two implementations alternate, so a change in machine load hits both alike; on a busy machine
the figures are still noisy. Results go to bench/results/rnn_cells.json.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from common import machine_info, write_json_atomic

from lit_models import RNNLanguageModel
from lit_models.modules.recurrent import CELLS, IMPLS

RESULTS = Path(__file__).parent / "results" / "rnn_cells.json"
SIZES = dict(n_layer=2, n_embd=200, n_hidden=200, dropout=0.2, tie_weights=True)
BATCH, BPTT = 20, 35


def make_model(cell: str, impl: str, vocab_size: int) -> RNNLanguageModel:
    torch.manual_seed(0)
    return RNNLanguageModel(vocab_size=vocab_size, cell=cell, impl=impl, **SIZES).train()


def layers_step(model: RNNLanguageModel, x: torch.Tensor) -> None:
    out, _ = model.rnn(x)
    out.sum().backward()


def model_step(model: RNNLanguageModel, ids: torch.Tensor, optimizer) -> None:
    logits, _ = model(ids[:, :-1])
    loss = F.cross_entropy(logits.flatten(0, 1), ids[:, 1:].flatten())
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.25)
    optimizer.step()


def seconds_per_step(step, warmup: int, steps: int) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--vocab-size", type=int, default=33278, help="33278: the full WikiText-2's words"
    )
    parser.add_argument("--threads", type=int, default=None, help="default: torch's own")
    parser.add_argument("--cells", nargs="+", default=list(CELLS), choices=CELLS)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")

    tokens = BATCH * BPTT
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, BPTT, SIZES["n_embd"], generator=generator)
    ids = torch.randint(0, args.vocab_size, (BATCH, BPTT + 1), generator=generator)
    rows = []
    for cell in args.cells:
        models = {impl: make_model(cell, impl, args.vocab_size) for impl in IMPLS}
        optimizers = {i: torch.optim.SGD(m.parameters(), lr=20.0) for i, m in models.items()}
        times = {(impl, part): [] for impl in IMPLS for part in ("layers", "model")}
        for r in range(args.rounds):
            order = IMPLS if r % 2 == 0 else IMPLS[::-1]
            for impl in order:
                m, opt = models[impl], optimizers[impl]
                times[impl, "layers"].append(
                    seconds_per_step(lambda m=m: layers_step(m, x), args.warmup, args.steps)
                )
                times[impl, "model"].append(
                    seconds_per_step(
                        lambda m=m, opt=opt: model_step(m, ids, opt), args.warmup, args.steps
                    )
                )
        row = {"cell": cell}
        for impl in IMPLS:
            for part in ("layers", "model"):
                row[f"{impl}_{part}_tokens_per_s"] = tokens / statistics.median(times[impl, part])
        for part in ("layers", "model"):
            row[f"{part}_slowdown"] = (
                row[f"torch_{part}_tokens_per_s"] / row[f"scratch_{part}_tokens_per_s"]
            )
        rows.append(row)

    print(
        f"2 x 200 units, emb 200, batch {BATCH} x {BPTT}, vocab {args.vocab_size}, fp32, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; tokens/s (training step)"
    )
    header = f"{'cell':>8} | {'layers: torch':>13} | {'scratch':>8} | {'gap':>5} | {'model: torch':>12} | {'scratch':>8} | {'gap':>5}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['cell']:>8} | {r['torch_layers_tokens_per_s']:>13,.0f} | "
            f"{r['scratch_layers_tokens_per_s']:>8,.0f} | {r['layers_slowdown']:>4.1f}x | "
            f"{r['torch_model_tokens_per_s']:>12,.0f} | {r['scratch_model_tokens_per_s']:>8,.0f} | "
            f"{r['model_slowdown']:>4.1f}x"
        )
    result = {
        "benchmark": "rnn_cells",
        "sizes": {**SIZES, "batch": BATCH, "bptt": BPTT, "vocab_size": args.vocab_size},
        "protocol": {"steps": args.steps, "warmup": args.warmup, "rounds": args.rounds},
        "machine": machine_info(),
        "rows": rows,
    }
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
