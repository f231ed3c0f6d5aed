"""Full fine-tuning against LoRA on the same base, data and steps.

A base GPT (the sizes of configs/gpt_chat_pretrain.yaml: 4 layers, 4 heads, 128 dims, bytes,
context 128) is pretrained here for `--pretrain-steps` on the chatterbot-corpus conversations
as plain text (or given with `--base`). Each method then fine-tunes it on the chat pairs
(template, loss on the responses only; configs/gpt_lora_chat.yaml's data) for `--steps`
steps from the same seed, on the same batches, with AdamW at a constant learning rate
(full: `--full-lr`, all weights; LoRA: `--lora-lr`, rank `--rank` on in_proj, out_proj, fc
and proj), each in its own process so that its peak memory is its own:

  trainable   parameters the optimizer updates
  grad+Adam   what the trainable weights add in training: a gradient and AdamW's two moments
              (fp32), the part of the memory that LoRA shrinks
  train mem   the tensors training holds, counted: weights (frozen ones too), gradients, AdamW's
              moments, and the activations one forward pass saves for backward (their bytes,
              each tensor once, weights excluded)
  peak mem    CUDA: torch.cuda.max_memory_allocated; CPU: the process's peak resident memory
              (VmHWM, reset just before the model is built) above what it held then. On the
              CPU this mostly measures the allocator (glibc keeps freed blocks; LoRA's many
              small tensors fragment it): at these sizes it comes out higher for LoRA although
              LoRA's counted tensors are smaller. Trust `train mem` there.
  tokens/s    input tokens (padding excluded) per second of training, data loading included
  val loss    mean NLL per response token on the held-out conversations, after training
              (before: the base's, the same for both)

    python bench/lora_vs_full.py                          # pretrain 400 steps, fine-tune 200
    python bench/lora_vs_full.py --base path/to/gpt.ckpt --steps 500

Figures go to bench/results/lora_vs_full.json. Timings on a busy machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning
import torch
from common import command_line, machine_info, write_json_atomic

from core.constants import IGNORE_INDEX
from datamodules.chat import ChatDataModule
from lit_models.gpt import GPT
from lit_models.language_model import next_token_nll

ROOT = Path(__file__).resolve().parents[1]

BASE_SIZES = {"n_layer": 4, "n_head": 4, "n_embd": 128, "dropout": 0.0, "bias": False}
TARGETS = ["in_proj", "out_proj", "fc", "proj"]


def batches(loader, steps: int):
    """`steps` batches, going round the loader as often as needed."""
    n = 0
    while True:
        for batch in loader:
            if n == steps:
                return
            yield batch
            n += 1


def train(model, params, loader, steps: int, lr: float) -> tuple[float, int]:
    """Plain loop: seconds and input tokens of `steps` AdamW steps, clipped at 1.0."""
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    model.train()
    tokens, start = 0, time.perf_counter()
    for batch in batches(loader, steps):
        loss = model.training_step(batch, 0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        # inputs never hold <|endoftext|> (it ends each pair), so what is one is padding
        tokens += int((batch["input_ids"] != PAD).sum())
    return time.perf_counter() - start, tokens


@torch.no_grad()
def val_loss(model, loader, device) -> float:
    model.eval()
    nll, count = 0.0, 0
    for batch in loader:
        targets = batch["targets"].to(device)
        nll += float(next_token_nll(model(batch["input_ids"].to(device)), targets).sum())
        count += int((targets != IGNORE_INDEX).sum())
    return nll / count


def chat_data(fmt: str, batch_size: int) -> ChatDataModule:
    data = ChatDataModule(language="english", format=fmt, block_size=128, batch_size=batch_size)
    data.setup("fit")
    return data


PAD = ChatDataModule().eos_id  # what the collate pads inputs with


def pretrain(path: Path, steps: int, seed: int) -> float:
    """A base GPT on the corpus as plain text, saved as `fit` saves one; its val loss."""
    torch.manual_seed(seed)
    data = chat_data("plain", 32)
    model = GPT(vocab_size=data.vocab_size, block_size=128, **BASE_SIZES)
    params = [p for p in model.parameters()]
    seconds, _ = train(model, params, data.train_dataloader(), steps, lr=1e-3)
    loss = val_loss(model, data.val_dataloader(), "cpu")
    print(
        f"pretrained the base: {steps} steps in {seconds:.0f} s, val loss {loss:.3f} (plain text)"
    )
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": {**model.hparams, "_class_path": "lit_models.GPT"},
            "ChatDataModule": data.state_dict(),
            "pytorch-lightning_version": lightning.__version__,
        },
        path,
    )
    return loss


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def start_peak_rss_kb() -> int:
    """The resident memory now, with the peak reset to it (Linux: clear_refs 5), so that the
    peak read later is the model's and training's, not the data loading's before them."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return _status_kb("VmRSS")
    except OSError:  # not Linux: the lifetime peak, which may include the data loading
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss_kb() -> int:
    return _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def counted_training_mb(model, params, batch) -> tuple[float, float]:
    """(train mem, of which activations) in MB: weights, gradients and AdamW moments of the
    trainable ones, and the tensors one forward pass saves for backward."""
    weights = {p.data_ptr(): p.numel() * p.element_size() for p in model.parameters()}
    trainable = sum(p.numel() * p.element_size() for p in params)
    saved = {}

    def keep(t):
        if t.data_ptr() not in weights:  # a weight saved for backward is counted once
            saved[t.data_ptr()] = t.numel() * t.element_size()
        return t

    model.train()
    with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
        model.training_step(batch, 0)
    activations = sum(saved.values())
    return (sum(weights.values()) + 3 * trainable + activations) / 2**20, activations / 2**20


