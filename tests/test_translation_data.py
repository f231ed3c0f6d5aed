"""Translation data: the joint tokenizer, the batch contract, length bucketing, Multi30k and
Tatoeba (the split), and clear errors for bad corpus files."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader, DistributedSampler

from core.errors import DataError, UserError
from datamodules import Multi30kDataModule, TatoebaZhEnDataModule
from datamodules.bucketing import BucketBatchSampler
from datamodules.resumable import EpochRandomSampler
from datamodules.tatoeba import read_tatoeba, split_by_sentence
from datamodules.tokenizers import (
    decode_translation,
    detokenize,
    train_translation_tokenizer,
    translation_tokens,
)
from datamodules.translation import collate_pairs
from tests.conftest import need_corpus, quiet_trainer

SENTENCES = [
    "Two young, White males are outside near many bushes.",
    "It's a man's T-shirt, isn't it?",
    'A dog (brown) runs: "fast"!',
    "Ein Mann in einem roten Hemd; er lacht.",
    "Er hat 3.50 Euro.",
    "我用手机打電話，你呢？",
    "The boys' toys are red.",
]
# A tiny parallel corpus: every word occurs at least twice, so nothing becomes <unk>.
DE = [
    "ein hund läuft.",
    "eine katze schläft.",
    "ein mann liest ein buch.",
    "zwei hunde spielen.",
]
EN = ["a dog runs.", "a cat sleeps.", "a man reads a book.", "two dogs play."]


def write_multi30k(folder: Path, pairs_per_split: dict[str, tuple[list[str], list[str]]]) -> Path:
    """Multi30k's layout with the given (german, english) lines; train gzipped, the rest plain."""
    folder.mkdir(parents=True, exist_ok=True)
    stems = {"train": "train", "val": "val", "test": "test_2016_flickr"}
    for split, (de, en) in pairs_per_split.items():
        for lang, lines in (("de", de), ("en", en)):
            text = "".join(line + "\n" for line in lines).encode()
            if split == "train":
                (folder / f"{stems[split]}.{lang}.gz").write_bytes(gzip.compress(text))
            else:
                (folder / f"{stems[split]}.{lang}").write_bytes(text)
    return folder


def tiny_multi30k(folder: Path, repeat: int = 3) -> Path:
    return write_multi30k(
        folder,
        {"train": (DE * repeat, EN * repeat), "val": (DE[:3], EN[:3]), "test": (DE[1:], EN[1:])},
    )


def normalised(text: str) -> str:
    """What the tokenizers see: NFKC and lower case (so decode(encode(x)) gives this back)."""
    import unicodedata

    return unicodedata.normalize("NFKC", text).lower()


# --- tokenizer ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_tokenizer_special_ids_are_fixed(kind):
    tok = train_translation_tokenizer(kind, SENTENCES * 2, vocab_size=300, min_freq=1)
    assert [tok.id_to_token(i) for i in range(4)] == ["<pad>", "<bos>", "<eos>", "<unk>"]


@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_decode_of_encode_gives_the_text_back(kind):
    tok = train_translation_tokenizer(kind, SENTENCES * 2, vocab_size=300, min_freq=2)
    for sentence in SENTENCES:
        ids = tok.encode(sentence)
        assert 3 not in ids  # no <unk>: every token was seen twice
        # <bos> and <pad> are dropped, decoding stops at <eos>
        assert decode_translation(tok, [1, *ids, 2, 7, 0]) == normalised(sentence)
    assert tok.kind == kind and (tok.eos_id, tok.unk_id) == (2, 3)


def test_word_tokens_split_punctuation_and_chinese_characters():
    assert translation_tokens("It's a T-shirt.") == ["it", "'", "s", "a", "t", "-", "shirt", "."]
    assert translation_tokens("我用iPhone打電話。") == [
        "我",
        "用",
        "iphone",
        "打",
        "電",
        "話",
        "。",
    ]
    assert translation_tokens("Hi", lowercase=False) == ["Hi"]
    assert detokenize(["a", "(", "b", ")", "c", '"', "d", '"', ",", "e", "."]) == 'a (b) c "d", e.'
    assert detokenize(["boys", "'", "toys"]) == "boys' toys"
    assert detokenize(["at", "6", ":", "30", "p", ".", "m", ".", "o", "'", "clock"]) == (
        "at 6:30 p.m. o'clock"
    )
    assert detokenize(["er", "sagt", ":", "„", "ja", "“", "."]) == "er sagt: „ja“."
    assert detokenize(["我", "用", "iphone", "。"]) == "我用iphone。"


