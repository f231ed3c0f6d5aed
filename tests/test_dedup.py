"""Near-duplicate removal: MinHash LSH on planted duplicates, and the `dedup` option of the
language-modelling datamodules on small corpora written here (Tiny Shakespeare and WikiText
formats), down to one `fit` from the command line."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from core.errors import DataError, UserError
from datamodules import dedup
from datamodules.dedup import blank_line_blocks, drop_near_duplicates
from datamodules.tinyshakespeare import TinyShakespeareDataModule
from datamodules.wikitext2 import FILE_SPLITS, WikiText2DataModule
from tests.conftest import ROOT, TINY_GPT, config, run_cli

VOCAB = [f"{a}{b}{c}" for a in "bcdfgklmnp" for b in "aeiou" for c in "rstvxz"]  # 300 words


def random_words(rng: random.Random, n: int) -> list[str]:
    return [rng.choice(VOCAB) for _ in range(n)]


def changed(words: list[str], positions: list[int]) -> list[str]:
    """`words` with the words at `positions` replaced by ones that occur nowhere else."""
    out = list(words)
    for p in positions:
        out[p] = f"changed{p}"
    return out


# --- drop_near_duplicates ------------------------------------------------------------------
def planted_corpus() -> tuple[list[str], dict[int, int]]:
    """20 distinct documents of 300 words, then planted copies: 3 words changed (Jaccard of
    5-word shingles 281/311 = 0.90), an exact copy, and a copy of a copy."""
    rng = random.Random(0)
    base = [random_words(rng, 300) for _ in range(20)]
    docs = [" ".join(words) for words in base]
    planted = {
        20: 4,  # a few words changed
        21: 11,  # exact copy
        22: 4,  # three other words changed: a near-duplicate of 4 (and of 20, which is dropped)
        23: 0,  # same words, other case and spacing
    }
    docs.append(" ".join(changed(base[4], [50, 150, 250])))
    docs.append(docs[11])
    docs.append(" ".join(changed(base[4], [30, 130, 230])))
    docs.append("  " + "\n".join(base[0]).upper() + "\n")
    return docs, planted


def test_lsh_drops_planted_near_duplicates_and_keeps_distinct_documents():
    docs, planted = planted_corpus()
    result = drop_near_duplicates(docs)
    assert result.kept == list(range(20))  # every original, in order
    assert dict(result.dropped) == planted  # each copy, against the first occurrence


def test_batches_change_nothing(monkeypatch):
    docs, _ = planted_corpus()
    whole = drop_near_duplicates(docs, shingle="char")
    monkeypatch.setattr(dedup, "_BATCH", 3000)  # about two documents a batch
    assert drop_near_duplicates(docs, shingle="char") == whole


def test_character_shingles_catch_typos():
    rng = random.Random(1)
    docs = [" ".join(random_words(rng, 80)) for _ in range(5)]
    typo = docs[2][:100] + docs[2][100:].replace("a", "e", 2)  # two characters changed
    result = drop_near_duplicates([*docs, typo], shingle="char", shingle_size=5)
    assert result.dropped == [(5, 2)] and result.kept == list(range(5))


def test_threshold_is_respected():
    """A document sharing its first 150 words of 200 with another: Jaccard 146/246 = 0.59."""
    rng = random.Random(2)
    a = random_words(rng, 200)
    b = a[:150] + [f"other{i}" for i in range(50)]
    docs = [" ".join(a), " ".join(b)]
    assert drop_near_duplicates(docs, threshold=0.8).dropped == []
    assert drop_near_duplicates(docs, threshold=0.4).dropped == [(1, 0)]


def test_empty_and_short_documents():
    docs = ["", "   \n", "", "to be", "to be", "TO  be\n", "to see", "or not to be"]
    result = drop_near_duplicates(docs)
    # Documents without text are kept and never matched; shorter than a shingle, a document
    # matches only a copy of itself (after lower-casing and whitespace).
    assert result.kept == [0, 1, 2, 3, 6, 7]
    assert result.dropped == [(4, 3), (5, 3)]


def test_deterministic_across_runs_and_processes(tmp_path):
    docs, _ = planted_corpus()
    first = drop_near_duplicates(docs, threshold=0.5, num_perm=64, seed=7)
    assert drop_near_duplicates(docs, threshold=0.5, num_perm=64, seed=7) == first
    # Python's own str hash changes with PYTHONHASHSEED; the shingle hashes must not. The
    # module alone is loaded (numpy and datasketch), not the package with torch.
    (tmp_path / "docs.json").write_text(json.dumps(docs))
    code = (
        "import importlib.util, json, sys; "
        "spec = importlib.util.spec_from_file_location('dedup', sys.argv[1]); "
        "m = sys.modules['dedup'] = importlib.util.module_from_spec(spec); "
        "spec.loader.exec_module(m); "
        "docs = json.load(open(sys.argv[2])); "
        "print(m.drop_near_duplicates(docs, 0.5, 64, 5, 7).dropped)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(ROOT / "datamodules" / "dedup.py"), "docs.json"],
        env={"PYTHONHASHSEED": "12345", "OMP_NUM_THREADS": "1"},  # not this process's
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == str(first.dropped)


def test_blank_line_blocks_join_back_to_the_lines():
    lines = ["\n", "A:\n", "speech\n", "\n", "\n", "B:\n", "more\n"]
    docs = blank_line_blocks(lines)
    assert docs == [["\n"], ["A:\n", "speech\n", "\n", "\n"], ["B:\n", "more\n"]]
    assert sum(docs, []) == lines


# --- the datamodule option -----------------------------------------------------------------
def speech(rng: random.Random, words: list[str] | None = None) -> str:
    words = words or random_words(rng, 100)
    return f"{rng.choice(['ROMEO', 'JULIET', 'NURSE'])}:\n" + " ".join(words) + "\n\n"


def write_shakespeare(folder: Path) -> tuple[str, str]:
    """A Tiny Shakespeare-format file of 30 speeches, two of them planted near the end (in
    the validation part): a copy of speech 3 with a word changed (Jaccard 0.90) and a copy of
    speech 5. Returns the two planted speeches."""
    rng = random.Random(3)
    words = [random_words(rng, 100) for _ in range(28)]
    speeches = [speech(rng, w) for w in words]
    near = "ROMEO:\n" + " ".join(changed(words[3], [50])) + "\n\n"
    speeches[3] = "ROMEO:\n" + " ".join(words[3]) + "\n\n"
    speeches += [near, speeches[5]]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "input.txt").write_text("".join(speeches))
    return near, speeches[5]


def test_shakespeare_drops_planted_speeches_before_the_split(tmp_path):
    near, exact = write_shakespeare(tmp_path / "shakespeare")
    text = (tmp_path / "shakespeare" / "input.txt").read_text()
    kwargs = dict(data_dir=str(tmp_path / "shakespeare"), block_size=8, train_fraction=0.5)

    plain = TinyShakespeareDataModule(**kwargs)
    assert plain.dedup_report is None
    assert "".join(plain.lines()["train"] + plain.lines()["val"]) == text  # off: as before

    data = TinyShakespeareDataModule(**kwargs, dedup=True)
    lines = data.lines()
    kept = "".join(lines["train"] + lines["val"])
    assert kept == text[: -len(near + exact)]  # both planted speeches dropped, nothing else
    assert lines["test"] is lines["val"]  # test still reuses the validation text
    assert len("".join(lines["train"])) == int(len(kept) * 0.5)  # the cut is made after
    report = data.dedup_report
    assert (report["documents"], report["dropped"]) == (30, 2)
    assert report["by_split"] == {"text": {"documents": 30, "dropped": 2}}
    assert report["examples"][0]["dropped"].startswith("ROMEO: " + near.split()[1])


def test_cache_key_follows_the_settings_and_the_report_is_cached(tmp_path, caplog):
    write_shakespeare(tmp_path / "shakespeare")
    kwargs = dict(data_dir=str(tmp_path / "shakespeare"), block_size=8)
    off = TinyShakespeareDataModule(**kwargs)
    on = TinyShakespeareDataModule(**kwargs, dedup=True)
    looser = TinyShakespeareDataModule(**kwargs, dedup=True, dedup_threshold=0.5)
    chars = TinyShakespeareDataModule(**kwargs, dedup=True, dedup_shingle="char")
    # Off, the key is what it was before the option existed (dedup settings unread).
    assert off.cache.folder == TinyShakespeareDataModule(**kwargs, dedup_threshold=0.5).cache.folder
    keys = {m.cache.folder for m in (off, on, looser, chars)}
    assert len(keys) == 4

    on.prepare_data()  # dedups, trains the tokenizer, caches the token ids and the report
    assert len(on.encoded("val")) < len(off.encoded("val"))  # the planted text is gone
    again = TinyShakespeareDataModule(**kwargs, dedup=True)
    caplog.clear()
    with caplog.at_level("INFO"):
        assert again.dedup_report == on.dedup_report  # read back without re-reading the text
    assert again._lines == {}
    assert "near-duplicate removal (cached): dropped 2 of 30" in caplog.text


def write_wikitext(folder: Path) -> dict[str, list[str]]:
    """A WikiText-format folder whose train split repeats a test article (a word changed)
    and one of its own articles, and whose val split (file valid.txt) repeats a test article
    exactly."""
    rng = random.Random(4)

    def article(title: str, words: list[str]) -> str:
        return f" \n = {title} = \n \n = = Part = = \n \n {' '.join(words)} \n"

    body = {name: random_words(rng, 120) for name in "ABCDEFGH"}
    splits = {
        "test": [article("A", body["A"]), article("B", body["B"])],
        "val": [article("C", body["C"]), article("B", body["B"])],
        "train": [
            article("D", body["D"]),
            article("A", changed(body["A"], [60])),
            article("E", body["E"]),
            article("D", body["D"]),
            article("F", body["F"]),
        ],
    }
    folder.mkdir(parents=True, exist_ok=True)
    for split, articles in splits.items():
        (folder / f"{FILE_SPLITS[split]}.txt").write_text("".join(articles))
    return splits


def test_wikitext_drops_from_the_later_split_and_never_from_test(tmp_path):
    splits = write_wikitext(tmp_path / "wiki")
    data = WikiText2DataModule(data_dir=str(tmp_path / "wiki"), dedup=True, block_size=8)
    lines = data.lines()
    assert "".join(lines["test"]) == "".join(splits["test"])
    assert "".join(lines["val"]) == splits["val"][0]  # B is test's
    train = splits["train"]
    assert "".join(lines["train"]) == train[0] + train[2] + train[4]  # not test's A, not D twice
    report = data.dedup_report
    assert report["by_split"] == {
        "test": {"documents": 2, "dropped": 0},
        "val": {"documents": 2, "dropped": 1},
        "train": {"documents": 5, "dropped": 2},
    }
    assert [(e["from"], e["in"]) for e in report["examples"]] == [
        ("val", "test"),
        ("train", "test"),
        ("train", "train"),
    ]
    assert report["examples"][1]["dropped"].startswith("= A = = = Part")


def test_wikitext_documents_are_articles(wikitext_dir):
    data = WikiText2DataModule(data_dir=str(wikitext_dir))
    lines = data.lines()["train"]
    docs = data.documents(lines)
    assert sum(docs, []) == lines  # nothing lost or moved
    titles = [line for line in lines if line.startswith(" = ") and not line.startswith(" = = ")]
    assert len(docs) == len(titles) == 60  # one document per article, sections inside it
    first_lines = [next(line for line in doc if line.strip()) for doc in docs]
    assert first_lines == titles  # each starts at its heading (after the blank lines before it)


def test_a_split_emptied_by_dedup_is_a_clear_error(tmp_path):
    splits = write_wikitext(tmp_path / "wiki")
    (tmp_path / "wiki" / "valid.txt").write_text("".join(splits["test"]))  # val repeats test
    data = WikiText2DataModule(data_dir=str(tmp_path / "wiki"), dedup=True)
    with pytest.raises(DataError, match="val split is empty.*near-duplicate.*dedup: false"):
        data.lines()


def test_bad_dedup_settings_are_user_errors(tmp_path):
    write_shakespeare(tmp_path / "s")
    for bad in ({"dedup_threshold": 0.0}, {"dedup_num_perm": 1}):
        with pytest.raises(UserError, match="data.init_args.dedup_"):
            TinyShakespeareDataModule(data_dir=str(tmp_path / "s"), dedup=True, **bad)
    # A closed choice is the CLI parser's to check: one line naming the key, exit 2.
    proc = run_cli(
        "fit",
        "--config",
        config("gpt_shakespeare_char_cpu.yaml"),
        f"--data.init_args.data_dir={tmp_path / 's'}",
        "--data.init_args.dedup_shingle=line",
        check=False,
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "dedup_shingle" in proc.stderr and "'word', 'char'" in proc.stderr


def test_cli_fit_with_dedup_logs_the_dropped_count(tmp_path):
    write_shakespeare(tmp_path / "shakespeare")
    proc = run_cli(
        "fit",
        "--config",
        config("gpt_shakespeare_char_cpu.yaml"),
        f"--data.init_args.data_dir={tmp_path / 'shakespeare'}",
        "--data.init_args.dedup=true",
        *TINY_GPT,
        "--data.init_args.block_size=16",
        "--trainer.max_steps=2",
        "--trainer.val_check_interval=2",
        "--trainer.limit_val_batches=1",
        "--trainer.logger=CSVLogger",
        "--trainer.logger.save_dir=csv",
    )
    output = proc.stdout + proc.stderr
    assert "near-duplicate removal: dropped 2 of 30 tinyshakespeare documents" in output
    assert "dropped from text: 'ROMEO:" in output
    # The resolved config the run saved has every dedup key, readable at the data's level.
    (saved,) = Path("csv").rglob("config.yaml")
    data = yaml.safe_load(saved.read_text())["data"]["init_args"]
    assert data["dedup"] is True and data["dedup_threshold"] == 0.8
    assert (data["dedup_num_perm"], data["dedup_shingle_size"], data["dedup_shingle"]) == (
        128,
        5,
        "word",
    )