def worker(args) -> None:
    """One method in this process: its figures as JSON on the last line of stdout."""
    torch.manual_seed(args.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = chat_data("chat", args.batch_size)
    torch.manual_seed(args.seed)
    import peft  # noqa: F401 - both methods: its ~200 MB of libraries are not training memory

    before_model = start_peak_rss_kb()
    if args.worker == "full":
        model = GPT.load_from_checkpoint(args.base, map_location="cpu")
        lr = args.full_lr
    else:
        from lit_models.lora import LoRAGPT

        model = LoRAGPT(
            args.base, rank=args.rank, alpha=2 * args.rank, dropout=0.0, target_modules=TARGETS
        )
        lr = args.lora_lr
    model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    loader = data.train_dataloader()
    if device == "cuda":
        loader = ({k: v.to(device) for k, v in b.items()} for b in loader)
        loader = list(loader)
        torch.cuda.reset_peak_memory_stats()
    base_loss = val_loss(model, data.val_dataloader(), device)
    seconds, tokens = train(model, params, loader, args.steps, lr)
    train_mb, activations_mb = counted_training_mb(model, params, next(iter(loader)))
    figures = {
        "method": args.worker,
        "trainable": sum(p.numel() for p in params),
        "total": sum(p.numel() for p in {id(p): p for p in model.parameters()}.values()),
        "peak_mem_mb": (
            torch.cuda.max_memory_allocated() / 2**20
            if device == "cuda"
            else (peak_rss_kb() - before_model) / 1024
        ),
        # what the trainable weights cost in training: gradient + AdamW's two moments, fp32
        "grad_and_adam_mb": 3 * 4 * sum(p.numel() for p in params) / 2**20,
        "peak_mem_kind": "cuda max_memory_allocated" if device == "cuda" else "peak RSS growth",
        "train_mem_counted_mb": train_mb,
        "activations_mb": activations_mb,
        "tokens_per_s": tokens / seconds,
        "seconds": seconds,
        "lr": lr,
        "val_loss_before": base_loss,
        "val_loss": val_loss(model, data.val_dataloader(), device),
    }
    print(json.dumps(figures))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="a GPT checkpoint trained on bytes (default: pretrain one)")
    parser.add_argument("--pretrain-steps", type=int, default=400)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--full-lr", type=float, default=3e-4)
    parser.add_argument("--lora-lr", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--worker", choices=["full", "lora"], help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "lora_vs_full.json"))
    args = parser.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    if args.worker:
        return worker(args)

    with tempfile.TemporaryDirectory() as tmp:
        base, pretrain_loss = args.base, None
        if base is None:
            base = str(Path(tmp) / "base.ckpt")
            pretrain_loss = pretrain(Path(base), args.pretrain_steps, args.seed)
        rows = []
        for method in ("full", "lora"):
            cmd = [sys.executable, __file__, "--worker", method, "--base", base]
            for flag in ("steps", "batch_size", "rank", "full_lr", "lora_lr", "seed"):
                cmd += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode:
                sys.exit(f"{method} failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))

    header = f"{'method':<6} {'trainable':>10} {'of total':>9} {'grad+Adam MB':>13} {'train mem MB':>13} {'peak mem MB':>12} {'tokens/s':>9} {'val loss':>9} (before {rows[0]['val_loss_before']:.3f})"
    print(header)
    for r in rows:
        print(
            f"{r['method']:<6} {r['trainable']:>10,} {100 * r['trainable'] / r['total']:>8.2f}% "
            f"{r['grad_and_adam_mb']:>13.2f} {r['train_mem_counted_mb']:>13.1f} {r['peak_mem_mb']:>12.1f} {r['tokens_per_s']:>9.0f} {r['val_loss']:>9.3f}"
        )
    write_json_atomic(
        Path(args.out),
        {
            "command": command_line(),
            "machine": machine_info(),
            "settings": {
                "base": args.base or f"pretrained here, {args.pretrain_steps} steps",
                "base_sizes": BASE_SIZES,
                "pretrain_val_loss_plain": pretrain_loss,
                "steps": args.steps,
                "batch_size": args.batch_size,
                "block_size": 128,
                "rank": args.rank,
                "lora_targets": TARGETS,
            },
            "results": rows,
        },
    )
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
