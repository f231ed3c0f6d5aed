"""The GPU check: what a CUDA machine should show of the suite, in one run of a few minutes.

    bash bench/gpu_check.sh                 # this script under an 8-minute limit

Each check is timed and recorded in bench/results/gpu_check.json (written after every check,
so a run cut short keeps what it measured), with the GPU named:

  precision_auto  `precision: auto` resolves to bf16-mixed (on a GPU that supports it) and a
                  small GPT trains under it through the suite's Trainer (the loss falls).
  mfu             GPT at GPT-2-small size (12 layers, 12 heads, 768 dims, 50,304 tokens,
                  context 1024), batch 8, bf16 autocast, fused AdamW: tokens/s and model-FLOPs
                  utilisation (6N + 12 L T d FLOPs a token, GPT.flops_per_token) eager and with
                  `compile: true`'s compiled forward, against the GPU's bf16 dense peak where
                  known (H100, H200, A100, L4) and against a measured bf16 matmul.
  ddp             where 2 GPUs exist: the same model on 2 GPUs with DDP (NCCL), tokens/s
                  against 1 GPU (eager), and the scaling efficiency.
  qlora           LoRAGPT with `quantize: 4bit` (bitsandbytes NF4) on a LLaMA-style GPT
                  trains a few steps (the loss falls, only the adapters train).
  generation      new tokens/s of the GPT-2-small-sized GPT (bf16) with and without the KV
                  cache, 256 tokens after a 64-token prompt, batch 1.

Random weights and synthetic token streams throughout: no corpus or download is needed.
Without CUDA the script says so and exits 0. `--smoke` runs tiny sizes on whatever device
there is (a CPU too), to try the script itself.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import socket
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from common import RESULTS, command_line, machine_info, write_json_atomic
from torch.utils.data import DataLoader, Dataset

from cli.trainer import Trainer, resolve_precision
from core.constants import IGNORE_INDEX
from lit_models import GPT, LoRAGPT
from lit_models.compiling import compile_forward, is_compiled
from lit_models.modules.decoding import generate

# bf16 dense tensor-core peaks (no sparsity) from the vendors' sheets, FLOP/s.
BF16_PEAK = {"H200": 989e12, "H100 SXM": 989e12, "H100 NVL": 835e12, "H100": 756e12}
BF16_PEAK |= {"A100": 312e12, "L40S": 362e12, "L4": 121e12}

GPT2_SMALL = dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50304, block_size=1024)
TINY = dict(n_layer=2, n_head=2, n_embd=64, vocab_size=256, block_size=64)


def spec_peak(gpu_name: str) -> float | None:
    """The bf16 peak of the GPU named, longest matching name first (H100 SXM before H100)."""
    for name in sorted(BF16_PEAK, key=len, reverse=True):
        if all(word in gpu_name for word in name.split()):
            return BF16_PEAK[name]
    return None


class TokenStreams(Dataset):
    """Arithmetic token sequences (start + step * t mod V): learnable, so a loss that falls
    shows training works. Items are the suite's language-model batches."""

    def __init__(self, vocab_size: int, length: int, size: int = 4096, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        start = torch.randint(0, vocab_size, (size, 1), generator=g)
        step = torch.randint(1, 8, (size, 1), generator=g)
        self.rows = (start + step * torch.arange(length + 1)) % vocab_size

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.rows[i, :-1], "targets": self.rows[i, 1:]}


def quiet_trainer(steps: int, accelerator: str) -> Trainer:
    return Trainer(
        accelerator=accelerator,
        devices=1,
        max_steps=steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        gradient_clip_val=1.0,
    )


def train_and_log(
    model, sizes: tuple[int, int], steps: int, accelerator: str, batch: int, seed: int = 0
) -> list[float]:
    """Train `model` `steps` steps on token streams through the suite's Trainer; its losses."""
    import lightning as L

    losses: list[float] = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, *_):
            losses.append(float(outputs["loss"]))

    vocab_size, block_size = sizes
    data = TokenStreams(vocab_size, block_size, seed=seed)
    trainer = quiet_trainer(steps, accelerator)
    trainer.callbacks.append(Record())
    trainer.fit(model, DataLoader(data, batch_size=batch, shuffle=True))
    return losses


