"""Bad input, one clear error: every model family and every datamodule, driven through the
command line in this process, given one bad setting or one bad data file, must stop with exit
status 2, print no traceback, and say in one `error:` line which key or which file is wrong.

The matrix is CASES, one `Case(name, args, expect_in_message)` a row (and `files` for a case
that needs a bad data folder). In `args` and in the expected fragments, `{bad}` is the case's
own folder, which `files` fills; every case reads tiny copies of the offline corpora
(`corpora`, set as $DATA_DIR), so that building a vocabulary takes a moment. A setting is
checked where the constructor reads it, before any data is read or any step is trained;
errors found only once `fit` starts (a data file read in `setup`) run with RUN_ONE_STEP.
"""

from __future__ import annotations

import gzip
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from tests.conftest import assert_one_clear_error, config, need_corpus, run_cli

# How many lines of each offline corpus the tiny copies keep: enough for every split and
# vocabulary to be non-empty, few enough that each case reads them in a moment.
TINY_CORPORA = {
    "tinyshakespeare/input.txt": 600,
    "wikitext-2-mini/train.txt": 200,
    "wikitext-2-mini/valid.txt": 100,
    "wikitext-2-mini/test.txt": 100,
    "names.txt": 500,
    "multi30k/train.de.gz": 300,
    "multi30k/train.en.gz": 300,
    "multi30k/val.de.gz": 50,
    "multi30k/val.en.gz": 50,
    "multi30k/test_2016_flickr.de.gz": 50,
    "multi30k/test_2016_flickr.en.gz": 50,
    "tatoeba-cmn-eng/cmn.txt": 400,
    "sst2/train.tsv": 400,
    "sst2/dev.tsv": 100,
    "rt-polarity/rt-polarity.pos": 200,
    "rt-polarity/rt-polarity.neg": 200,
    "adult/adult.data": 300,
}
# wikitext-2-mini stands in for WikiText-2: its copy is the folder WikiText2DataModule and
# Word2VecDataModule look in by default, $DATA_DIR/wikitext-2.
COPY_AS = {"wikitext-2-mini": "wikitext-2"}

GPT = config("gpt_shakespeare_char.yaml")
GPT_WIKITEXT = config("gpt_wikitext2.yaml")
GPT_CHAT = config("gpt_chat_pretrain.yaml")
LSTM = config("lstm_shakespeare_char.yaml")
GRU = config("gru_wikitext2.yaml")
RNN = config("rnn_wikitext2.yaml")
MLP = config("mlp_names.yaml")
WAVENET = config("wavenet_names.yaml")
SEQ2SEQ = config("seq2seq_multi30k.yaml")
ATTENTION = config("seq2seq_attention_multi30k.yaml")
TRANSFORMER = config("transformer_multi30k.yaml")
TATOEBA = config("transformer_tatoeba_zh_en.yaml")
SST2 = config("sentiment_lstm_sst2.yaml")
RT_POLARITY = config("sentiment_gru_rt_polarity.yaml")
WIDE_DEEP = config("wide_deep_adult.yaml")
WORD2VEC = config("word2vec_skipgram_wikitext2.yaml")
LORA = config("gpt_lora_chat.yaml")

# For errors found once fit starts: a small model, no logger or callbacks, one step at most.
RUN_ONE_STEP = (
    "--trainer.logger=false",
    "--trainer.callbacks=[]",
    "--trainer.max_steps=1",
    "--trainer.num_sanity_val_steps=0",
    "--trainer.enable_progress_bar=false",
    "--trainer.enable_model_summary=false",
)
TINY_GPT = (
    "--model.init_args.n_layer=1",
    "--model.init_args.n_head=2",
    "--model.init_args.n_embd=32",
)
TINY_TRANSFORMER = (*TINY_GPT, "--model.init_args.n_ff=32", "--data.init_args.batch_size=8")
DATA_IN_BAD = "--data.init_args.data_dir={bad}"
# Added to every case: a run that wrongly accepts its input trains one step, not the config's
# thousands, and fails its case in seconds.
AT_MOST_ONE_STEP = (
    "--trainer.max_steps=1",
    "--trainer.limit_train_batches=1",
    "--trainer.limit_val_batches=1",
    "--trainer.num_sanity_val_steps=0",
)

Files = Callable[[Path, Path], None]  # (the case's folder, the tiny corpora) -> None


@dataclass(frozen=True)
class Case:
    name: str
    args: tuple[str, ...]  # after `python main.py`
    expect_in_message: tuple[str, ...]  # each in the text from `error:` on
    files: Files | None = None  # fills `{bad}` before the run