def test_min_freq_turns_rare_words_into_unk():
    tok = train_translation_tokenizer("word", ["a b b", "a c"], min_freq=2)
    assert tok.encode("a b c") == [
        tok.token_to_id("a"),
        tok.token_to_id("b"),
        3,
    ]


# --- batches ------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["word", "bpe"])
def test_batches_follow_the_contract(tmp_path, kind):
    dm = Multi30kDataModule(
        data_dir=str(tiny_multi30k(tmp_path / "m")), tokenizer=kind, bpe_vocab_size=60, batch_size=5
    )
    assert dm.vocab_size == dm.tokenizer.vocab_size and dm.block_size == 102
    dm.prepare_data()
    dm.setup("fit")
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader()):
        for batch in loader:
            source, target = batch["source"], batch["target"]
            assert source.dtype == target.dtype == torch.long
            assert len(batch["source_text"]) == len(batch["target_text"]) == len(source)
            assert len(target) == len(source)
            assert (target[:, 0] == 1).all()  # <bos>
            for ids, mask, text in (
                (source, source != 0, batch["source_text"]),
                (target, target != 0, batch["target_text"]),
            ):
                lengths = mask.sum(1)
                # right-padded: all real tokens first, then only <pad>
                assert (mask == (torch.arange(ids.size(1)) < lengths[:, None])).all()
                assert (ids[torch.arange(len(ids)), lengths - 1] == 2).all()  # ends with <eos>
                assert lengths.max() == ids.size(1)  # no all-padding column
                for row, raw in zip(ids.tolist(), text, strict=True):
                    assert dm.decode(row) == normalised(raw)  # the texts align with the ids
    assert {t for b in dm.val_dataloader() for t in b["target_text"]} == set(EN[:3])


def test_helpers_for_models_and_callbacks(tmp_path):
    dm = Multi30kDataModule(data_dir=str(tiny_multi30k(tmp_path / "m")), max_length=3)
    ids = dm.encode_source("Ein Hund fliegt")
    assert ids[-1] == 2 and dm.decode(ids) == "ein hund <unk>"
    assert len(dm.encode_source("ein hund läuft . ein hund")) == 3 + 1  # truncated + <eos>
    for empty in ("", "   "):
        with pytest.raises(ValueError, match="empty"):
            dm.encode_source(empty)
    assert dm.bleu_tokens("A Dog's toy.") == ["a", "dog", "'", "s", "toy", "."]
    assert dm.lowercase is True and (dm.source_lang, dm.target_lang) == ("de", "en")


def test_length_filter_drops_long_train_pairs_and_truncates_evaluation(tmp_path):
    long_de, long_en = "ein " * 8 + "hund.", "a " * 8 + "dog ."  # 10 tokens each
    folder = write_multi30k(
        tmp_path / "m",
        {
            "train": (DE * 2 + [long_de, "ein hund."], EN * 2 + ["a dog.", long_en]),
            "val": ([long_de, "ein hund."], [long_en, "a dog."]),
            "test": (DE, EN),
        },
    )
    dm = Multi30kDataModule(data_dir=str(folder), max_length=6, batch_size=4)
    dm.setup()
    assert len(dm.train_set) == 8  # both pairs with a 10-token side are gone
    assert len(dm.val_set) == 2  # evaluation keeps every sentence ...
    batch = next(iter(dm.val_dataloader()))
    assert batch["source"].size(1) <= dm.block_size and batch["target"].size(1) <= dm.block_size
    assert batch["target"].size(1) == 6 + 2  # ... truncated to max_length, + <bos>, <eos>
    assert long_en in batch["target_text"]  # the reference stays whole
    with pytest.raises(UserError, match="max_length"):
        Multi30kDataModule(data_dir=str(folder), max_length=1).train_dataloader()