def falls(losses: list[float]) -> bool:
    head, tail = losses[: max(1, len(losses) // 5)], losses[-max(1, len(losses) // 5) :]
    return all(math.isfinite(x) for x in losses) and sum(tail) / len(tail) < sum(head) / len(head)


# --- the checks --------------------------------------------------------------------------


def check_precision_auto(args, accelerator: str) -> dict:
    precision = resolve_precision("auto", accelerator)
    expected = "32-true" if accelerator == "cpu" else "bf16-mixed"
    if accelerator != "cpu" and not torch.cuda.is_bf16_supported():
        expected = "16-mixed"
    torch.manual_seed(0)
    sizes = TINY if args.smoke else dict(n_layer=4, n_head=4, n_embd=256, vocab_size=512)
    model = GPT(**{**sizes, "block_size": 64}, dropout=0.0, warmup_steps=5)
    sizes = (model.hparams.vocab_size, model.block_size)
    losses = train_and_log(model, sizes, 10 if args.smoke else 60, accelerator, batch=16)
    return {
        "precision": precision,
        "expected": expected,
        "bf16_supported": accelerator != "cpu" and torch.cuda.is_bf16_supported(),
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "ok": precision == expected and falls(losses),
    }


def gpt_for_speed(args, device: str) -> GPT:
    torch.manual_seed(0)
    sizes = TINY if args.smoke else GPT2_SMALL
    return GPT(**sizes, dropout=0.0, bias=False).to(device)


def autocast_dtype(device: str) -> torch.dtype:
    if device == "cpu":
        return torch.bfloat16
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def timed_steps(model: GPT, device: str, batch: int, warmup: int, steps: int) -> dict:
    """A plain training loop (bf16 autocast, fused AdamW): tokens/s over `steps` steps after
    `warmup` untimed ones (where a compiled forward compiles)."""
    T, V = model.block_size, model.hparams.vocab_size
    data = torch.randint(0, V, (batch, T + 1), device=device)
    fused = {"fused": True} if device != "cpu" else {}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, **fused)
    dtype = autocast_dtype(device)

    def step():
        with torch.autocast(device_type=device, dtype=dtype):
            logits = model(data[:, :-1])
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(), data[:, 1:].flatten(), ignore_index=IGNORE_INDEX
        )
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    start = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    warm = time.perf_counter()
    for _ in range(steps):
        loss = step()
    sync(device)
    seconds = time.perf_counter() - warm
    return {
        "tokens_per_s": batch * T * steps / seconds,
        "ms_per_step": 1000 * seconds / steps,
        "warmup_s": warm - start,
        "loss": loss.item(),
    }


def sync(device: str) -> None:
    if device != "cpu":
        torch.cuda.synchronize()


def matmul_peak(device: str, n: int = 8192) -> float:
    """Best bf16 FLOP/s of an n x n x n matmul here."""
    if device == "cpu":
        n = 1024
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    best = float("inf")
    for _ in range(10):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def check_mfu(args, device: str, report: dict) -> dict:
    batch = 2 if args.smoke else 8
    warmup, steps = (2, 3) if args.smoke else (5, 20)
    measured = matmul_peak(device)
    spec = spec_peak(report["gpu"] or "")
    result = {"batch": batch, "measured_bf16_matmul_flops": measured, "spec_bf16_flops": spec}
    for name in ("eager", "compiled"):
        model = gpt_for_speed(args, device)
        if name == "compiled":
            compile_forward(model)  # what `compile: true` does
        run = timed_steps(model, device, batch, warmup, steps)
        flops = run["tokens_per_s"] * model.flops_per_token()
        run["model_flops_per_s"] = flops
        run["mfu_of_measured_matmul"] = flops / measured
        run["mfu_of_spec"] = flops / spec if spec else None
        run["compiled"] = is_compiled(model)
        result[name] = run
        del model
        if device != "cpu":
            torch.cuda.empty_cache()
    result["compiled_over_eager"] = (
        result["compiled"]["tokens_per_s"] / result["eager"]["tokens_per_s"]
    )
    result["ok"] = result["compiled"]["compiled"]
    return result


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_worker(rank: int, world: int, port: int, smoke: bool, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("nccl", rank=rank, world_size=world)
    torch.cuda.set_device(rank)
    device = f"cuda:{rank}"
    model = gpt_for_speed(argparse.Namespace(smoke=smoke), device)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank])
    ddp.block_size, ddp.hparams = model.block_size, model.hparams  # what timed_steps reads
    run = timed_steps(ddp, "cuda", 2 if smoke else 8, 5, 20)
    if rank == 0:
        Path(out).write_text(str(run["tokens_per_s"] * world))
    torch.distributed.destroy_process_group()


def check_ddp(args, device: str, report: dict) -> dict:
    count = torch.cuda.device_count() if device != "cpu" else 0
    if count < 2:
        return {"ok": None, "skipped": f"{count} GPU(s): DDP needs 2"}
    with tempfile.TemporaryDirectory() as folder:
        out = str(Path(folder) / "tokens_per_s")
        torch.multiprocessing.spawn(
            ddp_worker, args=(2, free_port(), args.smoke, out), nprocs=2, join=True
        )
        two = float(Path(out).read_text())
    one = report["checks"].get("mfu", {}).get("eager", {}).get("tokens_per_s")
    return {
        "one_gpu_tokens_per_s": one,
        "two_gpu_tokens_per_s": two,
        "scaling_efficiency": two / (2 * one) if one else None,
        "ok": True,
    }