def fit(config_file: str, *overrides: str) -> tuple[str, ...]:
    return ("fit", "--config", config_file, *overrides)


def model(key: str, value: str) -> str:
    return f"--model.init_args.{key}={value}"


def data(key: str, value: str) -> str:
    return f"--data.init_args.{key}={value}"


def bad_setting(name: str, config_file: str, key: str, value: str, *more: str) -> Case:
    """A model setting out of range: the message names `model.<key>`."""
    return Case(name, fit(config_file, model(key, value), *more), (f"model.init_args.{key}",))


def bad_data_setting(name: str, config_file: str, key: str, value: str, *more: str) -> Case:
    """A datamodule setting out of range: the message names `data.<key>`."""
    return Case(name, fit(config_file, data(key, value), *more), (f"data.init_args.{key}",))


# --- bad data folders: a tiny corpus copied into {bad}, one file changed ----------------------


def corpus_copy(corpus: str, edits: dict[str, Callable[[bytes], bytes] | None]) -> Files:
    """The tiny copy of `corpus` in the case's folder, each file of `edits` changed by its
    function (None: deleted)."""

    def files(bad: Path, corpora: Path) -> None:
        shutil.copytree(corpora / COPY_AS.get(corpus, corpus), bad, dirs_exist_ok=True)
        for name, edit in edits.items():
            path = bad / name
            if edit is None:
                path.unlink()
            else:
                path.write_bytes(edit(path.read_bytes() if path.exists() else b""))

    return files


def write(name: str, content: bytes) -> Files:
    def files(bad: Path, corpora: Path) -> None:
        (bad / name).write_bytes(content)

    return files


def empty(_: bytes) -> bytes:
    return b""