# --- bucketing and sampling ---------------------------------------------------------------
def padding_fraction(batches) -> float:
    pad = total = 0
    for batch in batches:
        for key in ("source", "target"):
            pad += (batch[key] == 0).sum().item()
            total += batch[key].numel()
    return pad / total


@pytest.fixture(scope="module")
def multi30k(tmp_path_factory) -> Multi30kDataModule:
    """The shared Multi30k, tokenized once for this module's tests."""
    data = need_corpus("multi30k")
    dm = Multi30kDataModule(
        data_dir=str(data), cache_dir=str(tmp_path_factory.mktemp("cache")), batch_size=128
    )
    dm.setup()
    return dm


def test_bucketing_pads_far_less_than_random_batches(multi30k):
    bucketed = padding_fraction(multi30k.train_dataloader())
    random_order = padding_fraction(
        DataLoader(
            multi30k.train_set,
            batch_size=128,
            shuffle=True,
            collate_fn=collate_pairs,
            generator=torch.Generator().manual_seed(0),
        )
    )
    print(f"padding in a training epoch: bucketed {bucketed:.1%}, random {random_order:.1%}")
    assert bucketed < random_order / 4  # about 8% against 52%


def test_training_order_is_seeded_and_changes_every_epoch(tmp_path):
    lengths = np.random.default_rng(0).integers(1, 30, size=(500, 2))

    def epoch_batches(seed: int, epoch: int) -> list[list[int]]:
        sampler = EpochRandomSampler(range(500), seed=seed)
        sampler.set_epoch(epoch)
        batches = BucketBatchSampler(sampler, 16, lengths=lengths, shuffle=True, seed=seed)
        return list(batches)

    first = epoch_batches(0, 0)
    assert first == epoch_batches(0, 0)
    assert first != epoch_batches(0, 1) and first != epoch_batches(1, 0)
    assert sorted(i for b in first for i in b) == list(range(500))  # every pair once
    assert len(first) == len(
        BucketBatchSampler(EpochRandomSampler(range(500)), 16, lengths=lengths)
    )
    # evaluation: in length order, every example exactly once
    ordered = [i for b in BucketBatchSampler(range(500), 16, lengths=lengths) for i in b]
    assert sorted(ordered) == list(range(500))
    keys = [(max(lengths[i]), sum(lengths[i])) for i in ordered]  # the longer side, then both
    assert keys == sorted(keys)


@pytest.mark.parametrize("shape", [(203,), (203, 2)])  # sentences, or pairs
@pytest.mark.parametrize("num_replicas", [1, 2, 3])
def test_ddp_shares_of_bucketed_batches_are_disjoint_covering_and_equal(shape, num_replicas):
    """The bucketing sampler of every datamodule, with the ranks given explicitly: in each
    epoch the ranks' batches are disjoint (but for the few indices repeated so that the
    shares are equal), together cover every example, come in equal numbers, and change
    with set_epoch."""
    lengths = np.random.default_rng(0).integers(1, 30, size=shape)
    n = shape[0]

    def epoch(e: int) -> list[list[list[int]]]:
        shares = []
        for rank in range(num_replicas):
            order = EpochRandomSampler(range(n), seed=3, rank=rank, num_replicas=num_replicas)
            order.set_epoch(e)
            sampler = BucketBatchSampler(order, 8, lengths=lengths, shuffle=True, seed=3)
            shares.append(list(sampler))
            assert len(shares[-1]) == len(sampler)
        return shares

    first = epoch(0)
    assert len({len(batches) for batches in first}) == 1  # equal numbers of batches
    seen = [i for batches in first for batch in batches for i in batch]
    assert set(seen) == set(range(n))  # covering
    assert len(seen) - n < num_replicas  # disjoint but for the padding of the last round
    for rank, batches in enumerate(first):
        others = {i for r, b in enumerate(first) if r != rank for batch in b for i in batch}
        mine = {i for batch in batches for i in batch}
        assert len(mine & others) < num_replicas
    assert epoch(0) == first and epoch(1) != first


