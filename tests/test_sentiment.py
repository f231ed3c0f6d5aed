"""Sentiment classification: SST-2 and rt-polarity datamodules, the recurrent TextClassifier
over packed sequences, pretrained word vectors, and both configs through the CLI."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from core.checked_files import read_payload
from core.errors import DataError
from datamodules.sentiment import (
    RTPolarityDataModule,
    SST2DataModule,
    pad_batch,
    split_examples,
    tokenize,
)
from datamodules.word_vectors import save_word2vec_format
from lit_models.text_classifier import TextClassifier
from tests.conftest import config, need_corpus, run_cli

TINY = [
    "--model.init_args.n_embd=16",
    "--model.init_args.n_hidden=16",
    "--data.init_args.batch_size=16",
    "--trainer.max_steps=6",
    "--trainer.val_check_interval=3",
    "--trainer.limit_val_batches=2",
    "--trainer.limit_test_batches=2",
    "--trainer.enable_progress_bar=false",
]


def write_sst2(folder: Path, train: list[str], dev: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (("train.tsv", train), ("dev.tsv", dev)):
        (folder / name).write_text("sentence\tlabel\n" + "".join(f"{r}\n" for r in rows))
    return folder


# --- through the CLI ----------------------------------------------------------------------
def test_sst2_config_fits_and_tests_from_checkpoint(tmp_path):
    need_corpus("sst2")
    run_cli("fit", "--config", config("sentiment_lstm_sst2.yaml"), *TINY)
    (best,) = tmp_path.rglob("checkpoints/best-*.ckpt")
    (last,) = tmp_path.rglob("checkpoints/last.ckpt")
    # The report callback drew a confusion matrix of each validation beside the run.
    assert sorted(p.name for p in tmp_path.rglob("classification_report/val-*.png")) == [
        "val-step0000003.png",
        "val-step0000006.png",
    ]
    proc = run_cli(
        "test", "--config", config("sentiment_lstm_sst2.yaml"), f"--ckpt_path={best}", *TINY
    )
    for metric in ("test/acc", "test/f1", "test/loss"):
        assert metric in proc.stdout
    assert list(tmp_path.rglob("classification_report/test-*.png"))
    # ...and logged them to W&B with a table of the most confident mistakes.
    assert list(tmp_path.rglob("wandb/*/files/media/images/val/confusion_matrix_*.png"))
    (table, *_) = sorted(tmp_path.rglob("wandb/*/files/media/table/val/misclassified_*.json"))
    logged = json.loads(table.read_text())
    assert logged["columns"] == ["text", "true", "predicted", "confidence"]
    assert logged["data"], "a barely trained model gets some dev sentences wrong"
    text, true, predicted, confidence = logged["data"][0]
    assert {true, predicted} == {"negative", "positive"} and 0.5 <= confidence <= 1.0
    confidences = [row[3] for row in logged["data"]]
    assert confidences == sorted(confidences, reverse=True)
    state = torch.load(last, map_location="cpu", weights_only=True)
    assert state["hyper_parameters"]["num_classes"] == 2  # linked from the data
    assert state["hyper_parameters"]["cell"] == "lstm"


def test_rt_polarity_config_with_pretrained_vectors_through_the_cli(tmp_path):
    need_corpus("rt-polarity")
    # Vectors for a few words of the corpus, and one it does not have.
    vectors = torch.randn(4, 16)
    words = ["the", "film", "boring", "zzzunseen"]
    save_word2vec_format(tmp_path / "vectors.txt", words, vectors)
    args = [
        *TINY,
        f"--data.init_args.word_vectors={tmp_path / 'vectors.txt'}",
        f"--data.init_args.cache_dir={tmp_path / 'cache-sentiment'}",
        "--model.init_args.freeze_embeddings=true",
    ]
    run_cli("fit", "--config", config("sentiment_gru_rt_polarity.yaml"), *args)
    (last,) = tmp_path.rglob("checkpoints/last.ckpt")
    run_cli(
        "test", "--config", config("sentiment_gru_rt_polarity.yaml"), f"--ckpt_path={last}", *args
    )
    # Frozen and pretrained: after training, each word's row is still the file's vector.
    data = RTPolarityDataModule()
    embedding = torch.load(last, map_location="cpu", weights_only=True)["state_dict"][
        "embedding.weight"
    ]
    for word, vector in zip(words[:3], vectors[:3], strict=True):
        torch.testing.assert_close(embedding[data.vocab[word]], vector)


def test_malformed_corpus_is_one_line_error_through_the_cli(tmp_path):
    folder = write_sst2(tmp_path / "bad", ["good film\t1", "bad film\t7"], ["fine\t1"])
    proc = run_cli(
        "fit",
        "--config",
        config("sentiment_lstm_sst2.yaml"),
        f"--data.init_args.data_dir={folder}",
        *TINY,
        check=False,
    )
    assert proc.returncode == 2
    assert f"{folder / 'train.tsv'}: line 3 has label '7'" in proc.stderr
    assert "Traceback" not in proc.stderr


# --- the data -----------------------------------------------------------------------------
def test_rt_polarity_split_is_seeded_disjoint_whole_sentences():
    need_corpus("rt-polarity")
    splits = RTPolarityDataModule(split_seed=42).splits
    again = RTPolarityDataModule(split_seed=42).splits
    other = RTPolarityDataModule(split_seed=7).splits
    sizes = {k: len(v) for k, v in splits.items()}
    # 10% each of the 10,644 whole sentences (18 of the 10,662 lie inside another); training
    # is the rest, less the 5 that lie inside a held-out sentence.
    assert sizes == {"train": 8529, "val": 1064, "test": 1064}
    assert [ex.text for ex in splits["val"]] == [ex.text for ex in again["val"]]
    assert [ex.text for ex in splits["val"]] != [ex.text for ex in other["val"]]
    ids = {split: {id(ex) for ex in exs} for split, exs in splits.items()}
    assert not ids["train"] & ids["val"] and not ids["train"] & ids["test"]
    assert not ids["val"] & ids["test"]
    labels = [ex.label for ex in splits["train"]]
    assert 0.45 < sum(labels) / len(labels) < 0.55  # both classes in train


def test_split_examples_covers_every_example_once():
    from datamodules.sentiment import Example

    examples = [Example(f"s{i}", i % 2) for i in range(103)]
    splits = split_examples(examples, seed=1)
    texts = [ex.text for split in splits.values() for ex in split]
    assert sorted(texts) == sorted(ex.text for ex in examples)
    assert [len(s) for s in splits.values()] == [82, 10, 11]


def test_vocabulary_has_no_word_seen_only_in_dev(tmp_path):
    folder = write_sst2(
        tmp_path / "sst2",
        ["a good film\t1", "a bad film\t0"],
        ["a marvellous film\t1", "an awful mess\t0"],
    )
    data = SST2DataModule(data_dir=str(folder))
    assert set(data.vocab) == {"<pad>", "<unk>", "a", "good", "bad", "film"}
    data.setup("fit")
    batch = pad_batch([data.datasets["val"][0]])
    assert batch["input_ids"].tolist() == [[data.vocab["a"], 1, data.vocab["film"]]]  # 1: <unk>
    # And on the real corpus: every vocabulary word occurs in train.
    need_corpus("rt-polarity")
    rt = RTPolarityDataModule()
    train_words = {w for ex in rt.splits["train"] for w in tokenize(ex.text)}
    assert set(rt.vocab) - train_words == {"<pad>", "<unk>"}


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("one\ttwo\t1", "line 3 has 3 tab-separated fields, expected 2"),
        ("no label at all", "line 3 has 1 tab-separated fields, expected 2"),
        ("fine film\tpositive", "line 3 has label 'positive'"),
        ("\t1", "line 3 has an empty sentence"),
    ],
)
def test_malformed_sst2_rows_name_file_and_line(tmp_path, row, message):
    folder = write_sst2(tmp_path / "sst2", ["a good film\t1", row], ["fine\t1"])
    with pytest.raises(DataError) as err:
        SST2DataModule(data_dir=str(folder)).splits  # noqa: B018
    assert f"{folder / 'train.tsv'}: {message}" in str(err.value)


def test_non_utf8_and_missing_files_are_clear_errors(tmp_path):
    folder = tmp_path / "rt"
    folder.mkdir()
    (folder / "rt-polarity.pos").write_bytes(b"a good film\n")
    (folder / "rt-polarity.neg").write_bytes(b"dull\nan ugly caf\xe9 scene\n")  # Latin-1
    with pytest.raises(DataError, match=r"rt-polarity\.neg: line 2 is not valid UTF-8"):
        RTPolarityDataModule(data_dir=str(folder)).splits  # noqa: B018
    (folder / "rt-polarity.pos").unlink()
    with pytest.raises(DataError, match=r"looked for rt-polarity\.pos, rt-polarity\.neg"):
        RTPolarityDataModule(data_dir=str(folder)).splits  # noqa: B018


def test_bucketed_batches_cover_the_split_once(tmp_path):
    train = [f"{' '.join(['w'] * (1 + i % 9))}\t{i % 2}" for i in range(50)]
    folder = write_sst2(tmp_path / "sst2", train, ["w\t1"])
    data = SST2DataModule(data_dir=str(folder), batch_size=4, held_out="dev")
    data.setup("fit")
    batches = list(data.train_dataloader())
    assert sum(len(b["labels"]) for b in batches) == 50
    assert all(int(b["lengths"].max()) == b["input_ids"].size(1) for b in batches)


# --- the model ------------------------------------------------------------------------------
def tiny_model(**kwargs) -> TextClassifier:
    torch.manual_seed(0)
    args = dict(vocab_size=30, n_embd=8, n_hidden=6, dropout=0.0) | kwargs
    return TextClassifier(**args).eval()


def padded(sentences: list[list[int]], pad_id: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(s) for s in sentences])
    ids = torch.full((len(sentences), int(lengths.max())), pad_id)
    for row, s in enumerate(sentences):
        ids[row, : len(s)] = torch.tensor(s)
    return ids, lengths


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("pooling", ["last", "mean", "max"])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_sentence_alone_or_padded_in_a_batch_gives_the_same_logits(cell, pooling, bidirectional):
    model = tiny_model(cell=cell, pooling=pooling, bidirectional=bidirectional, n_layer=2)
    short, longer, longest = [5, 6, 7], [3, 4, 5, 6, 7, 8], [9] * 11
    alone = model(*padded([short]))
    with torch.no_grad():
        batched = model(*padded([longer, short, longest]))
    torch.testing.assert_close(batched[1], alone[0], rtol=1e-5, atol=1e-6)
    # Padding may be any id: it is never read.
    ids, lengths = padded([longer, short, longest])
    ids[1, 3:] = 17
    torch.testing.assert_close(model(ids, lengths)[1], alone[0], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_mean_and_max_pool_only_the_real_words(pooling):
    model = tiny_model(cell="gru", pooling=pooling, bidirectional=True)
    sentence = [4, 8, 15, 16]
    ids, lengths = padded([sentence, [1] * 10])
    with torch.no_grad():
        # The states of the sentence alone, pooled by hand over its 4 words.
        states, _ = model.rnn(model.embedding(torch.tensor([sentence])))
        pooled = states[0].mean(0) if pooling == "mean" else states[0].max(0).values
        torch.testing.assert_close(model(ids, lengths)[0], model.head(pooled))
        # Were padding pooled too, the mean would shrink toward 0 and the max clip at 0.
        all_states = torch.cat([states[0], torch.zeros(6, states.size(-1))])
        wrong = all_states.mean(0) if pooling == "mean" else all_states.max(0).values
        assert not torch.allclose(model.head(pooled), model.head(wrong))


def test_model_overfits_a_tiny_batch():
    model = tiny_model(vocab_size=40, n_embd=16, n_hidden=16).train()
    torch.manual_seed(0)
    sentences = [torch.randint(2, 40, (n,)).tolist() for n in (3, 5, 7, 2, 9, 4, 6, 8)]
    labels = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1])
    ids, lengths = padded(sentences)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.02)
    for _ in range(150):
        loss = F.cross_entropy(model(ids, lengths), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    assert (model(ids, lengths).argmax(-1) == labels).all()


def test_pretrained_vectors_land_in_their_words_rows(tmp_path):
    folder = write_sst2(
        tmp_path / "sst2", ["a good film\t1", "a bad film\t0", "Good Good\t1"], ["fine\t1"]
    )
    words = ["film", "GOOD", "absent", "a"]  # the file's case need not match (lowercase: true)
    vectors = torch.arange(16, dtype=torch.float).view(4, 4) + 1
    save_word2vec_format(tmp_path / "w2v.txt", words, vectors)
    data = SST2DataModule(
        data_dir=str(folder), word_vectors=str(tmp_path / "w2v.txt"), cache_dir=str(tmp_path / "c")
    )
    model = tiny_model(
        vocab_size=data.vocab_size, n_embd=4, pretrained_embeddings=data.pretrained_embeddings
    )
    random_init = tiny_model(vocab_size=data.vocab_size, n_embd=4).embedding.weight
    weight = model.embedding.weight.detach()
    torch.testing.assert_close(weight[data.vocab["film"]], vectors[0])
    torch.testing.assert_close(weight[data.vocab["good"]], vectors[1])
    torch.testing.assert_close(weight[data.vocab["a"]], vectors[3])
    # "bad" is not in the file: its row keeps the same random init as without vectors.
    torch.testing.assert_close(weight[data.vocab["bad"]], random_init[data.vocab["bad"]])
    aligned = io.BytesIO(read_payload(data.pretrained_embeddings))  # a checked cache file
    assert torch.load(aligned, weights_only=True)["found"].sum() == 3

    with pytest.raises(Exception, match="n_embd=4"):
        tiny_model(
            vocab_size=data.vocab_size, n_embd=8, pretrained_embeddings=data.pretrained_embeddings
        )


def test_checkpoint_loads_where_the_aligned_vectors_file_is_gone(tmp_path):
    vectors = {"vectors": torch.ones(30, 8), "found": torch.ones(30, dtype=torch.bool)}
    torch.save(vectors, tmp_path / "aligned.pt")
    model = tiny_model(pretrained_embeddings=str(tmp_path / "aligned.pt"))
    assert (model.embedding.weight == 1).all()
    (tmp_path / "aligned.pt").unlink()  # e.g. the checkpoint moved to another machine
    with pytest.warns(UserWarning, match="not found"):
        elsewhere = tiny_model(pretrained_embeddings=str(tmp_path / "aligned.pt"))
    elsewhere.load_state_dict(model.state_dict())
    assert (elsewhere.embedding.weight == 1).all()