def check_qlora(args, device: str) -> dict:
    # On a CPU (--smoke only) the same run without quantization: the script's path, tried.
    quantize = "none" if device == "cpu" else "4bit"
    if quantize == "4bit":
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            return {
                "ok": False,
                "skipped": "bitsandbytes is not installed: pip install -e '.[qlora]'",
            }
    torch.manual_seed(0)
    vocab_size, block_size = 1024, 128
    base = GPT(
        **dict(n_layer=4, n_head=8, n_kv_head=2, n_embd=512),
        vocab_size=vocab_size,
        block_size=block_size,
        norm="rmsnorm",
        positional="rope",
        mlp="swiglu",
        dropout=0.0,
    )
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "base.ckpt"
        torch.save(
            {
                "state_dict": base.state_dict(),
                "hyper_parameters": {**base.hparams, "_class_path": "lit_models.GPT"},
                "pytorch-lightning_version": "2.6.6",
            },
            path,
        )
        model = LoRAGPT(
            str(path),
            rank=8,
            alpha=16,
            dropout=0.0,
            target_modules=["q", "k", "v", "o", "gate", "up", "down"],
            quantize=quantize,
            learning_rate=2e-3,
            warmup_steps=2,
            vocab_size=vocab_size,
            block_size=block_size,
        )
        accelerator = "cpu" if device == "cpu" else "gpu"
        losses = train_and_log(model, (vocab_size, block_size), 30, accelerator, batch=16)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    four_bit = sum(type(m).__name__ == "Linear4bit" for m in model.modules())  # bitsandbytes'
    return {
        "quantize": quantize,
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "trainable_parameters": trainable,
        "linear4bit_layers": four_bit,
        "ok": falls(losses) and (four_bit > 0 or quantize == "none"),
    }


def check_generation(args, device: str) -> dict:
    model = gpt_for_speed(args, device)
    if device != "cpu":
        model = model.to(torch.bfloat16)
    prompt_len, new = (8, 16) if args.smoke else (64, 256)
    prompt = torch.randint(0, model.hparams.vocab_size, (prompt_len,)).tolist()
    result = {"prompt_tokens": prompt_len, "new_tokens": new, "batch": 1}
    outputs = {}
    for cache in (True, False):
        model.hparams.kv_cache = cache
        generate(model, [prompt], max_new_tokens=4)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        outputs[cache] = generate(model, [prompt], max_new_tokens=new, strategy="greedy")
        sync(device)
        result["with_cache" if cache else "without_cache"] = new / (time.perf_counter() - t0)
    result["speedup"] = result["with_cache"] / result["without_cache"]
    # bf16 rounding may part the two greedy paths late; they start the same.
    result["same_first_tokens"] = outputs[True][0][:8] == outputs[False][0][:8]
    # A figure, not a pass mark: at batch 1 a GPU may recompute a short context as fast.
    result["ok"] = all(len(out[0]) == new for out in outputs.values())
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "gpu_check.json")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, any device")
    parser.add_argument("--only", nargs="*", help="run these checks only")
    args = parser.parse_args()
    if not torch.cuda.is_available() and not args.smoke:
        print(
            "gpu_check: no CUDA GPU on this machine (torch.cuda.is_available() is False); "
            "nothing to check. Run bench/gpu_check.sh on a CUDA machine."
        )
        return 0
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    torch.backends.cuda.matmul.allow_tf32 = True
    device = "cuda" if torch.cuda.is_available() else "cpu"
    accelerator = "gpu" if device == "cuda" else "cpu"
    report = {
        "command": command_line(),
        "machine": machine_info(),
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
        "gpus": torch.cuda.device_count(),
        "smoke": args.smoke,
        "checks": {},
    }
    checks = {
        "precision_auto": lambda: check_precision_auto(args, accelerator),
        "mfu": lambda: check_mfu(args, device, report),
        "ddp": lambda: check_ddp(args, device, report),
        "qlora": lambda: check_qlora(args, device),
        "generation": lambda: check_generation(args, device),
    }
    for name, check in checks.items():
        if args.only and name not in args.only:
            continue
        start = time.perf_counter()
        try:
            result = check()
        except Exception as err:  # one failed check must not hide the others' figures
            traceback.print_exc()
            result = {"ok": False, "error": f"{type(err).__name__}: {err}"[:2000]}
        result["seconds"] = round(time.perf_counter() - start, 1)
        report["checks"][name] = result
        write_json_atomic(args.out, report)
        print(f"{name:15s} ok={result.get('ok')} ({result['seconds']} s)", flush=True)
    print(f"written: {args.out}")
    return 0 if all(c.get("ok") is not False for c in report["checks"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
