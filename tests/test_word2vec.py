"""Word2vec: the data pipeline (noise distribution, subsampling, dynamic windows), the Huffman
tree and hierarchical softmax, the vectors export that gensim reads, and both configs trained
through the CLI as a user runs them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import DataError, UserError
from datamodules.word2vec import (
    NoiseSampler,
    Word2VecDataModule,
    Word2VecExamples,
    keep_probabilities,
    noise_distribution,
)
from datamodules.word_vectors import (
    load_word2vec_format,
    read_similarity_file,
    save_word2vec_format,
)
from lit_models.modules.huffman import huffman_tree
from lit_models.word2vec import Word2Vec
from lit_models.word_vector_metrics import analogy_accuracy, similarity_spearman
from tests.conftest import config, logged_metrics, need_corpus, run_cli

SKIPGRAM = config("word2vec_skipgram_wikitext2.yaml")
CBOW = config("word2vec_cbow_wikitext2.yaml")
TINY = [
    "--model.init_args.n_embd=16",
    "--data.init_args.batch_size=512",
    "--trainer.max_epochs=2",
    "--trainer.limit_train_batches=6",
    "--trainer.limit_val_batches=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.log_every_n_steps=1",
]
COUNTS = np.array([500, 200, 120, 60, 30, 12, 6, 3, 2, 1])


def wikitext_mini() -> list[str]:
    return [f"--data.init_args.data_dir={need_corpus('wikitext-2-mini')}"]


def examples(ids, sentence=None, architecture="skipgram", negative=0, sample=0.0, window=5, seed=0):
    """A Word2VecExamples over a hand-made corpus whose counts are the ids' own counts."""
    ids = np.asarray(ids, dtype=np.int64)
    sentence = np.zeros_like(ids) if sentence is None else np.asarray(sentence, dtype=np.int64)
    counts = np.bincount(ids).astype(np.float64)
    noise = NoiseSampler(noise_distribution(counts)) if negative else None
    return Word2VecExamples(
        ids,
        sentence,
        keep_probabilities(counts, sample),
        noise,
        architecture,
        window,
        negative,
        4096,
        seed,
    )


# --- the data ----------------------------------------------------------------------------
def test_negative_samples_follow_unigram_to_the_three_quarters():
    ids = np.repeat(np.arange(len(COUNTS)), COUNTS)
    rng = np.random.default_rng(0)
    data = examples(rng.permutation(ids), negative=5)
    drawn = torch.cat([batch["negatives"].flatten() for _ in range(4) for batch in data])
    empirical = np.bincount(drawn.numpy(), minlength=len(COUNTS)) / len(drawn)
    expected = COUNTS**0.75 / (COUNTS**0.75).sum()
    assert len(drawn) > 100_000
    np.testing.assert_allclose(empirical, expected, atol=0.004)
    # ... and not the plain unigram distribution, which it differs from by far more.
    assert np.abs(COUNTS / COUNTS.sum() - expected).max() > 0.05


def test_subsampling_keeps_rare_words_and_thins_frequent_ones():
    counts = np.array([100_000, 5_000, 10, 1, 1], dtype=np.float64)
    keep = keep_probabilities(counts, sample=1e-4)
    t_total = 1e-4 * counts.sum()
    f = counts[0]
    assert keep[0] == pytest.approx(
        (np.sqrt(f / t_total) + 1) * t_total / f
    )  # word2vec.c's formula
    assert keep[0] < keep[1] < 1.0
    np.testing.assert_array_equal(keep[2:], 1.0)  # f <= t: always kept
    # Through the dataset: every rare occurrence survives, the frequent word is thinned.
    ids = np.array([0] * 20_000 + list(range(1, 41)))
    ids = np.random.default_rng(1).permutation(ids)
    centres = np.concatenate(
        [b["center"].numpy() for b in examples(ids, architecture="cbow", sample=1e-3)]
    )
    seen = Counter(centres.tolist())
    assert all(seen[w] == 1 for w in range(1, 41))
    assert seen[0] < 0.25 * 20_000


def test_dynamic_window_prefers_near_words_and_stops_at_sentence_ends():
    window = 4
    position = np.arange(40_000)
    sentence = position // 100
    data = examples(position, sentence, window=window)  # ids are positions: distances are exact
    pairs = [(b["center"].numpy(), b["context"].numpy()) for b in data]
    centre, context = (np.concatenate(x) for x in zip(*pairs, strict=True))
    distance = np.abs(centre - context)
    assert distance.min() == 1 and distance.max() == window
    assert (sentence[centre] == sentence[context]).all()
    share = np.bincount(distance, minlength=window + 1)[1:] / len(distance)
    # A centre draws b uniformly from 1..W and sees distance d when b >= d: P(d) ~ W - d + 1.
    expected = np.arange(window, 0, -1) / np.arange(window, 0, -1).sum()
    np.testing.assert_allclose(share, expected, atol=0.01)


