"""Translation through the command line, as a user drives it: every translation config trains
a few steps and tests with BLEU; `translate` turns sentences into text; bad input gets one
clear error; TranslationSamples logs rows and, for attention models, heatmaps."""

from __future__ import annotations

import gzip
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from cli.app import main
from tests.conftest import SHARED_DATA, config, need_corpus, run_cli

CORPUS = {
    "seq2seq_multi30k": "multi30k",
    "seq2seq_attention_multi30k": "multi30k",
    "transformer_multi30k": "multi30k",
    "transformer_tatoeba_zh_en": "tatoeba-cmn-eng",
}
# Tiny sizes: each run takes seconds on two CPU cores.
TINY_MODEL = {
    "seq2seq_multi30k": [
        "--model.init_args.n_embd=16",
        "--model.init_args.n_hidden=24",
        "--model.init_args.n_layer=1",
    ],
    "seq2seq_attention_multi30k": [
        "--model.init_args.n_embd=16",
        "--model.init_args.encoder_n_hidden=16",
        "--model.init_args.decoder_n_hidden=24",
    ],
    "transformer_multi30k": [
        "--model.init_args.n_layer=1",
        "--model.init_args.n_head=2",
        "--model.init_args.n_embd=16",
        "--model.init_args.n_ff=32",
    ],
}
TINY_MODEL["transformer_tatoeba_zh_en"] = TINY_MODEL["transformer_multi30k"]
TINY_RUN = [
    "--data.init_args.batch_size=8",
    "--model.init_args.max_new_tokens=8",  # untrained models rarely stop by themselves
    "--model.init_args.test_num_beams=2",
    "--trainer.max_steps=6",
    "--trainer.limit_train_batches=6",  # one short epoch, then its validation
    "--trainer.limit_val_batches=2",  # an int: 1 would read as 1.0, all of them
    "--trainer.limit_test_batches=2",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.enable_progress_bar=false",
]
ATTENTION = "seq2seq_attention_multi30k"  # the config the translate tests use


class Run:
    """One tiny `fit` of a config in its own folder; the checkpoints it leaves."""

    def __init__(self, name: str, folder: Path, env: dict[str, str]):
        self.name, self.folder, self.env = name, folder, env
        self.args = ["--config", config(f"{name}.yaml"), *TINY_MODEL[name], *TINY_RUN]
        run_cli("fit", *self.args, cwd=folder, env=env)
        (self.run_dir,) = (folder / "seqmodels").iterdir()
        self.last = self.run_dir / "checkpoints" / "last.ckpt"

    def cli(self, subcommand: str, *args: str, check: bool = True):
        return run_cli(
            subcommand,
            *self.args,
            "--ckpt_path",
            str(self.last),
            *args,
            cwd=self.folder,
            env=self.env,
            check=check,
        )


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """fitted(name): the tiny run of that config, trained once for the whole module. The
    attention model's run logs to W&B offline, to check the table and images it writes."""
    cache = tmp_path_factory.mktemp("cache")  # one tokenizer per corpus for all runs
    runs: dict[str, Run] = {}

    def fit(name: str) -> Run:
        need_corpus(CORPUS[name])
        if name not in runs:
            env = {
                "DATA_DIR": str(SHARED_DATA),
                "XDG_CACHE_HOME": str(cache),
                "WANDB_MODE": "offline" if name == ATTENTION else "disabled",
            }
            runs[name] = Run(name, tmp_path_factory.mktemp(name), env)
        return runs[name]

    return fit


def in_process(run: Run, monkeypatch, capsys, subcommand: str, *args: str):
    """`main.py SUBCOMMAND` on the run's checkpoint, inside pytest: the same CLI without a
    subprocess's ~5 s of imports. Returns (exit status, stdout, stderr)."""
    for key, value in run.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setattr(sys, "argv", ["main.py"])  # pytest's own arguments are not the CLI's
    capsys.readouterr()
    try:
        main([subcommand, *run.args, "--ckpt_path", str(run.last), *args])
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_each_config_fits_then_tests_with_bleu(fitted, name, monkeypatch, capsys):
    run = fitted(name)
    assert run.last.is_file()
    assert len(list(run.last.parent.glob("best-*.ckpt"))) == 1
    status, out, err = in_process(run, monkeypatch, capsys, "test")
    assert status == 0, err
    for metric in ("test/bleu", "test/bleu_tok", "test/sacrebleu_cased", "test/chrf", "test/loss"):
        match = re.search(rf"{re.escape(metric)}\s+[│|]?\s*([-\d.e]+)", out)
        assert match, f"{metric} not in the test output:\n{out}"
        if metric != "test/loss":
            assert 0.0 <= float(match.group(1)) <= 100.0  # BLEU x 100
    assert "test/sacrebleu_cased: nrefs:1|case:mixed|eff:no|tok:13a" in out  # its signature
    assert "test/chrf: nrefs:1|case:mixed" in out


