"""LoRA on an imported (Hugging Face) LLaMA against full fine-tuning, merged against unmerged
generation, and the suite's GPT against transformers' own LlamaForCausalLM.

Two LLaMA configurations with random weights, built here from transformers' LlamaConfig and
saved to a temporary folder (nothing is downloaded), each read as `init_from` / `model.base`
reads a real one:

  tiny        4 layers, 128 dims, 4 query / 2 key-value heads, the byte vocabulary (259)
  gpt2-small  GPT-2 small's sizes as a LLaMA: 12 layers, 768 dims, 12 heads, SwiGLU 2048,
              vocabulary 50,257 tied to the output (124M parameters)

For each:

  trainable     parameters the optimizer updates (LoRA: rank 16 on q, k, v, o, gate, up, down,
                as configs/llama_lora_smollm.yaml)
  grad+Adam MB  what the trainable weights add in training: a gradient and AdamW's two moments
                (fp32)
  train tok/s   tokens per second of forward + backward + AdamW step, same batch for both
  gen tok/s     new tokens per second of greedy generation with the KV cache (batch 1): the
                LoRA model unmerged (peft computes B A x beside W x in every adapted layer)
                and merged (a plain GPT)
  fwd+bwd tok/s the suite's GPT and transformers' LlamaForCausalLM (sdpa attention) of the
                same folder, forward + backward of the same batch (no optimizer step)

Every figure is the median over `--repeats` timed repetitions, the variants compared taking
turns (A B A B ...), so that a machine shared with other jobs slows them alike: read the
ratios, which are taken in the same run, rather than the absolute figures. Run it with one
thread there: on a busy machine a second thread's OpenMP waits cost more than it gains.

    OMP_NUM_THREADS=1 python bench/lora_imported.py --repeats 3
    OMP_NUM_THREADS=1 python bench/lora_imported.py --quick    # tiny only, 2 repeats

Figures go to bench/results/lora_imported.json (--quick: lora_imported-quick.json).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
import torch.nn.functional as F
from common import command_line, machine_info, results_file, write_json_atomic

from lit_models.gpt import GPT
from lit_models.lora import LoRAGPT
from lit_models.modules.decoding import generate

ROLES = ["q", "k", "v", "o", "gate", "up", "down"]
RANK = 16
SIZES = {
    "tiny": {
        "hf": dict(
            vocab_size=259,
            hidden_size=128,
            intermediate_size=344,
            num_hidden_layers=4,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            tie_word_embeddings=False,
        ),
        "batch": (8, 128),  # rows, tokens
    },
    "gpt2-small": {
        "hf": dict(
            vocab_size=50257,
            hidden_size=768,
            intermediate_size=2048,
            num_hidden_layers=12,
            num_attention_heads=12,
            num_key_value_heads=12,
            max_position_embeddings=1024,
            tie_word_embeddings=True,
        ),
        "batch": (2, 128),
    },
}


def save_random_llama(folder: Path, settings: dict) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(**settings, bos_token_id=None, eos_token_id=None, pad_token_id=None)
    LlamaForCausalLM(config).save_pretrained(folder)


def median_seconds(variants: dict[str, Callable[[], None]], repeats: int) -> dict[str, float]:
    """Each variant once untimed (warm-up), then `repeats` timed rounds taking turns."""
    for run in variants.values():
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten())


def training_step(model, logits_of, params) -> Callable[[torch.Tensor], None]:
    optimizer = torch.optim.AdamW(params, lr=1e-5) if params is not None else None

    def step(ids: torch.Tensor) -> None:
        loss = next_token_loss(logits_of(model, ids), ids)
        loss.backward()
        if optimizer is not None:
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        else:
            model.zero_grad(set_to_none=True)

    return step


def suite_logits(model, ids):
    return model(ids)


def hf_logits(model, ids):
    return model(input_ids=ids).logits


def measure(name: str, folder: Path, repeats: int, new_tokens: int) -> dict:
    from transformers import AutoModelForCausalLM

    rows, length = SIZES[name]["batch"]
    vocab = SIZES[name]["hf"]["vocab_size"]
    ids = torch.randint(0, vocab, (rows, length), generator=torch.Generator().manual_seed(1))
    tokens = rows * length

    # the suite's GPT against transformers' LlamaForCausalLM: forward + backward. First, in
    # a fresh process: measured after full fine-tuning (its AdamW state allocated and freed)
    # the suite came out 0.93x, measured first 1.00x, on the same machine.
    suite = GPT(init_from=str(folder), dropout=0.0).train()
    hf = AutoModelForCausalLM.from_pretrained(
        folder, dtype=torch.float32, attn_implementation="sdpa"
    ).train()
    suite_step, hf_step = (
        training_step(suite, suite_logits, None),
        training_step(hf, hf_logits, None),
    )
    against_hf = median_seconds(
        {"suite": lambda: suite_step(ids), "transformers": lambda: hf_step(ids)}, repeats
    )
    del suite, hf

    # LoRA against full fine-tuning: forward + backward + AdamW step
    full = GPT(init_from=str(folder), dropout=0.0).train()
    lora = LoRAGPT(str(folder), rank=RANK, alpha=2 * RANK, dropout=0.0, target_modules=ROLES)
    lora.train()
    full_params = list(full.parameters())
    lora_params = [p for p in lora.parameters() if p.requires_grad]
    full_step = training_step(full, suite_logits, full_params)
    lora_step = training_step(lora, suite_logits, lora_params)
    train = median_seconds(
        {"full": partial(full_step, ids), "lora": partial(lora_step, ids)}, repeats
    )
    trainable_full = sum(p.numel() for p in full_params)
    trainable_lora = sum(p.numel() for p in lora_params)
    del full, full_params, full_step  # its AdamW state: free before the next models

    # generation: unmerged LoRA against the merged GPT (greedy, KV cache, batch 1)
    lora.eval()
    merged = lora.merged_gpt()
    prompt = [ids[0, :16].tolist()]
    with torch.no_grad():
        gen = median_seconds(
            {
                "unmerged": lambda: generate(lora, prompt, max_new_tokens=new_tokens),
                "merged": lambda: generate(merged, prompt, max_new_tokens=new_tokens),
            },
            repeats,
        )
    return {
        "config": name,
        "hf_config": SIZES[name]["hf"],
        "parameters": merged.num_parameters(),
        "batch": {"rows": rows, "tokens": length},
        "trainable": {"full": trainable_full, "lora": trainable_lora},
        "grad_and_adam_mb": {
            "full": 3 * 4 * trainable_full / 2**20,
            "lora": 3 * 4 * trainable_lora / 2**20,
        },
        "train_tokens_per_s": {k: tokens / v for k, v in train.items()},
        "fwd_bwd_tokens_per_s": {k: tokens / v for k, v in against_hf.items()},
        "suite_over_transformers": against_hf["transformers"] / against_hf["suite"],
        "generation_new_tokens": new_tokens,
        "generation_tokens_per_s": {k: new_tokens / v for k, v in gen.items()},
        "merged_over_unmerged": gen["unmerged"] / gen["merged"],
    }


def print_table(rows: list[dict]) -> None:
    header = (
        f"{'config':<11} {'params':>7} {'trainable full / LoRA':>24} {'grad+Adam MB':>15} "
        f"{'train tok/s full / LoRA':>24} {'gen tok/s unmerged / merged':>28} "
        f"{'fwd+bwd tok/s suite / HF':>25} {'suite/HF':>9}"
    )
    print(header)
    for r in rows:
        t, m = r["trainable"], r["grad_and_adam_mb"]
        tr, g, fb = r["train_tokens_per_s"], r["generation_tokens_per_s"], r["fwd_bwd_tokens_per_s"]
        print(
            f"{r['config']:<11} {r['parameters'] / 1e6:>6.1f}M "
            f"{t['full']:>12,} / {t['lora']:>9,} {m['full']:>7.1f} / {m['lora']:>5.1f} "
            f"{tr['full']:>11,.0f} / {tr['lora']:>10,.0f} "
            f"{g['unmerged']:>13.1f} / {g['merged']:>12.1f} "
            f"{fb['suite']:>11,.0f} / {fb['transformers']:>11,.0f} {r['suite_over_transformers']:>8.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="tiny only, 2 repeats")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    configs, repeats = (["tiny"], 2) if args.quick else (args.configs, args.repeats)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in configs:
            folder = Path(tmp) / name
            save_random_llama(folder, SIZES[name]["hf"])
            rows.append(measure(name, folder, repeats, args.new_tokens))
            print(f"{name}: done")
    print_table(rows)
    out = results_file(args.out, "lora_imported", args.quick)
    write_json_atomic(
        out,
        {
            "command": command_line(),
            "machine": machine_info(),
            "note": "a CPU shared with other jobs: compare the ratios, taken in the same run",
            "settings": {"rank": RANK, "alpha": 2 * RANK, "targets": ROLES, "repeats": repeats},
            "results": rows,
        },
    )
    print(f"written to {out}")


if __name__ == "__main__":
    main()
