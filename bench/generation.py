"""Generation speed with and without the KV cache, in one run on one machine.

    python bench/generation.py [--ckpt path/to/gpt_shakespeare_char.ckpt] [--new-tokens 64 256 1024]

The model is the Shakespeare GPT of configs/gpt_shakespeare_char.yaml (6 layers, 6 heads,
384 dims, context 256; random weights unless --ckpt is given: speed does not depend on them).
Greedy decoding of one prompt, fp32 on the CPU. Past 256 tokens the context window slides
(see lit_models/gpt.py), with and without the cache alike. Writes bench/results/generation.json.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from common import machine_info, write_json_atomic

from lit_models import GPT
from lit_models.modules.decoding import generate

RESULTS = Path(__file__).parent / "results" / "generation.json"


def load_model(ckpt: str | None) -> GPT:
    if ckpt:
        return GPT.load_from_checkpoint(ckpt, map_location="cpu").eval()
    torch.manual_seed(0)
    return GPT(vocab_size=66, block_size=256, n_layer=6, n_head=6, n_embd=384, dropout=0.0).eval()


def tokens_per_second(
    model: GPT, prompt: list[int], new_tokens: int, kv_cache: bool
) -> tuple[float, list[int]]:
    model.hparams.kv_cache = kv_cache
    start = time.perf_counter()
    out = generate(model, [prompt], max_new_tokens=new_tokens)[0]
    return new_tokens / (time.perf_counter() - start), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", help="a GPT checkpoint (default: random weights)")
    parser.add_argument("--new-tokens", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    model = load_model(args.ckpt)
    prompt = [1, 2, 3, 4, 5, 6, 7, 8]
    tokens_per_second(model, prompt, 16, True)  # warm up allocators and kernels
    rows = []
    for n in args.new_tokens:
        cached, out_cached = tokens_per_second(model, prompt, n, kv_cache=True)
        recomputed, out_recomputed = tokens_per_second(model, prompt, n, kv_cache=False)
        rows.append(
            {
                "new_tokens": n,
                "cached_tokens_per_s": cached,
                "recompute_tokens_per_s": recomputed,
                "speedup": cached / recomputed,
                "same_tokens": out_cached == out_recomputed,
            }
        )

    print(
        f"GPT {model.num_parameters() / 1e6:.1f}M params, block {model.block_size}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        f"{'new tokens':>10} | {'KV cache tok/s':>14} | {'recompute tok/s':>15} | {'speedup':>7} | same text"
    )
    for r in rows:
        print(
            f"{r['new_tokens']:>10} | {r['cached_tokens_per_s']:>14.1f} | {r['recompute_tokens_per_s']:>15.1f} | "
            f"{r['speedup']:>6.1f}x | {r['same_tokens']}"
        )
    result = {
        "benchmark": "generation",
        "model": {
            "params": model.num_parameters(),
            "block_size": model.block_size,
            **{k: model.hparams[k] for k in ("n_layer", "n_head", "n_embd")},
        },
        "checkpoint": args.ckpt,
        "machine": machine_info(),
        "rows": rows,
    }
    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
