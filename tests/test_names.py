"""makemore on names: the datamodule's windows and split, the MLP and WaveNet models (their
init, their capacity, their generation), and both configs through the command line."""

from __future__ import annotations

import io
import math
import re
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

import datamodules.names as names_module
from core.errors import DataError, UserError
from datamodules import NamesDataModule
from datamodules.names import ContextWindows, context_windows, read_names, split_names
from lit_models import MLPLanguageModel, WaveNetLanguageModel
from lit_models.mlp_lm import sample_names
from lit_models.modules.decoding import generate_text, generate_text_beam_search
from tests.conftest import config, need_corpus, overfit, run_cli

VOCAB = 27
LN_VOCAB = math.log(VOCAB)  # the loss of a uniform guess, 3.2958


@pytest.fixture(scope="module")
def names_file():
    return need_corpus("names.txt")


def names_dm(path, **kwargs) -> NamesDataModule:
    return NamesDataModule(data_dir=str(path.parent), file_name=path.name, **kwargs)


def write(tmp_path, content: bytes | str, name: str = "names.txt"):
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return path


# --- windows and split -----------------------------------------------------------------------
def test_context_windows_of_emma():
    contexts, targets = context_windows(["emma"], block_size=3)
    dm = NamesDataModule()
    as_text = [
        (dm.decode(c), dm.decode([t]))
        for c, t in zip(contexts.tolist(), targets.tolist(), strict=True)
    ]
    assert as_text == [("...", "e"), ("..e", "m"), (".em", "m"), ("emm", "a"), ("mma", ".")]
    assert dm.eos_id == 0 and dm.encode(".") == [0] and dm.vocab_size == VOCAB


def test_each_name_gives_one_example_per_letter_and_one_for_the_end(tmp_path):
    path = write(tmp_path, "ava\nisabella\n\nmia\r\n")  # blank lines and CRLF are fine
    assert read_names(path) == ["ava", "isabella", "mia"]
    contexts, targets = context_windows(read_names(path), block_size=8)
    assert contexts.shape == (4 + 9 + 4, 8) and (targets == 0).sum() == 3


def test_split_is_disjoint_covers_every_line_and_is_reproducible(names_file):
    dm = names_dm(names_file)
    names = dm.names
    splits = dm.splits()
    assert len(names) == 32033
    sets = {k: set(v) for k, v in splits.items()}
    assert not (sets["train"] & sets["val"] or sets["train"] & sets["test"])
    assert not sets["val"] & sets["test"]
    assert sum(map(Counter, splits.values()), Counter()) == Counter(names)  # every line once
    distinct = len(set(names))
    for split, fraction in (("train", 0.8), ("val", 0.1), ("test", 0.1)):
        assert len(sets[split]) == pytest.approx(fraction * distinct, abs=1)
    assert names_dm(names_file).splits() == splits  # the same seed, the same split
    other = split_names(names, seed=7)
    assert other["val"] != splits["val"] and set(other["train"]) != sets["train"]


def test_batches_fit_the_language_model_and_count_names(names_file):
    dm = names_dm(names_file, block_size=4, batch_size=16, eval_batch_size=5000)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (16, 4) and batch["targets"].shape == (16, 1)
    valid = dm.splits()["val"]
    words = chars = 0
    for batch in dm.val_dataloader():
        words += int(batch["target_words"].sum())
        chars += int(batch["target_chars"].sum())
    assert words == len(valid)  # one word per name, at its end token
    assert chars == sum(len(n) + 1 for n in valid) == len(dm.val_set)


def test_evaluation_sets_are_padded_for_ranks_with_ignored_targets():
    contexts, targets = context_windows(["ava", "bo"], block_size=3)  # 7 examples
    padded = ContextWindows(contexts, targets, pad_to_multiple=4)
    batch = padded.__getitems__(list(range(len(padded))))
    assert len(padded) == 8 and batch["targets"][-1].item() == -100
    assert batch["target_chars"].sum() == 7 and batch["target_words"].sum() == 2


# --- bad and missing data --------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("emma\nolivia\nJohn\n", "line 3 .*'J'"),
        ("emma\nmary-ann\n", "line 2 .*'-'"),
        ("emma\nd.j\n", "line 2 .*'.'"),
        (b"emma\nava\nz\xe9ro\n", "line 3 is not valid UTF-8"),
        ("", "holds no names"),
        ("\n \n", "holds no names"),
    ],
)
def test_a_bad_file_is_an_error_naming_file_and_line(tmp_path, content, match):
    path = write(tmp_path, content)
    with pytest.raises(DataError, match=match) as err:
        names_dm(path).names  # noqa: B018
    assert str(path) in str(err.value)