def test_each_ddp_rank_gets_a_disjoint_shard(tmp_path):
    """Under DDP each rank buckets its own shard, whether the datamodule shards (Lightning's
    use_distributed_sampler=False) or Lightning swaps in its DistributedSampler (the default)."""
    from lightning.fabric.utilities.data import _replace_dunder_methods
    from lightning.pytorch.trainer.states import RunningStage
    from lightning.pytorch.utilities.data import _update_dataloader

    dm = Multi30kDataModule(data_dir=str(tiny_multi30k(tmp_path / "m", repeat=10)), batch_size=3)
    dm.setup()
    n = len(dm.train_set)  # 40

    def seen(loader) -> list[int]:
        return [i for batch in loader.batch_sampler for i in batch]

    # The datamodule shards by itself.
    own = []
    for rank in (0, 1):
        dm._shard = lambda rank=rank: (rank, 2)
        own.append(seen(dm.train_dataloader()))
    # Lightning's default: the loader is built inside its patching context (as the trainer
    # does) and its DistributedSampler is injected into our batch sampler.
    dm._shard = lambda: (0, 1)
    with _replace_dunder_methods(DataLoader, "dataset"), _replace_dunder_methods(BatchSampler):
        loader = dm.train_dataloader()
    injected = []
    for rank in (0, 1):
        sampler = DistributedSampler(dm.train_set, num_replicas=2, rank=rank, shuffle=True)
        new = _update_dataloader(loader, sampler, mode=RunningStage.TRAINING)
        assert isinstance(new.batch_sampler, BucketBatchSampler) and new.batch_sampler.shuffle
        injected.append(seen(new))
        assert len(new.batch_sampler) == len(list(new.batch_sampler))
    for shards in (own, injected):
        assert len(shards[0]) == len(shards[1]) == n // 2
        assert sorted(shards[0] + shards[1]) == list(range(n))


# --- Multi30k -----------------------------------------------------------------------------
def test_multi30k_reads_the_shared_files(multi30k):
    assert (len(multi30k.train_set), len(multi30k.val_set), len(multi30k.test_set)) == (
        29_000,
        1_014,
        1_000,
    )
    assert multi30k.train_set.source_texts[0].startswith("Zwei junge weiße Männer")
    assert multi30k.train_set.target_texts[0].startswith("Two young, White males")
    assert 5_000 < multi30k.vocab_size < 20_000


def test_multi30k_direction_switch_shares_the_tokenizer(multi30k):
    en_de = Multi30kDataModule(
        data_dir=str(multi30k.data_dir),
        cache_dir=str(multi30k.cache_dir),
        source_lang="en",
        target_lang="de",
    )
    assert en_de.tokenizer_path == multi30k.tokenizer_path  # joint: one for both directions
    en_de.setup()
    assert en_de.test_set.source_texts == multi30k.test_set.target_texts
    assert en_de.test_set.target_texts == multi30k.test_set.source_texts
    with pytest.raises(UserError, match="holds de, en"):
        Multi30kDataModule(source_lang="fr")
    with pytest.raises(UserError, match="both 'en'"):
        Multi30kDataModule(source_lang="en", target_lang="en")


def test_tokenizer_is_cached_under_the_xdg_cache(tmp_path):
    data = need_corpus("multi30k")
    dm = Multi30kDataModule(data_dir=str(data), batch_size=8)
    assert dm.tokenizer_path.parent.parent == tmp_path / "cache" / "seqmodels" / "multi30k"