def edit_line(number: int, change: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """Line `number` (from 1) changed by `change`."""

    def edit(content: bytes) -> bytes:
        lines = content.split(b"\n")
        lines[number - 1] = change(lines[number - 1])
        return b"\n".join(lines)

    return edit


def not_utf8(line: bytes) -> bytes:
    return b"\xff\xfe" + line


def drop_last_line(content: bytes) -> bytes:
    return b"".join(content.splitlines(keepends=True)[:-1])


# --- the matrix ---------------------------------------------------------------------------------

GPT_CASES = [
    Case(
        "gpt n_head 0",
        fit(GPT, model("n_head", "0")),
        ("model.init_args.n_head", "model.init_args.n_embd=384"),
    ),
    Case(
        "gpt n_embd negative",
        fit(GPT, model("n_embd", "-32"), model("n_head", "4")),
        ("model.init_args.n_embd", "-32"),
    ),
    bad_setting("gpt n_layer 0", GPT, "n_layer", "0"),
    bad_setting("gpt dropout 1", GPT, "dropout", "1.0"),
    Case(
        "gpt min_learning_rate above the peak",
        fit(GPT, model("learning_rate", "1e-4"), model("min_learning_rate", "1e-3")),
        ("model.init_args.min_learning_rate=0.001", "model.init_args.learning_rate=0.0001"),
    ),
    bad_setting("gpt betas above 1", GPT, "betas", "[0.9,1.5]"),
    bad_setting("gpt lr_decay_steps 0", GPT, "lr_decay_steps", "0"),
]

TEXT_CORPUS_CASES = [
    Case(
        "tokenizer not offered",
        fit(GPT, data("tokenizer", "chars")),
        ("tokenizer", "'word', 'bpe', 'char'", "chars"),
    ),
    bad_data_setting("shakespeare eval_batch_size 0", GPT, "eval_batch_size", "0"),
    bad_data_setting(
        "shakespeare num_workers negative", GPT, "num_workers", "-1", *TINY_GPT, *RUN_ONE_STEP
    ),
    Case(
        "block_size longer than the corpus",
        fit(GPT, *TINY_GPT, *RUN_ONE_STEP, data("block_size", "50000")),
        ("data.init_args.block_size=50000",),
    ),
    Case(
        "trainer setting Lightning rejects",
        fit(GPT, *TINY_GPT, "--trainer.logger=false"),
        ("LearningRateMonitor", "no logger"),
    ),
    Case("shakespeare missing", fit(GPT, DATA_IN_BAD), ("{bad}", "input.txt")),
    Case(
        "shakespeare not UTF-8",
        fit(GPT, DATA_IN_BAD),
        ("{bad}/input.txt", "line 100"),
        corpus_copy("tinyshakespeare", {"input.txt": edit_line(100, not_utf8)}),
    ),
    Case(
        "wikitext missing valid.txt",
        fit(GPT_WIKITEXT, DATA_IN_BAD),
        ("{bad}", "valid.txt"),
        corpus_copy("wikitext-2-mini", {"valid.txt": None}),
    ),
    Case(
        "wikitext empty test split",
        fit(GPT_WIKITEXT, DATA_IN_BAD),
        ("test split is empty", "{bad}"),
        corpus_copy("wikitext-2-mini", {"test.txt": empty}),
    ),
]

RNN_CASES = [
    bad_setting("lstm n_hidden 0", LSTM, "n_hidden", "0"),
    bad_setting("lstm dropout above 1", LSTM, "dropout", "1.5"),
    bad_setting("lstm lr_factor 1", LSTM, "lr_factor", "1.0"),
    Case(
        "gru n_embd 0",
        fit(GRU, model("n_embd", "0"), model("n_hidden", "0")),
        ("model.init_args.n_embd",),
    ),
    bad_setting("rnn learning_rate negative", RNN, "learning_rate", "-20"),
]

NAMES_CASES = [
    bad_setting("mlp n_hidden 0", MLP, "n_hidden", "0"),
    bad_setting("mlp momentum negative", MLP, "momentum", "-0.5"),
    bad_setting("mlp lr_decay 0", MLP, "lr_decay", "0"),
    Case(
        "mlp optimizer not offered",
        fit(MLP, model("optimizer", "lbfgs")),
        ('key "optimizer"', "lbfgs", "'sgd', 'adamw'"),
    ),
    Case(
        "wavenet context not a power of 2",
        fit(WAVENET, data("block_size", "6")),
        ("power of 2", "got 6"),
    ),
    bad_setting("wavenet n_hidden 0", WAVENET, "n_hidden", "0"),
    bad_data_setting("names num_workers negative", MLP, "num_workers", "-1", *RUN_ONE_STEP),
    Case(
        "names missing",
        fit(MLP, DATA_IN_BAD, *RUN_ONE_STEP),
        ("{bad}/names.txt", "not found"),
        write("other.txt", b"emma\n"),
    ),
    Case(
        "names line with capitals",
        fit(MLP, DATA_IN_BAD, *RUN_ONE_STEP),
        ("{bad}/names.txt", "line 2"),
        write("names.txt", b"emma\nOlivia\nava\n"),
    ),
]

TRANSLATION_CASES = [
    bad_setting("seq2seq n_hidden 0", SEQ2SEQ, "n_hidden", "0"),
    bad_setting("seq2seq dropout 1", SEQ2SEQ, "dropout", "1.0"),
    Case(
        "seq2seq cell not offered",
        fit(SEQ2SEQ, model("cell", "rnn_tanh")),
        ('key "cell"', "rnn_tanh", "'lstm', 'gru'"),
    ),
    bad_setting("attention encoder_n_hidden 0", ATTENTION, "encoder_n_hidden", "0"),
    bad_setting("attention attention_n_hidden 0", ATTENTION, "attention_n_hidden", "0"),
    bad_setting("transformer n_head 0", TRANSFORMER, "n_head", "0"),
    bad_setting("transformer n_ff 0", TRANSFORMER, "n_ff", "0"),
    bad_setting("transformer eps 0", TRANSFORMER, "eps", "0"),
    bad_setting(
        "transformer noam lr_factor 0", TRANSFORMER, "lr_factor", "0", model("schedule", "noam")
    ),
    Case(
        "transformer schedule not offered",
        fit(TRANSFORMER, model("schedule", "cosine")),
        ('key "schedule"', "cosine", "'noam', 'constant'"),
    ),
    Case(
        "translator eos_id not the data's",
        fit(TRANSFORMER, *TINY_TRANSFORMER, *RUN_ONE_STEP, model("eos_id", "5")),
        ("model.init_args.eos_id=5 but the data's eos_id is 2",),
    ),
    bad_data_setting(
        "multi30k num_workers negative",
        TRANSFORMER,
        "num_workers",
        "-1",
        *TINY_TRANSFORMER,
        *RUN_ONE_STEP,
    ),
    Case(
        "multi30k line counts differ",
        fit(SEQ2SEQ, DATA_IN_BAD),
        ("{bad}/val.en", "lines"),
        corpus_copy("multi30k", {"val.en": drop_last_line}),
    ),
    Case(
        "multi30k empty line",
        fit(SEQ2SEQ, DATA_IN_BAD),
        ("{bad}/train.de", "line 3 is empty"),
        corpus_copy("multi30k", {"train.de": edit_line(3, lambda line: b"")}),
    ),
    Case(
        "multi30k gzip file corrupt",
        fit(SEQ2SEQ, DATA_IN_BAD),
        ("{bad}/train.en.gz", "gzip"),
        corpus_copy("multi30k", {"train.en": None, "train.en.gz": lambda _: b"not gzip"}),
    ),
    Case(
        "tatoeba line without a tab",
        fit(TATOEBA, DATA_IN_BAD),
        ("{bad}/cmn.txt", "line 2"),
        corpus_copy(
            "tatoeba-cmn-eng", {"cmn.txt": edit_line(2, lambda line: line.replace(b"\t", b" "))}
        ),
    ),
]

SENTIMENT_CASES = [
    bad_setting("sst2 n_hidden 0", SST2, "n_hidden", "0"),
    bad_setting("sst2 embedding_dropout 1", SST2, "embedding_dropout", "1.0"),
    bad_setting("sst2 weight_decay negative", SST2, "weight_decay", "-0.1"),
    bad_data_setting("sst2 num_workers negative", SST2, "num_workers", "-2"),
    Case(
        "sst2 label not 0 or 1",
        fit(SST2, DATA_IN_BAD),
        ("{bad}/train.tsv", "line 3", "label"),
        corpus_copy("sst2", {"train.tsv": edit_line(3, lambda _: b"a fine film\t2")}),
    ),
    bad_setting("rt-polarity dropout negative", RT_POLARITY, "dropout", "-0.5"),
    Case(
        "rt-polarity empty line",
        fit(RT_POLARITY, DATA_IN_BAD),
        ("{bad}/rt-polarity.neg", "line 2 is empty"),
        corpus_copy("rt-polarity", {"rt-polarity.neg": edit_line(2, lambda _: b"  ")}),
    ),
    Case(
        "rt-polarity word_vectors missing",
        fit(RT_POLARITY, data("word_vectors", "{bad}/vectors.txt")),
        ("data.init_args.word_vectors", "{bad}/vectors.txt"),
    ),
]

WIDE_DEEP_CASES = [
    bad_setting("wide&deep dropout 1", WIDE_DEEP, "dropout", "1.0"),
    bad_setting("wide&deep wide_learning_rate 0", WIDE_DEEP, "wide_learning_rate", "0"),
    bad_setting("wide&deep wide_l1 negative", WIDE_DEEP, "wide_l1", "-1"),
    Case(
        "adult wrong number of fields",
        fit(WIDE_DEEP, DATA_IN_BAD),
        ("{bad}/adult.data", "line 2", "fields"),
        corpus_copy("adult", {"adult.data": edit_line(2, lambda line: line.rsplit(b",", 1)[0])}),
    ),
    Case(
        "adult age not a number",
        fit(WIDE_DEEP, DATA_IN_BAD),
        ("{bad}/adult.data", "line 3", "age"),
        corpus_copy("adult", {"adult.data": edit_line(3, lambda line: b"old" + line[2:])}),
    ),
]

WORD2VEC_CASES = [
    bad_setting("word2vec n_embd 0", WORD2VEC, "n_embd", "0"),
    bad_setting("word2vec min_lr_ratio above 1", WORD2VEC, "min_lr_ratio", "2.0"),
    bad_data_setting("word2vec max_vocab_size 0", WORD2VEC, "max_vocab_size", "0"),
    bad_data_setting("word2vec eval_batch_size 0", WORD2VEC, "eval_batch_size", "0"),
]

CHAT_CASES = [
    bad_setting("lora alpha negative", LORA, "alpha", "-16"),
    bad_setting("lora dropout 1", LORA, "dropout", "1.0"),
    bad_setting("lora learning_rate negative", LORA, "learning_rate", "-2e-3"),
    Case(
        "lora base checkpoint missing",
        fit(LORA, model("base", "{bad}/base.ckpt")),
        ("model.init_args.base", "{bad}/base.ckpt"),
    ),
    bad_data_setting("chat eval_batch_size 0", GPT_CHAT, "eval_batch_size", "0"),
    Case(
        "chat file not YAML",
        fit(GPT_CHAT, *TINY_GPT, *RUN_ONE_STEP, DATA_IN_BAD),
        ("{bad}/talk.yml", "YAML"),
        write("talk.yml", b"conversations:\n- - hello: [\n"),
    ),
]


def checkpoint(name: str, content: object) -> Files:
    """`content` saved with torch.save as `name`."""

    def files(bad: Path, corpora: Path) -> None:
        torch.save(content, bad / name)

    return files


def evaluate_checkpoint(config_file: str, name: str = "last.ckpt") -> tuple[str, ...]:
    return ("test", "--config", config_file, "--ckpt_path", f"{{bad}}/{name}")


COMMAND_LINE_CASES = [
    Case(
        "config file not YAML",
        ("fit", "--config", GPT, "--config", "{bad}/mine.yaml"),
        ("--config {bad}/mine.yaml", "not valid YAML at line 3"),
        write("mine.yaml", b"trainer:\n  max_steps: [1\n"),
    ),
    Case(
        "config file not UTF-8",
        ("fit", "--config", "{bad}/mine.yaml"),
        ("--config {bad}/mine.yaml", "not UTF-8"),
        write("mine.yaml", b"trainer:\n  max_steps: 1 # \xff\n"),
    ),
    Case("max_epochs 0", fit(GPT, "--trainer.max_epochs=0"), ("trainer.max_epochs=0",)),
    Case(
        "max_skipped_steps negative",
        fit(GPT, "--non_finite.max_skipped_steps=-1"),
        ("non_finite.max_skipped_steps",),
    ),
]

CHECKPOINT_CASES = [
    Case(
        "checkpoint not written by fit",
        evaluate_checkpoint(GPT),
        ("{bad}/last.ckpt", "not a checkpoint of `fit`"),
        checkpoint("last.ckpt", {"state_dict": {"w": torch.ones(2)}}),
    ),
    Case("checkpoint missing", evaluate_checkpoint(GPT), ("{bad}/last.ckpt", "no such")),
    Case(
        "checkpoint empty",
        evaluate_checkpoint(GPT),
        ("{bad}/last.ckpt", "empty (0 bytes)"),
        write("last.ckpt", b""),
    ),
    Case(
        "checkpoint garbage",
        evaluate_checkpoint(LSTM),
        ("{bad}/last.ckpt", "not a readable checkpoint"),
        write("last.ckpt", b"PK\x03\x04 not a zip"),
    ),
    Case(
        "checkpoint without weights",
        evaluate_checkpoint(SEQ2SEQ),
        ("{bad}/last.ckpt", "no state_dict"),
        checkpoint("last.ckpt", [1, 2, 3]),
    ),
    Case(
        "checkpoint with NaN weights",
        evaluate_checkpoint(MLP),
        ("{bad}/last.ckpt", "NaN or inf weights", "w"),
        checkpoint("last.ckpt", {"state_dict": {"w": torch.tensor([float("nan")])}}),
    ),
    Case(
        "checkpoint of a foreign class",
        evaluate_checkpoint(WIDE_DEEP),
        ("os.system", "not one of the suite's models"),
        checkpoint(
            "last.ckpt", {"state_dict": {}, "hyper_parameters": {"_class_path": "os.system"}}
        ),
    ),
    Case(
        "checkpoint of another model",
        evaluate_checkpoint(GPT),
        ("lit_models.RNNLanguageModel", "lit_models.GPT"),
        checkpoint(
            "last.ckpt",
            {"state_dict": {}, "hyper_parameters": {"_class_path": "lit_models.RNNLanguageModel"}},
        ),
    ),
]

CASES = [
    *GPT_CASES,
    *TEXT_CORPUS_CASES,
    *RNN_CASES,
    *NAMES_CASES,
    *TRANSLATION_CASES,
    *SENTIMENT_CASES,
    *WIDE_DEEP_CASES,
    *WORD2VEC_CASES,
    *CHAT_CASES,
    *COMMAND_LINE_CASES,
    *CHECKPOINT_CASES,
]


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> Path:
    """Tiny copies of the offline corpora, laid out as $DATA_DIR (plain files, not gzip)."""
    root = tmp_path_factory.mktemp("corpora")
    for name, n_lines in TINY_CORPORA.items():
        source = need_corpus(name)
        with gzip.open(source) if source.suffix == ".gz" else source.open("rb") as f:
            head = b"".join(line for _, line in zip(range(n_lines), f, strict=False))
        folder, _, file_name = name.rpartition("/")
        target = root / COPY_AS.get(folder, folder) / file_name.removesuffix(".gz")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(head)
    return root


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory) -> Path:
    """One cache for the whole matrix: each tiny corpus's tokenizer is trained once."""
    return tmp_path_factory.mktemp("cache")


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_bad_input_is_one_clear_error(case, corpora, shared_cache, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    if case.files is not None:
        case.files(bad, corpora)

    def fill(text: str) -> str:
        return text.replace("{bad}", str(bad))

    env = {"DATA_DIR": str(corpora), "XDG_CACHE_HOME": str(shared_cache)}
    proc = run_cli(*map(fill, case.args), *AT_MOST_ONE_STEP, env=env, check=False)
    assert_one_clear_error(proc, *map(fill, case.expect_in_message))
    assert proc.returncode == 2