def test_too_few_names_for_three_splits_is_an_error(tmp_path):
    path = write(tmp_path, "emma\nava\nmia\n")
    with pytest.raises(DataError, match="3 distinct names are too few"):
        names_dm(path).setup("fit")


def test_missing_file_offline_says_where_and_how(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setattr(names_module, "reachable", lambda url, timeout=5.0: False)
    with pytest.raises(DataError) as err:
        NamesDataModule(data_dir=str(tmp_path / "nowhere")).prepare_data()
    message = str(err.value)
    assert str(tmp_path / "nowhere" / "names.txt") in message
    assert "cannot be reached" in message and "data.init_args.data_dir" in message


def test_default_is_names_txt_directly_under_data_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    assert NamesDataModule().path == tmp_path / "names.txt"


def test_missing_names_are_fetched_from_makemore(tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setattr(names_module, "reachable", lambda url, timeout=5.0: True)
    urls = []

    def fake_urlopen(url, timeout):
        urls.append(url)
        return io.BytesIO(b"emma\nolivia\nava\n")

    monkeypatch.setattr("urllib.request.urlopen", fake_urlopen)
    dm = NamesDataModule(data_dir=str(tmp_path / "d"))
    assert dm.names == ["emma", "olivia", "ava"]
    assert urls == ["https://raw.githubusercontent.com/karpathy/makemore/master/names.txt"]
    assert (tmp_path / "d" / "names.txt").read_text() == "emma\nolivia\nava\n"


# --- the models ------------------------------------------------------------------------------
MODELS = {
    "mlp": lambda **kw: MLPLanguageModel(vocab_size=VOCAB, **{"block_size": 3, **kw}),
    "mlp-no-bn": lambda **kw: MLPLanguageModel(vocab_size=VOCAB, batch_norm=False, **kw),
    "wavenet": lambda **kw: WaveNetLanguageModel(vocab_size=VOCAB, **{"block_size": 8, **kw}),
}


@pytest.fixture(scope="module")
def real_batches(names_file):
    """512 training windows of the real names, for block sizes 3 and 8."""
    out = {}
    for block in (3, 8):
        dm = names_dm(names_file, block_size=block)
        dm.setup("fit")
        rows = torch.randperm(len(dm.train_set), generator=torch.Generator().manual_seed(0))
        out[block] = dm.train_set.__getitems__(rows[:512].tolist())
    return out


def tanh_outputs(model, input_ids) -> list[torch.Tensor]:
    outputs = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: outputs.append(out))
        for m in model.modules()
        if isinstance(m, torch.nn.Tanh)
    ]
    model(input_ids)
    for h in hooks:
        h.remove()
    return outputs


@pytest.mark.parametrize("kind", MODELS)
def test_init_is_neither_overconfident_nor_saturated(kind, real_batches):
    torch.manual_seed(0)
    model = MODELS[kind]().train()  # as the first training step sees it (batch statistics)
    batch = real_batches[model.block_size]
    with torch.no_grad():
        loss = F.cross_entropy(model(batch["input_ids"])[:, 0], batch["targets"][:, 0])
        layers = tanh_outputs(model, batch["input_ids"])
    assert loss.item() == pytest.approx(LN_VOCAB, abs=0.03)  # near-uniform first guess
    assert len(layers) == (3 if kind == "wavenet" else 1)
    saturated = [(h.abs() > 0.97).float().mean().item() for h in layers]
    # BatchNorm keeps every pre-activation at unit variance: a few % beyond atanh(0.97) = 2.1.
    # Without it the first layer's (5/3)/sqrt(fan_in) gain leaves the lecture's ~20%.
    limit = 0.3 if kind == "mlp-no-bn" else 0.1
    assert max(saturated) < limit, saturated


@pytest.mark.parametrize("kind", MODELS)
def test_overfits_a_single_batch(kind):
    torch.manual_seed(0)
    model = MODELS[kind]().train()
    # 32 distinct windows, each with its own next character: a perfect fit exists.
    g = torch.Generator().manual_seed(1)
    contexts = torch.randint(1, VOCAB, (32, model.block_size), generator=g)
    contexts[:, -1] = torch.arange(32) % (VOCAB - 1) + 1
    contexts[:, -2] = torch.arange(32) // (VOCAB - 1) + 1
    batch = {"input_ids": contexts, "targets": torch.randint(0, VOCAB, (32, 1), generator=g)}
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    first = overfit(model, batch, optimizer, steps=150)
    assert first > 3.0
    assert model.token_nll(batch).mean().item() < 0.05