def test_unknown_tokenizer_is_an_error_of_the_cli_parser(tmp_path):
    from tests.conftest import config, run_cli

    proc = run_cli(
        "fit",
        "--config",
        config("transformer_multi30k.yaml"),
        "--data.init_args.tokenizer=char",
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "tokenizer" in proc.stderr and "'word', 'bpe'" in proc.stderr


# --- Tatoeba ------------------------------------------------------------------------------
def test_tatoeba_split_is_disjoint_by_sentence_and_reproducible():
    pairs = read_tatoeba(need_corpus("tatoeba-cmn-eng") / "cmn.txt")
    assert len(pairs) == 23_610
    splits = split_by_sentence(pairs, seed=42)
    english = {split: set(s["en"]) for split, s in splits.items()}
    assert not (english["train"] & english["val"] or english["train"] & english["test"])
    assert not english["val"] & english["test"]
    assert sum(len(s["en"]) for s in splits.values()) == len(pairs)
    assert 1_000 < len(splits["val"]["en"]) < 1_400 and 1_000 < len(splits["test"]["en"]) < 1_400
    assert split_by_sentence(pairs, seed=42) == splits
    assert split_by_sentence(pairs, seed=7)["test"] != splits["test"]
    # an English sentence with several translations stays in one split
    repeated = next(e for e in english["train"] if sum(p[0] == e for p in pairs) > 1)
    assert repeated not in english["val"] | english["test"]


def test_tatoeba_datamodule_zh_to_en_by_character(tmp_path):
    folder = tmp_path / "t"
    folder.mkdir()
    digits = "零一二三四五六七八九"  # every character occurs in many sentences: none is <unk>
    number = [digits[i // 10] + digits[i % 10] for i in range(40)]
    lines = [f"Sentence {i}.\t句子{number[i]}號。\tCC-BY 2.0 (France)" for i in range(40)]
    (folder / "cmn.txt").write_text("\n".join(lines) + "\n")
    dm = TatoebaZhEnDataModule(data_dir=str(folder), min_freq=1, batch_size=8)
    dm.setup()
    assert sum(len(s) for s in (dm.train_set, dm.val_set, dm.test_set)) == 40
    batch = next(iter(dm.test_dataloader()))
    chinese = batch["source_text"][0]
    assert chinese.startswith("句子")
    assert dm.decode(batch["source"][0].tolist()) == normalised(chinese)
    assert dm.bleu_tokens(chinese)[:2] == ["句", "子"]
    assert batch["target_text"][0].startswith("Sentence")
    en_zh = TatoebaZhEnDataModule(data_dir=str(folder), source_lang="en", target_lang="zh")
    en_zh.setup()
    assert en_zh.test_set.source_texts == dm.test_set.target_texts


# --- bad input ----------------------------------------------------------------------------
def test_empty_line_names_file_and_line(tmp_path):
    folder = tiny_multi30k(tmp_path / "m")
    (folder / "val.en").write_text("a dog .\na cat .\n\na man .\n")
    (folder / "val.de").write_text("ein hund .\neine katze .\nein mann .\nein buch .\n")
    with pytest.raises(DataError, match=r"val\.en: line 3 is empty"):
        Multi30kDataModule(data_dir=str(folder)).prepare_data()


def test_mismatched_line_counts_name_both_files(tmp_path):
    folder = tiny_multi30k(tmp_path / "m")
    (folder / "test_2016_flickr.de").write_text("ein hund .\neine katze .\n")
    with pytest.raises(DataError) as err:
        Multi30kDataModule(data_dir=str(folder)).prepare_data()
    message = str(err.value)
    assert "test_2016_flickr.de has 2 lines" in message and "test_2016_flickr.en has 3" in message


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("Hello there. 你好。", "does not hold an English and a Chinese"),
        ("Hi.\t \tCC", "empty Chinese"),
    ],
)
def test_malformed_tatoeba_line_names_file_and_line(tmp_path, line, why):
    path = tmp_path / "cmn.txt"
    path.write_text(f"Hi.\t嗨。\tCC\n{line}\nRun.\t跑。\tCC\n")
    with pytest.raises(DataError, match=rf"cmn\.txt: line 2 .*{why}"):
        TatoebaZhEnDataModule(data_dir=str(tmp_path)).prepare_data()


def test_damaged_encoding_names_file_and_line(tmp_path):
    folder = tiny_multi30k(tmp_path / "m")
    (folder / "val.de").write_bytes(b"ein hund .\neine \xff katze .\nein mann .\n")
    with pytest.raises(DataError, match=r"val\.de: line 2 is not valid UTF-8"):
        Multi30kDataModule(data_dir=str(folder)).prepare_data()


@pytest.mark.parametrize("cls", [Multi30kDataModule, TatoebaZhEnDataModule])
@pytest.mark.parametrize("download", [True, False])
def test_missing_corpus_fails_at_once_offline(tmp_path, cls, download):
    dm = cls(data_dir=str(tmp_path / "nothing"), download=download)  # HF_*_OFFLINE is set
    with pytest.raises(DataError) as err:
        dm.vocab_size  # noqa: B018 - the CLI reads it first
    message = str(err.value)
    assert str(tmp_path / "nothing") in message and "data.init_args.data_dir" in message
    assert ("train.de[.gz]" if cls is Multi30kDataModule else "cmn.txt") in message


class _RecordingModel(L.LightningModule):
    """Trains nothing; writes which source sentences each rank saw in each epoch."""

    def __init__(self, out: str):
        super().__init__()
        self.out, self.w = out, torch.nn.Parameter(torch.zeros(1))
        self.seen: list[tuple[int, str]] = []

    def training_step(self, batch, _):
        self.seen += [(self.current_epoch, text) for text in batch["source_text"]]
        return (self.w * batch["source"].float().mean()).sum()

    def on_train_end(self):
        Path(self.out, f"rank{self.global_rank}.json").write_text(json.dumps(self.seen))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.slow
def test_ddp_training_epochs_are_disjoint_shards_in_a_new_order(tmp_path):
    """Two CPU processes, two epochs, Lightning's default use_distributed_sampler=True: in each
    epoch the ranks see disjoint halves of the train split, and the second epoch comes in
    another order. (With use_distributed_sampler=False the datamodule shards by itself: see
    test_each_ddp_rank_gets_a_disjoint_shard.)"""
    corpus = tmp_path / "m"
    de = [f"satz nummer {i}." for i in range(24)]
    en = [f"sentence number {i}." for i in range(24)]
    write_multi30k(corpus, {"train": (de, en), "val": (de[:4], en[:4]), "test": (de[:4], en[:4])})
    dm = Multi30kDataModule(data_dir=str(corpus), min_freq=1, batch_size=4)
    trainer = quiet_trainer(
        accelerator="cpu", strategy="ddp_spawn", devices=2, max_epochs=2, limit_val_batches=0
    )
    trainer.fit(_RecordingModel(str(tmp_path)), dm)
    seen = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    orders = []
    for epoch in (0, 1):
        shards = [[text for e, text in rank if e == epoch] for rank in seen]
        assert len(shards[0]) == len(shards[1]) == 12
        assert sorted(shards[0] + shards[1]) == sorted(de)
        orders.append(shards[0])
    assert orders[0] != orders[1]


# --- downloading (the network replaced by fakes: these machines reach no hub) ------------------
def test_multi30k_is_fetched_from_the_hub_in_the_local_layout(tmp_path, online, monkeypatch):
    import datasets

    rows = {"train": (DE * 3, EN * 3), "validation": (DE[:2], EN[:2]), "test": (DE[1:], EN[1:])}
    rows["train"][1][0] = "a dog\nruns."  # a stray newline must not shift the pairing
    calls = []

    def fake_load_dataset(path):
        calls.append(path)
        return datasets.DatasetDict(
            {s: datasets.Dataset.from_dict({"de": de, "en": en}) for s, (de, en) in rows.items()}
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    dm = Multi30kDataModule(data_dir=str(tmp_path / "m"), batch_size=4)
    assert dm.vocab_size > 4 and calls == ["bentrevett/multi30k"]
    assert (tmp_path / "m" / "val.de").read_text() == DE[0] + "\n" + DE[1] + "\n"
    assert (tmp_path / "m" / "test_2016_flickr.en").read_text().splitlines() == EN[1:]
    dm.setup()
    assert dm.train_set.target_texts[0] == "a dog runs."
    assert len(dm.train_set) == 12
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == sorted(  # only the corpus
        f"{stem}.{lang}" for stem in ("train", "val", "test_2016_flickr") for lang in ("de", "en")
    )
    assert dm.tokenizer_path.is_relative_to(tmp_path / "cache" / "seqmodels" / "multi30k")


def test_tatoeba_is_fetched_from_manythings(tmp_path, online, monkeypatch):
    import io
    import zipfile

    text = "".join(f"Go {i}.\t走{i}。\tCC-BY 2.0 (France)\n" for i in range(30))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("cmn.txt", text)
        z.writestr("_about.txt", "about")
    urls = []

    def fake_urlopen(request, timeout):
        urls.append(request.full_url)
        return io.BytesIO(archive.getvalue())

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    dm = TatoebaZhEnDataModule(data_dir=str(tmp_path / "t"), min_freq=1)
    assert dm.vocab_size > 4 and urls == ["https://www.manythings.org/anki/cmn-eng.zip"]
    assert (tmp_path / "t" / "cmn.txt").read_text() == text
