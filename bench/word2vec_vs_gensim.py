"""Skip-gram with negative sampling: the suite's word2vec against gensim's, same settings, same
corpus, same machine, one run.

    OMP_NUM_THREADS=1 python bench/word2vec_vs_gensim.py [--data_dir $DATA_DIR/wikitext-2-mini]

Both train on the train split of the corpus, one line a sentence of whitespace words, with
100-dim vectors, window 5 (shrunk at random), 5 noise words, subsampling t = 1e-4, min_count 5,
learning rate 0.025 decaying linearly, 5 epochs; gensim with `workers=1`, the suite with one
torch thread (Lightning's `fit`, batches of 4096 pairs, validation off). Speed is corpus words
(every word of the split, as gensim counts raw words) times epochs over the training wall
time; vocabulary building is left out of both clocks, the per-epoch subsampling, windows and
noise draws are in both. Agreement is the mean overlap of the top-10 cosine neighbours of the
100 most frequent words; the overlap between two gensim runs that differ only in their seed
says how much agreement to expect at best.

Prints a table and writes bench/results/word2vec_vs_gensim.json.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import torch
from common import QUIET_TRAINER, machine_info, write_json_atomic

from datamodules.word2vec import Word2VecDataModule
from lit_models.word2vec import Word2Vec

RESULTS = Path(__file__).parent / "results" / "word2vec_vs_gensim.json"
SETTINGS = {
    "dim": 100,
    "window": 5,
    "negative": 5,
    "sample": 1e-4,
    "min_count": 5,
    "epochs": 5,
    "alpha": 0.025,
    "min_alpha": 0.025 * 1e-4,
}


def train_gensim(sentences, seed: int):
    from gensim.models import Word2Vec as GensimWord2Vec

    model = GensimWord2Vec(
        vector_size=SETTINGS["dim"],
        window=SETTINGS["window"],
        negative=SETTINGS["negative"],
        sample=SETTINGS["sample"],
        min_count=SETTINGS["min_count"],
        alpha=SETTINGS["alpha"],
        min_alpha=SETTINGS["min_alpha"],
        sg=1,
        hs=0,
        workers=1,
        seed=seed,
    )
    model.build_vocab(sentences)
    start = time.perf_counter()
    model.train(sentences, total_examples=model.corpus_count, epochs=SETTINGS["epochs"])
    return model, time.perf_counter() - start


def train_suite(data_dir: str, batch_size: int):
    data = Word2VecDataModule(
        corpus="wikitext-2",
        data_dir=data_dir,
        architecture="skipgram",
        window=SETTINGS["window"],
        min_count=SETTINGS["min_count"],
        sample=SETTINGS["sample"],
        negative=SETTINGS["negative"],
        batch_size=batch_size,
    )
    data.encode(
        "train"
    )  # the vocabulary and the id stream: outside the clock, as gensim's build_vocab
    model = Word2Vec(
        data.vocab_size,
        data.word_counts,
        n_embd=SETTINGS["dim"],
        negative=SETTINGS["negative"],
        learning_rate=SETTINGS["alpha"],
        min_lr_ratio=1e-4,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=SETTINGS["epochs"],
        limit_val_batches=0,
        num_sanity_val_steps=0,
        **QUIET_TRAINER,
    )
    start = time.perf_counter()
    trainer.fit(model, data)
    return data, model, time.perf_counter() - start


def top10(vectors: np.ndarray, rows: list[int]) -> list[set[int]]:
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
    sims = unit[rows] @ unit.T
    sims[np.arange(len(rows)), rows] = -np.inf
    return [set(np.argsort(-s)[:10].tolist()) for s in sims]


def overlap(a: list[set[int]], b: list[set[int]]) -> float:
    return float(np.mean([len(x & y) / 10 for x, y in zip(a, b, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_dir = os.path.join(os.environ.get("DATA_DIR", "data"), "wikitext-2-mini")
    parser.add_argument("--data_dir", default=default_dir)
    parser.add_argument("--batch_size", type=int, default=4096)
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)

    data, model, suite_s = train_suite(args.data_dir, args.batch_size)
    sentences = [s for s in data.sentences("train") if s]
    corpus_words = sum(len(s) for s in sentences)
    gensim_model, gensim_s = train_gensim(sentences, seed=1)
    gensim_again, _ = train_gensim(sentences, seed=2)

    words = data.words
    gensim_words = gensim_model.wv.index_to_key
    assert set(words) == set(gensim_words), "the two vocabularies differ"
    probe = words[:100]  # the 100 most frequent words
    ours = top10(model.vectors.numpy(), [data.word_to_id[w] for w in probe])
    # gensim's neighbours, mapped to our word ids
    to_ours = np.array([data.word_to_id[w] for w in gensim_words])
    g_rows = [gensim_model.wv.key_to_index[w] for w in probe]
    theirs = [{int(to_ours[j]) for j in s} for s in top10(gensim_model.wv.vectors, g_rows)]
    again_to_ours = np.array([data.word_to_id[w] for w in gensim_again.wv.index_to_key])
    a_rows = [gensim_again.wv.key_to_index[w] for w in probe]
    again = [{int(again_to_ours[j]) for j in s} for s in top10(gensim_again.wv.vectors, a_rows)]

    total = corpus_words * SETTINGS["epochs"]
    result = {
        "settings": {
            **SETTINGS,
            "sg": 1,
            "batch_size": args.batch_size,
            "threads": 1,
            "gensim_workers": 1,
        },
        "corpus": str(args.data_dir),
        "corpus_words": corpus_words,
        "vocab_size": len(words),
        "suite": {"train_s": round(suite_s, 2), "words_per_s": round(total / suite_s)},
        "gensim": {"train_s": round(gensim_s, 2), "words_per_s": round(total / gensim_s)},
        "speed_ratio_suite_over_gensim": round(gensim_s / suite_s, 3),
        "top10_overlap_suite_vs_gensim": round(overlap(ours, theirs), 3),
        "top10_overlap_gensim_seed1_vs_seed2": round(overlap(theirs, again), 3),
        "machine": machine_info(),
        "note": "shared 2-core machine, other jobs running: absolute speeds are noisy, the ratio less so",
    }
    print(
        f"corpus {args.data_dir}: {corpus_words} words, vocabulary {len(words)}, {SETTINGS['epochs']} epochs"
    )
    print(f"{'':24}{'train s':>10}{'words/s':>12}")
    print(f"{'suite (1 thread)':24}{suite_s:>10.1f}{total / suite_s:>12,.0f}")
    print(f"{'gensim (1 worker)':24}{gensim_s:>10.1f}{total / gensim_s:>12,.0f}")
    print(f"speed ratio suite / gensim: {gensim_s / suite_s:.3f}")
    print(
        f"top-10 neighbour overlap, 100 most frequent words: suite vs gensim {result['top10_overlap_suite_vs_gensim']:.3f}"
    )
    print(
        f"  (gensim seed 1 vs gensim seed 2: {result['top10_overlap_gensim_seed1_vs_seed2']:.3f})"
    )
    write_json_atomic(RESULTS, result)
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