def test_sgd_step_decay_follows_the_lecture():
    model = MODELS["mlp"](learning_rate=0.1, lr_milestones=(0.75,), lr_decay=0.1)
    model._trainer = SimpleNamespace(max_steps=100)  # the milestones are fractions of the run
    config = model.configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert isinstance(optimizer, torch.optim.SGD)
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    assert lrs[:75] == pytest.approx([0.1] * 75) and lrs[75:] == pytest.approx([0.01] * 25)


@pytest.mark.parametrize("block_size", [3, 6, 12, 1])
def test_wavenet_needs_a_power_of_two_context(block_size):
    with pytest.raises(UserError, match=f"power of 2.*got {block_size}"):
        WaveNetLanguageModel(vocab_size=VOCAB, block_size=block_size)


@pytest.mark.parametrize("kind", ["mlp", "wavenet"])
def test_decoding_reads_the_last_window_padded_with_dots(kind):
    torch.manual_seed(0)
    model = MODELS[kind]().eval()
    dm = NamesDataModule()
    B = model.block_size
    with torch.no_grad():
        # "em" is read as '.'-padded "..em" (the model sees a fresh name that began with em).
        logits, window = model.start_decoding(
            torch.tensor([dm.encode("em")]), torch.tensor([[True, True]])
        )
        assert dm.decode(window[0].tolist()) == "." * (B - 2) + "em"
        torch.testing.assert_close(logits, model(window)[:, 0])
        logits, window = model.continue_decoding(window, torch.tensor(dm.encode("m")))
        assert dm.decode(window[0].tolist()) == ("." * (B - 3) + "emm")[-B:]
        torch.testing.assert_close(logits, model(window)[:, 0])
        long = dm.encode("abcdefghijklmnop")  # longer than any window: the last B count
        _, window = model.start_decoding(torch.tensor([long]), torch.ones(1, len(long), dtype=bool))
        assert window[0].tolist() == long[-B:]


@pytest.mark.parametrize("kind", ["mlp", "wavenet"])
def test_sampled_names_are_letters_that_end_at_the_end_token(kind):
    torch.manual_seed(0)
    model = MODELS[kind]().eval()
    with torch.no_grad():
        model.output.bias[0] = 2.0  # make '.' likely enough that every name ends soon
    dm = NamesDataModule()
    names = sample_names(model, dm, n=20, seed=3, max_length=50)
    assert len(names) == 20 and len(set(names)) > 10
    assert all(re.fullmatch("[a-z]*", n) for n in names)
    assert all(len(n) < 50 for n in names)  # each stopped at '.', not at the length limit
    assert sample_names(model, dm, n=20, seed=3, max_length=50) == names
    assert sample_names(model, dm, n=20, seed=4, max_length=50) != names
    assert all(n.startswith("em") for n in sample_names(model, dm, n=5, seed=3, prefix="em"))
    # The shared decoding module drives the same models: greedy, sampling and beam search.
    assert generate_text(model, [".", "em"], dm, max_new_tokens=50, strategy="greedy")
    best = generate_text_beam_search(model, ".", dm, num_beams=3, n_best=2)
    assert len(best) == 2 and all(
        set(text) <= set("abcdefghijklmnopqrstuvwxyz") for text, _ in best
    )


# --- the command line ------------------------------------------------------------------------
TINY_RUN = [
    "--trainer.max_steps=20",
    "--trainer.val_check_interval=10",
    "--trainer.limit_val_batches=2",
    "--trainer.limit_test_batches=2",
    "--trainer.enable_progress_bar=false",
    "--trainer.logger=CSVLogger",
    "--trainer.logger.save_dir=csv",
    "--data.init_args.batch_size=16",
    "--data.init_args.eval_batch_size=256",
]


@pytest.mark.parametrize(
    ("name", "sizes"),
    [
        ("mlp_names.yaml", ["--model.init_args.n_hidden=32"]),
        ("wavenet_names.yaml", ["--model.init_args.n_hidden=16", "--model.init_args.n_embd=8"]),
    ],
)
def test_config_trains_through_the_cli(name, sizes, names_file, tmp_path):
    run = run_cli("fit", "--config", config(name), *TINY_RUN, *sizes)
    assert "[step 10]" in run.stdout + run.stderr  # names sampled at validation
    assert "val/loss" in logged(tmp_path)
    if name == "mlp_names.yaml":  # `test` is the same code for both models: once is enough
        (ckpt,) = tmp_path.rglob("last.ckpt")
        run_cli("test", "--config", config(name), *TINY_RUN, *sizes, f"--ckpt_path={ckpt}")
        assert "test/loss" in logged(tmp_path) and "test/word_ppl" in logged(tmp_path)


def logged(root) -> str:
    return "".join(p.read_text() for p in root.rglob("metrics.csv"))