def test_min_count_leaving_no_word_is_a_clear_error():
    data = Word2VecDataModule(data_dir=str(need_corpus("wikitext-2-mini")), min_count=10**9)
    with pytest.raises(
        UserError,
        match=r"min_count=1000000000 leaves an empty vocabulary.*Lower data.init_args.min_count",
    ):
        data.vocab_size  # noqa: B018


# --- the model ---------------------------------------------------------------------------
def test_huffman_codes_are_prefix_free_and_shorter_for_frequent_words():
    counts = np.random.default_rng(0).zipf(1.5, size=300).clip(max=10**6)
    counts = np.sort(counts)[::-1]
    codes, points = huffman_tree(counts.tolist())
    strings = ["".join(map(str, c)) for c in codes]
    assert len(set(strings)) == len(strings)
    for a in strings:
        assert not any(b != a and b.startswith(a) for b in strings)
    assert sum(2.0 ** -len(s) for s in strings) == pytest.approx(1.0)  # a full binary tree
    lengths = [len(s) for s in strings]
    for i in range(len(counts)):  # a more frequent word never gets a longer code
        rarer = counts < counts[i]
        assert not rarer.any() or lengths[i] <= min(np.array(lengths)[rarer])
    assert lengths[0] < lengths[-1]
    assert all(p[0] == len(counts) - 2 for p in points)  # every path starts at the root


def test_hierarchical_softmax_probabilities_sum_to_one():
    torch.manual_seed(0)
    model = Word2Vec(len(COUNTS), COUNTS.tolist(), n_embd=8, negative=0)
    torch.nn.init.normal_(model.output_vectors.weight)  # a trained-looking tree, not all zeros
    h = torch.randn(5, 8)
    every_word = torch.arange(len(COUNTS))
    log_p = torch.stack(
        [
            model.hierarchical_softmax_log_prob(h[i].expand(len(COUNTS), 8), every_word)
            for i in range(5)
        ]
    )
    torch.testing.assert_close(log_p.exp().sum(-1), torch.ones(5))
    assert log_p.exp().std(-1).min() > 0.01  # a real distribution, not a uniform one


def test_sgd_update_lowers_the_loss_of_its_batch_for_both_objectives():
    ids = np.random.default_rng(0).integers(0, len(COUNTS), size=2000)
    for negative in (5, 0):
        for architecture in ("skipgram", "cbow"):
            first = next(iter(examples(ids, architecture=architecture, negative=negative)))
            batch = {key: value[:64] for key, value in first.items()}
            model = Word2Vec(len(COUNTS), COUNTS.tolist(), 8, architecture, negative)
            before = model.loss(batch).mean()
            for _ in range(5):
                model.sgd_update(batch, 0.025)
            assert model.loss(batch).mean() < before - 0.01, (architecture, negative)


def test_sparse_adam_path_trains_through_sparse_gradients():
    ids = np.random.default_rng(0).integers(0, len(COUNTS), size=2000)
    batch = next(iter(examples(ids, negative=5)))
    model = Word2Vec(len(COUNTS), n_embd=8, optimizer="sparse_adam")
    optimizer = torch.optim.SparseAdam(list(model.parameters()), lr=0.05)
    before = model.loss(batch).mean()
    for _ in range(5):
        optimizer.zero_grad()
        model.loss(batch).mean().backward()
        assert model.input_vectors.weight.grad.is_sparse  # only the batch's rows are touched
        optimizer.step()
    assert model.loss(batch).mean() < before - 0.01


# --- vectors out -------------------------------------------------------------------------
def test_exported_vectors_load_in_gensim_with_the_same_neighbours(tmp_path):
    from gensim.models import KeyedVectors

    torch.manual_seed(0)
    words = [f"w{i}" for i in range(40)]
    model = Word2Vec(len(words), n_embd=12)
    path = save_word2vec_format(tmp_path / "vectors.txt", words, model.vectors)
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file was renamed
    kv = KeyedVectors.load_word2vec_format(str(path))
    _, ids = model.nearest(torch.arange(10), k=5)
    for i in range(10):
        assert [w for w, _ in kv.most_similar(words[i], topn=5)] == [words[j] for j in ids[i]]
    read_words, read_vectors = load_word2vec_format(path)
    assert read_words == words
    torch.testing.assert_close(read_vectors, model.vectors, atol=1e-5, rtol=1e-4)