def test_translate_prints_text_for_sentences_and_files_alike(fitted, tmp_path):
    run = fitted(ATTENTION)
    sentences = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee."]
    source = tmp_path / "source.de"
    source.write_text("Eine Frau liest.\n" + "\n".join(sentences) + "\n", encoding="utf-8")
    target = tmp_path / "out" / "translation.en"
    proc = run.cli(
        "translate",
        *("--text+", sentences[0], "--text+", sentences[1]),
        *("--input_file", str(source), "--output_file", str(target)),
    )
    lines = proc.stdout.splitlines()[-5:]  # the --text sentences first, then the file's
    assert len(lines) == 5, proc.stdout
    assert target.read_text(encoding="utf-8").splitlines() == lines
    assert lines[3:] == lines[:2]  # a sentence translates alike alone or among others
    assert all(not re.fullmatch(r"[\d\s,\[\]]+", t) for t in lines if t)  # words, not ids
    assert not list(target.parent.glob(".*.tmp"))  # written atomically: no leftovers


def test_translate_with_greedy_decoding_and_a_length_limit(fitted, monkeypatch, capsys):
    args = ["--text", "Ein Hund rennt.", "--num_beams", "1", "--max_new_tokens", "3"]
    status, out, err = in_process(fitted(ATTENTION), monkeypatch, capsys, "translate", *args)
    assert status == 0, err
    (translation,) = out.splitlines()
    assert len(translation.split()) <= 3  # word-level vocabulary: a token is at most a word


def test_translate_says_when_it_cuts_a_long_sentence(fitted, monkeypatch, capsys):
    long = " ".join(["Ein Hund rennt."] * 40)  # 160 words and stops, over max_length 100
    args = ["--text", long, "--num_beams", "1"]
    status, out, err = in_process(fitted(ATTENTION), monkeypatch, capsys, "translate", *args)
    assert status == 0, err
    assert "161 tokens, cut to the model's block_size" in err  # said, not silent
    assert len(out.splitlines()) == 1


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda d: ["--input_file", str(d / "missing.de")], "missing.de: no such file"),
        (
            lambda d: ["--input_file", _write(d / "gap.de", "Ein Mann.\n\nEine Frau.\n")],
            "gap.de, line 2: empty sentence",
        ),
        (lambda d: ["--text", "我们"], "no word of '我们' is in the vocabulary; is it de?"),
        (lambda d: ["--text", "Ein Mann.", "--num_beams", "0"], "--num_beams 0: must be"),
        (lambda d: [], "give sentences to translate"),
    ],
    ids=["missing-file", "empty-line", "other-language", "no-beams", "nothing"],
)
def test_translate_bad_input_gets_one_clear_error(
    fitted, tmp_path, monkeypatch, capsys, make_input, message
):
    run = fitted(ATTENTION)
    status, _, err = in_process(run, monkeypatch, capsys, "translate", *make_input(tmp_path))
    assert status == 2
    assert "error: " in err and message in err
    assert "Traceback" not in err


def _write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_translation_samples_log_a_table_and_heatmaps_for_attention(fitted):
    run = fitted(ATTENTION)
    heatmaps = sorted((run.run_dir / "translation_samples").glob("*.png"))
    assert heatmaps, "no heatmap written"
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in heatmaps)

    (table,) = run.folder.glob("wandb/offline-run-*/files/media/table/translations_*.table.json")
    logged = json.loads(table.read_text())
    assert logged["columns"] == ["step", "source", "reference", "hypothesis"]
    with gzip.open(SHARED_DATA / "multi30k" / "val.de.gz", "rt", encoding="utf-8") as f:
        german = f.read().splitlines()
    with gzip.open(SHARED_DATA / "multi30k" / "val.en.gz", "rt", encoding="utf-8") as f:
        english = f.read().splitlines()
    assert len(logged["data"]) == 4  # n_samples at the one validation
    for step, source, reference, _ in logged["data"]:
        assert step == 6
        assert english[german.index(source)] == reference  # a validation pair, as in the corpus

    images = list(run.folder.glob("wandb/offline-run-*/files/media/images/cross_attention/*.png"))
    assert len(images) == len(heatmaps)


def test_translation_samples_draw_no_heatmap_without_attention(fitted):
    run = fitted("seq2seq_multi30k")
    assert not (run.run_dir / "translation_samples").exists()


@pytest.mark.parametrize("name", sorted(CORPUS))
def test_print_config_resolves_every_key(name, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["fit", "--config", config(f"{name}.yaml"), "--print_config"])
    assert exit_.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["class_path"].startswith("lit_models.")
    assert printed["model"]["init_args"]["test_num_beams"] == 5
    classes = [c["class_path"] for c in printed["trainer"]["callbacks"]]
    assert "callbacks.TranslationSamples" in classes
