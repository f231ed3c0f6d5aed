"""Corpora larger than memory: peak resident memory of tokenizing a text folder into
memory-mapped shards, and of training a tiny GPT on them, at several corpus sizes; and
tokenization throughput with 1 and 2 processes against nanoGPT's prepare.py approach
(HF `datasets` map over the text, then the ids written into one np.memmap) on the same text.

Each corpus is the offline corpora (Tiny Shakespeare, wikitext-2-mini) repeated into 10 MB
files under --scratch (local disk), deleted after. Each measurement runs in a process of its
own and reads its peak from /proc/self/status (VmHWM; with worker processes, the largest
worker's too, from getrusage). Results go to bench/results/large_corpus.json after every
measurement, so a run stopped early keeps what it measured.

    python bench/large_corpus.py --sizes 100 1000 5000      # MB
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import QUIET_TRAINER, RESULTS, command_line, machine_info, write_json_atomic

FILE_MB = 10
VOCAB = 4096
OUT = RESULTS / "large_corpus.json"


def peak_mb() -> dict:
    """This process's peak resident memory, and its largest child's (worker processes)."""
    status = Path("/proc/self/status").read_text()
    hwm = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM"))
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    return {"peak_rss_mb": round(hwm / 1024, 1), "peak_rss_worker_mb": round(children / 1024, 1)}


def generate(folder: Path, size_mb: int, data_dir: Path, file_mb: float = FILE_MB) -> int:
    """`size_mb` of text in `file_mb` files: the offline corpora, over and over."""
    source = (data_dir / "tinyshakespeare" / "input.txt").read_text(encoding="utf-8")
    source += (data_dir / "wikitext-2-mini" / "train.txt").read_text(encoding="utf-8")
    lines = source.encode().splitlines(keepends=True)
    pieces = [b"".join(lines[i : i + 1000]) for i in range(0, len(lines), 1000)]
    folder.mkdir(parents=True, exist_ok=True)
    written, n, k = 0, 0, 0
    while written < size_mb * 1e6:
        with (folder / f"part{n:04d}.txt").open("wb") as f:
            at = 0
            while at < file_mb * 1e6:
                f.write(pieces[k % len(pieces)])
                at, k = at + len(pieces[k % len(pieces)]), k + 1
        written, n = written + at, n + 1
    return written


def datamodule(folder: Path, cache: Path, num_proc: int):
    from datamodules import TextFolderDataModule

    return TextFolderDataModule(
        data_dir=str(folder),
        tokenizer="bpe",
        bpe_vocab_size=VOCAB,
        val_fraction=0.02,
        test_fraction=0.02,
        block_size=64,
        batch_size=12,
        num_proc=num_proc,
        cache_dir=str(cache),
    )


# --- the measurements, each in a process of its own -------------------------------------------
def child_tokenize(folder: Path, cache: Path, num_proc: int) -> dict:
    dm = datamodule(folder, cache, num_proc)
    start = time.perf_counter()
    dm.tokenizer  # noqa: B018 - trained on the train files (one streaming pass)
    trained = time.perf_counter()
    dm.prepare_data()  # every split encoded into shards
    done = time.perf_counter()
    text_bytes = sum(p.stat().st_size for p in dm.files.values())
    tokens = sum(len(dm.encoded(s)) for s in ("train", "val", "test"))
    return {
        "tokenizer_s": round(trained - start, 1),
        "encode_s": round(done - trained, 1),
        "encode_mb_per_s": round(text_bytes / 1e6 / (done - trained), 2),
        "tokens": tokens,
        "shards": len(dm.encoded("train").ids.shards),
        **peak_mb(),
    }


def child_train(folder: Path, cache: Path, steps: int) -> dict:
    import lightning as L
    import torch

    from lit_models import GPT

    torch.set_num_threads(1)
    L.seed_everything(1)
    dm = datamodule(folder, cache, 1)
    model = GPT(
        vocab_size=dm.vocab_size, block_size=64, n_layer=2, n_head=2, n_embd=64, dropout=0.0
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=steps,
        val_check_interval=steps // 2,
        limit_val_batches=20,
        num_sanity_val_steps=0,
        **QUIET_TRAINER,
    )
    start = time.perf_counter()
    trainer.fit(model, dm)
    return {
        "steps": steps,
        "train_s": round(time.perf_counter() - start, 1),
        "val_loss": round(float(trainer.callback_metrics["val/loss"]), 4),
        **peak_mb(),
    }


def child_baseline(folder: Path, cache: Path, num_proc: int) -> dict:
    """nanoGPT's prepare.py: `datasets` map(num_proc) over the text, then every split's ids
    written into one uint16 np.memmap in batches (here one row per line, the same tokenizer
    as ours, batched map and Arrow reads: the fastest way `datasets` offers)."""
    import datasets
    import numpy as np

    from core.checked_files import read_payload
    from datamodules.tokenizers import Tokenizer

    tok = Tokenizer.from_bytes(read_payload(next(cache.rglob("tokenizer.json"))), "bpe")
    files = sorted(str(p) for p in folder.glob("*.txt"))
    start = time.perf_counter()
    ds = datasets.load_dataset("text", data_files=files, split="train", keep_linebreaks=True)
    loaded = time.perf_counter()

    def process(batch):
        ids = tok.encode_batch(batch["text"])
        return {"ids": ids, "len": [len(i) for i in ids]}

    tokenized = ds.map(
        process,
        batched=True,
        remove_columns=["text"],
        num_proc=num_proc,
        load_from_cache_file=False,
    )  # never the other run's cached map: each run tokenizes
    total = int(np.sum(tokenized["len"], dtype=np.uint64))
    out = np.memmap(cache / "baseline.bin", dtype=np.uint16, mode="w+", shape=(total,))
    at, shards = 0, 64
    for k in range(shards):
        # prepare.py reads each shard `with_format("numpy")`, which converts row by row: at a
        # row per line that step alone took 15x the map. Arrow hands over the flat ids at once.
        batch = tokenized.shard(num_shards=shards, index=k, contiguous=True).with_format("arrow")
        ids = batch["ids"].combine_chunks().flatten().to_numpy() if len(batch) else []
        out[at : at + len(ids)] = ids
        at += len(ids)
    out.flush()
    done = time.perf_counter()
    text_bytes = sum(os.path.getsize(f) for f in files)
    return {
        "load_s": round(loaded - start, 1),
        "map_and_write_s": round(done - loaded, 1),
        "encode_mb_per_s": round(text_bytes / 1e6 / (done - loaded), 2),
        "tokens": total,
        **peak_mb(),
    }


def in_child(kind: str, **kwargs) -> dict:
    """Run one measurement in a fresh interpreter: its own peak memory."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    env["HF_DATASETS_CACHE"] = str(Path(kwargs["cache"]) / "hf")
    args = [sys.executable, __file__, "--child", kind, "--child_args", json.dumps(kwargs)]
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{kind} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000], help="MB")
    parser.add_argument("--scratch", default="/tmp/seqmodels-large-corpus")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--file_mb", type=float, default=FILE_MB)
    parser.add_argument("--data_dir", default=os.environ.get("DATA_DIR", "../shared/data"))
    parser.add_argument("--child")
    parser.add_argument("--child_args")
    args = parser.parse_args()
    if args.child:
        kw = json.loads(args.child_args)
        folder, cache = Path(kw.pop("folder")), Path(kw.pop("cache"))
        run = {"tokenize": child_tokenize, "train": child_train, "baseline": child_baseline}
        print(json.dumps(run[args.child](folder, cache, **kw)))
        return

    report = {"machine": machine_info(), "command": command_line(), "sizes": {}}
    for size in args.sizes:
        scratch = Path(args.scratch) / f"{size}mb"
        shutil.rmtree(scratch, ignore_errors=True)
        folder, result = scratch / "text", {}
        result["text_bytes"] = generate(folder, size, Path(args.data_dir), args.file_mb)
        report["sizes"][str(size)] = result
        for num_proc in (2, 1) if size == args.sizes[0] else (2,):
            cache = scratch / f"cache-{num_proc}"
            where = {"folder": str(folder), "cache": str(cache)}
            result[f"tokenize_{num_proc}proc"] = in_child("tokenize", **where, num_proc=num_proc)
            write_json_atomic(OUT, report)
            print(size, num_proc, result[f"tokenize_{num_proc}proc"], flush=True)
        where = {"folder": str(folder), "cache": str(scratch / "cache-2")}
        result["train"] = in_child("train", **where, steps=args.steps)
        write_json_atomic(OUT, report)
        print(size, "train", result["train"], flush=True)
        if size == args.sizes[0]:  # the baseline on the same text, once
            for num_proc in (1, 2):
                result[f"baseline_{num_proc}proc"] = in_child(
                    "baseline", **where, num_proc=num_proc
                )
                write_json_atomic(OUT, report)
                print(size, "baseline", num_proc, result[f"baseline_{num_proc}proc"], flush=True)
        shutil.rmtree(scratch, ignore_errors=True)
    report["done"] = True
    write_json_atomic(OUT, report)


if __name__ == "__main__":
    main()