def test_evaluation_files(tmp_path):
    vectors = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.2, 0.9], [0.7, 0.7]])
    word_to_id = {w: i for i, w in enumerate(["a", "a2", "b", "b2", "c"])}
    sim = tmp_path / "sim.tsv"
    sim.write_text("Word 1,Word 2,Human (mean)\na,a2,9\na,b,1\nb,b2,8.5\nc,a,5\nzz,a,3\n")
    pairs = read_similarity_file(sim)
    rho, coverage = similarity_spearman(vectors, word_to_id, pairs)
    assert rho == pytest.approx(1.0) and coverage == pytest.approx(4 / 5)
    accuracy, coverage = analogy_accuracy(
        vectors, word_to_id, [("a", "a2", "b", "b2"), ("a", "b", "a2", "zz")]
    )
    assert (accuracy, coverage) == (1.0, 0.5)
    bad = tmp_path / "bad.tsv"
    bad.write_text("a b 1\na 2\n")
    with pytest.raises(DataError, match=r"bad.tsv:2: expected 'word1 word2 score'"):
        read_similarity_file(bad)


# --- through the CLI ---------------------------------------------------------------------
def test_skipgram_config_trains_logs_neighbours_scores_and_exports_for_gensim(tmp_path):
    from gensim.models import KeyedVectors

    (tmp_path / "sim.txt").write_text(
        "king queen 8.6\ncity town 7.3\nwar battle 8.4\nmusic song 7\nhe she 6\nqqzz king 1\n"
    )
    (tmp_path / "analogy.txt").write_text(
        ": family\nman woman king queen\nhe she his her\nman woman qqzz king\n"
    )
    (tmp_path / "callbacks.yaml").write_text(
        "trainer:\n  callbacks:\n"  # last.ckpt comes from configs/defaults.yaml
        "    - class_path: callbacks.word_neighbours.WordNeighbours\n"
        "      init_args: {probe_words: [king, qqzz], k: 5, similarity_file: sim.txt, analogy_file: analogy.txt}\n"
    )
    proc = run_cli(
        "fit",
        "--config",
        SKIPGRAM,
        "--config",
        "callbacks.yaml",
        *wikitext_mini(),
        *TINY,
        "--model.init_args.learning_rate=0.5",  # a dozen steps must visibly learn
        "--trainer.logger=CSVLogger",
        "--trainer.logger.save_dir=csv",
    )
    output = proc.stdout + proc.stderr
    assert "probe words outside the vocabulary are skipped: qqzz" in output
    assert "king:" in output  # the neighbours table, printed each epoch
    metrics = logged_metrics(Path("csv"))
    assert -1 <= metrics["val/spearman"] <= 1 and metrics["val/spearman_coverage"] == pytest.approx(
        5 / 6
    )
    assert 0 <= metrics["val/analogy_acc"] <= 1 and metrics[
        "val/analogy_coverage"
    ] == pytest.approx(2 / 3)
    assert metrics["val/loss"] < 4.15  # below the untrained 6 log 2 = 4.159
    (vectors,) = Path("csv").rglob("vectors.txt")
    (ckpt,) = Path("csv").rglob("last.ckpt")
    model = Word2Vec.load_from_checkpoint(ckpt, map_location="cpu")
    kv = KeyedVectors.load_word2vec_format(str(vectors))
    words = kv.index_to_key
    assert len(words) == model.vectors.shape[0]
    _, ids = model.nearest(torch.tensor([words.index("king"), words.index("city")]), k=10)
    for word, row in zip(("king", "city"), ids, strict=True):
        assert [w for w, _ in kv.most_similar(word, topn=10)] == [words[j] for j in row]

    # The export_vectors subcommand writes the same file from the checkpoint.
    run_cli("export_vectors", "--ckpt_path", str(ckpt), "--output", "again.txt")
    again_words, again = load_word2vec_format("again.txt")
    assert again_words == words
    torch.testing.assert_close(again, torch.from_numpy(kv.vectors), atol=1e-5, rtol=1e-4)


def test_cbow_config_trains_with_hierarchical_softmax():
    run_cli(
        "fit",
        "--config",
        CBOW,
        *wikitext_mini(),
        *TINY,
        "--data.init_args.negative=0",
        "--trainer.logger=CSVLogger",
        "--trainer.logger.save_dir=csv",
    )
    metrics = logged_metrics(Path("csv"))
    assert metrics["train/loss"] > 0 and metrics["val/loss"] > 0
    (ckpt,) = Path("csv").rglob("last.ckpt")
    model = Word2Vec.load_from_checkpoint(ckpt, map_location="cpu")
    assert model.hparams.architecture == "cbow" and model.hparams.negative == 0
    assert model.output_vectors.weight.shape[0] == model.hparams.vocab_size - 1  # inner nodes
    assert list(Path("csv").rglob("vectors.txt"))
