"""Recurrent language models: the hand-written cells equal torch's, the state is carried and
detached between batches, contiguous batching reads each split as parallel streams in order,
generation works, and every RNN config trains through the CLI."""

from __future__ import annotations

import csv
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from core.errors import UserError
from datamodules import TinyShakespeareDataModule, WikiText2DataModule
from datamodules.language_modeling import ContiguousColumns
from datamodules.tokenizers import EncodedSplit
from lit_models import RNNLanguageModel
from lit_models.modules.decoding import beam_search, generate, generate_text, left_pad
from lit_models.modules.recurrent import (
    CELLS,
    Recurrent,
    gru_cell,
    lstm_cell,
    make_recurrent,
    rnn_relu_cell,
    rnn_tanh_cell,
)
from tests.conftest import config, need_corpus, overfit, run_cli

IGNORE = -100
VOCAB = 16


# Tiny models gain nothing from a second thread, and on a shared machine OpenMP's barriers
# between two threads can cost more than the work itself: one thread, here and in the CLI runs.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_rnn(cell: str = "lstm", **kwargs) -> RNNLanguageModel:
    torch.manual_seed(0)
    args = dict(vocab_size=VOCAB, cell=cell, n_layer=2, n_embd=32, n_hidden=32, dropout=0.0)
    return RNNLanguageModel(**{**args, **kwargs})


def _as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


# --- scratch cells equal torch's ------------------------------------------------------------


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("cell", CELLS)
def test_scratch_stack_equals_torch_given_the_same_weights(cell, batch_first):
    """Three layers with dropout between them (off in eval), from a given state: outputs, final
    states and every parameter's gradient agree to float64 rounding."""
    torch.manual_seed(0)
    fused = make_recurrent(cell, "torch", 5, 7, n_layer=3, dropout=0.3, batch_first=batch_first)
    scratch = make_recurrent(cell, "scratch", 5, 7, 3, 0.3, batch_first)
    assert isinstance(scratch, Recurrent)
    scratch.load_state_dict(fused.state_dict())  # same names, same shapes: strict
    fused, scratch = fused.double().eval(), scratch.double().eval()
    x = torch.randn(4, 6, 5, dtype=torch.float64)  # [B, T, I] or [T, B, I]
    batch = 4 if batch_first else 6
    h0 = torch.randn(3, batch, 7, dtype=torch.float64)
    state = (h0, torch.randn_like(h0)) if cell == "lstm" else h0

    out_fused, final_fused = fused(x, state)
    out_scratch, final_scratch = scratch(x, state)
    torch.testing.assert_close(out_scratch, out_fused, rtol=0, atol=1e-12)
    for a, b in zip(_as_tuple(final_scratch), _as_tuple(final_fused), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)

    (out_fused.square().sum() + sum(s.sum() for s in _as_tuple(final_fused))).backward()
    (out_scratch.square().sum() + sum(s.sum() for s in _as_tuple(final_scratch))).backward()
    grads = dict(fused.named_parameters())
    for name, p in scratch.named_parameters():
        torch.testing.assert_close(p.grad, grads[name].grad, rtol=0, atol=1e-10)
    # A zero state is the default on both sides.
    torch.testing.assert_close(scratch(x)[0], fused(x)[0], rtol=0, atol=1e-12)


@pytest.mark.parametrize(
    ("step", "torch_cell"),
    [
        (rnn_tanh_cell, nn.RNNCell(3, 4, nonlinearity="tanh")),
        (rnn_relu_cell, nn.RNNCell(3, 4, nonlinearity="relu")),
        (gru_cell, nn.GRUCell(3, 4)),
        (lstm_cell, nn.LSTMCell(3, 4)),
    ],
)
def test_one_step_of_each_cell_equals_torchs_cell(step, torch_cell):
    torch_cell = torch_cell.double()
    x = torch.randn(5, 3, dtype=torch.float64)
    h = torch.randn(5, 4, dtype=torch.float64)
    state = (h, torch.randn_like(h)) if step is lstm_cell else h
    xw = nn.functional.linear(x, torch_cell.weight_ih, torch_cell.bias_ih)
    ours = step(xw, state, torch_cell.weight_hh, torch_cell.bias_hh)
    for a, b in zip(_as_tuple(ours), _as_tuple(torch_cell(x, state)), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_a_checkpoint_moves_between_implementations():
    fused = tiny_rnn(impl="torch").eval()
    scratch = tiny_rnn(impl="scratch").eval()
    scratch.load_state_dict(fused.state_dict())  # strict: the same keys
    x = torch.randint(0, VOCAB, (3, 9))
    with torch.no_grad():
        torch.testing.assert_close(scratch(x)[0], fused(x)[0], rtol=1e-5, atol=1e-5)


# --- the model ------------------------------------------------------------------------------


def _distinct_start_batch(rows: int = 4, length: int = 16) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    seqs = torch.randint(0, VOCAB, (rows, length + 1), generator=generator)
    seqs[:, 0] = torch.arange(rows)  # distinct first tokens: every target follows from its prefix
    return {"input_ids": seqs[:, :-1], "targets": seqs[:, 1:]}


@pytest.mark.parametrize("cell", CELLS)
def test_each_cell_overfits_a_single_batch(cell):
    model = tiny_rnn(cell, optimizer="adamw", learning_rate=1e-2)
    batch = _distinct_start_batch()
    optimizer = model.configure_optimizers()["optimizer"]
    model.train()
    first = overfit(model, batch, optimizer, steps=150)
    assert first > 2.0  # about ln(16) at the start
    assert model.token_nll(batch).mean().item() < 0.1


def test_hidden_state_is_carried_and_detached_between_batches():
    model = tiny_rnn("lstm").train()
    stream = torch.randint(0, VOCAB, (2 * 8 * 3 + 1,), generator=torch.Generator().manual_seed(0))
    columns = ContiguousColumns(_split(stream.numpy()), batch_size=2, bptt=8)
    first, second = columns[0], columns[1]
    embedded = []
    model.embedding.register_forward_hook(lambda module, args, out: embedded.append(out))

    model.on_train_epoch_start()
    model.training_step(first, 0).backward()
    for s in model.carried["train"]:
        assert s.grad_fn is None and not s.requires_grad
    carried = tuple(s.clone() for s in model.carried["train"])
    loss = model.training_step(second, 1)
    # The second loss reaches the second batch's inputs, not the first's: no graph growth.
    (reach_first,) = torch.autograd.grad(loss, embedded[0], allow_unused=True, retain_graph=True)
    (reach_second,) = torch.autograd.grad(loss, embedded[1], retain_graph=True)
    assert reach_first is None and reach_second is not None
    loss.backward()
    # It did continue from the first batch's final state, not from zeros.
    with torch.no_grad():
        carried_logits, _ = model(second["input_ids"], carried)
        fresh_logits, _ = model(second["input_ids"])
    assert not torch.allclose(carried_logits, fresh_logits)
    # A new epoch starts from zeros again; validation keeps its own stream.
    model.on_train_epoch_start()
    assert "train" not in model.carried
    model.eval()
    model.validation_step(first, 0)
    assert set(model.carried) == {"val"}


def test_tbptt_over_contiguous_batches_equals_one_pass():
    """Scoring a stream batch by batch with the state carried gives the logits of one pass
    over the whole stream: the columns continue each other exactly."""
    model = tiny_rnn("gru").eval()
    stream = torch.randint(0, VOCAB, (3 * 20 + 1,), generator=torch.Generator().manual_seed(2))
    columns = ContiguousColumns(_split(stream.numpy()), batch_size=3, bptt=6)
    with torch.no_grad():
        batched = torch.cat([model.token_nll(b, stream="val") for b in columns], dim=1)
        # The same columns read in one batch as long as a column: one pass, no state carried.
        (one_pass,) = ContiguousColumns(_split(stream.numpy()), batch_size=3, bptt=columns.width)
        whole = model.token_nll(one_pass)
    torch.testing.assert_close(batched, whole, rtol=1e-5, atol=1e-5)


def test_bad_settings_get_a_clear_error():
    with pytest.raises(UserError, match="n_hidden must equal n_embd"):
        tiny_rnn(n_embd=16, n_hidden=32, tie_weights=True)
    tiny_rnn(n_embd=16, n_hidden=32, tie_weights=False)  # untied: any sizes
    # Built in Python, the model is not parsed: the shared recurrent block still says no.
    with pytest.raises(ValueError, match="unknown cell 'elman'"):
        tiny_rnn(cell="elman")
    with pytest.raises(ValueError, match="unknown impl 'cuda'"):
        tiny_rnn(impl="cuda")
    model = tiny_rnn()
    model._trainer = types.SimpleNamespace(
        datamodule=types.SimpleNamespace(batching="random_windows")
    )
    with pytest.raises(UserError, match="batching=contiguous"):
        model.setup("fit")


def test_optimizer_is_pytorch_examples_recipe():
    model = tiny_rnn()
    configured = model.configure_optimizers()
    optimizer, schedule = configured["optimizer"], configured["lr_scheduler"]
    assert type(optimizer) is torch.optim.SGD and optimizer.defaults["lr"] == 20.0
    assert optimizer.defaults["momentum"] == 0
    assert schedule["monitor"] == "val/loss" and schedule["interval"] == "epoch"
    plateau = schedule["scheduler"]
    # lr / 4 whenever the validation loss is not below the best so far
    for val_loss, lr in [(5.0, 20.0), (4.0, 20.0), (4.0, 5.0), (4.5, 1.25), (3.0, 1.25)]:
        plateau.step(val_loss)
        assert optimizer.param_groups[0]["lr"] == pytest.approx(lr)


# --- contiguous batching --------------------------------------------------------------------


def _split(ids: np.ndarray) -> EncodedSplit:
    n = len(ids)
    return EncodedSplit(ids.astype(np.int64), np.arange(n) % 3, np.arange(n) % 5 + 1)


@pytest.mark.parametrize(("n", "batch_size", "bptt"), [(61, 3, 4), (100, 4, 7), (9, 8, 5)])
def test_contiguous_columns_read_the_stream_in_order(n, batch_size, bptt):
    split = _split(np.arange(1000, 1000 + n))
    columns = ContiguousColumns(split, batch_size, bptt)
    batches = list(columns)
    assert len(batches) == len(columns)
    assert all(
        b["input_ids"].shape == (batch_size, min(bptt, b["input_ids"].size(1))) for b in batches
    )
    inputs, targets = [], []
    for j in range(batch_size):  # column j across batches: one stretch of the stream
        row = {k: torch.cat([b[k][j] for b in batches]) for k in batches[0]}
        real = row["targets"] != IGNORE
        assert real.all() or (not real[real.sum() :].any())  # padding only at the end
        ids, tgt = row["input_ids"][real], row["targets"][real]
        assert (tgt[:-1] == ids[1:]).all() and (ids[1:] - ids[:-1] == 1).all()
        inputs.append(ids)
        targets.append(tgt)
        start = int(ids[0]) - 1000
        torch.testing.assert_close(
            row["target_words"][real],
            torch.from_numpy(split.words[start + 1 : start + 1 + len(ids)]),
        )
    # Columns in order reproduce the stream: every token but the first predicted exactly once.
    assert torch.cat(inputs).tolist() == split.ids[:-1].tolist()
    assert torch.cat(targets).tolist() == split.ids[1:].tolist()
    widths = [len(t) for t in targets]
    assert max(widths) - min(widths) <= 1


def test_ranks_read_their_own_columns_of_one_layout():
    split = _split(np.arange(200))
    whole = ContiguousColumns(split, batch_size=4, bptt=6)
    ranks = [ContiguousColumns(split, 2, 6, rank=r, world_size=2) for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(whole)  # every rank takes the same steps
    for i in range(len(whole)):
        together = torch.cat([ranks[0][i]["input_ids"], ranks[1][i]["input_ids"]])
        assert torch.equal(together, whole[i]["input_ids"])


def test_too_many_columns_for_the_split():
    with pytest.raises(UserError, match="cannot fill 8 parallel streams"):
        ContiguousColumns(_split(np.arange(8)), batch_size=4, bptt=2, world_size=2)


def test_contiguous_datamodule_loaders_are_ordered_and_batched(wikitext_dir):
    dm = WikiText2DataModule(
        data_dir=str(wikitext_dir),
        batching="contiguous",
        block_size=35,
        batch_size=20,
        eval_batch_size=10,
    )
    dm.prepare_data()
    dm.setup("fit")
    train = dm.train_dataloader()
    first = next(iter(train))  # a second pass starts the same: never shuffled
    assert first["input_ids"].shape == (20, 35) and set(first) >= {"input_ids", "targets"}
    batches = iter(train)
    first_again, second = next(batches), next(batches)
    assert torch.equal(first_again["input_ids"], first["input_ids"])
    # Batch 2 continues batch 1 in every row.
    assert torch.equal(second["input_ids"][:, 0], first["targets"][:, -1])
    val = next(iter(dm.val_dataloader()))
    assert val["input_ids"].shape == (10, 35) and set(val) >= {"target_words", "target_chars"}
    # The whole validation pass predicts every token of the split but the first, once.
    n_targets = sum(int((b["targets"] != IGNORE).sum()) for b in dm.val_dataloader())
    assert n_targets == len(dm.encoded("val")) - 1
    # A closed choice (a Literal) is the CLI parser's to check: one message naming the key.
    proc = run_cli(
        "fit",
        "--config",
        config("lstm_wikitext2.yaml"),
        "--data.init_args.batching=shuffled",
        check=False,
    )
    assert proc.returncode == 2 and "batching" in proc.stderr and "contiguous" in proc.stderr


# --- generation -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shakespeare():
    return TinyShakespeareDataModule(data_dir=str(need_corpus("tinyshakespeare")))


PROMPTS = [[1, 2, 3], [4, 5, 6, 7, 8, 9], [7]]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_decoding_state_follows_each_row_despite_left_padding(cell):
    """At every step, each row's logits equal one pass over that row's tokens alone."""
    model = tiny_rnn(cell).eval()
    ids, mask = left_pad(PROMPTS)
    with torch.no_grad():
        logits, state = model.start_decoding(ids, mask)
        rows = [list(p) for p in PROMPTS]
        for _ in range(5):
            for r, row in enumerate(rows):
                alone = model(torch.tensor([row]))[0][0, -1]
                torch.testing.assert_close(logits[r], alone, rtol=1e-5, atol=1e-5)
            nxt = logits.argmax(dim=-1)
            for r, t in enumerate(nxt.tolist()):
                rows[r].append(t)
            logits, state = model.continue_decoding(state, nxt)


def test_generation_batch_equals_one_by_one_and_beam_search_runs():
    model = tiny_rnn("lstm").eval()
    greedy = generate(model, PROMPTS, max_new_tokens=30)
    assert greedy == [generate(model, [p], max_new_tokens=30)[0] for p in PROMPTS]
    options = dict(max_new_tokens=30, strategy="sample", top_p=0.9, seed=7)
    assert generate(model, PROMPTS, **options) == [
        generate(model, [p], **options)[0] for p in PROMPTS
    ]
    assert beam_search(model, PROMPTS[1], num_beams=1, max_new_tokens=30)[0].tokens == greedy[1]
    hyps = beam_search(model, PROMPTS[1], num_beams=3, max_new_tokens=10, n_best=3)
    assert len(hyps) == 3 and [h.score for h in hyps] == sorted(
        (h.score for h in hyps), reverse=True
    )


def test_generate_text(shakespeare):
    model = RNNLanguageModel(
        vocab_size=shakespeare.vocab_size, cell="gru", n_layer=1, n_embd=16, n_hidden=16
    ).eval()
    texts = generate_text(model, ["ROMEO:", "JULIET:"], shakespeare, max_new_tokens=20)
    assert all(isinstance(t, str) and len(t) == 20 for t in texts)
    assert texts == [
        generate_text(model, [p], shakespeare, max_new_tokens=20)[0] for p in ["ROMEO:", "JULIET:"]
    ]
    (beam,) = generate_text(model, ["ROMEO:"], shakespeare, 10, strategy="beam", num_beams=3)
    assert isinstance(beam, str)


# --- the configs through the CLI ------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "choices"),
    [
        ("cell", "elman", "'rnn_tanh', 'rnn_relu', 'gru', 'lstm'"),
        ("impl", "cuda", "'torch', 'scratch'"),
    ],
)
def test_the_cli_refuses_a_choice_not_offered(key, value, choices):
    """The choices are Literal types: the parser refuses another value, naming the key and
    the choices (--print_config: nothing would train if it were accepted)."""
    bad = f"--model.init_args.{key}={value}"
    proc = run_cli(
        "fit", "--config", config("lstm_wikitext2.yaml"), bad, "--print_config", check=False
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f'key "{key}"' in proc.stderr and value in proc.stderr and choices in proc.stderr


TINY_RNN = [
    "--model.init_args.n_layer=2",
    "--model.init_args.n_embd=16",
    "--model.init_args.n_hidden=16",
    "--data.init_args.block_size=8",
    "--data.init_args.batch_size=4",
    "--data.init_args.eval_batch_size=4",
    "--trainer.max_epochs=2",
    "--trainer.limit_train_batches=5",
    "--trainer.limit_val_batches=3",
    "--trainer.limit_test_batches=3",
    "--trainer.log_every_n_steps=1",
    "--trainer.enable_progress_bar=false",
    "--trainer.logger=CSVLogger",
    "--trainer.logger.save_dir=csv",
    "--trainer.callbacks.max_new_tokens=5",  # the last callback: TextSamples
]


def _metrics(save_dir: Path) -> list[dict[str, str]]:
    rows = []
    for path in sorted(save_dir.rglob("metrics.csv")):
        with path.open() as f:
            rows += list(csv.DictReader(f))
    return rows


def _logged(rows: list[dict[str, str]], key: str) -> list[float]:
    return [float(r[key]) for r in rows if r.get(key)]


@pytest.mark.parametrize(
    ("name", "corpus", "extra"),
    [
        ("rnn_wikitext2.yaml", "wikitext-2-mini", ["--model.init_args.impl=scratch"]),
        ("gru_wikitext2.yaml", "wikitext-2-mini", []),
        ("lstm_wikitext2.yaml", "wikitext-2-mini", []),
        ("lstm_shakespeare_char.yaml", "tinyshakespeare", []),
    ],
)
def test_config_trains_through_the_cli(name, corpus, extra, tmp_path):
    data_dir = need_corpus(corpus)
    args = [*TINY_RNN, f"--data.init_args.data_dir={data_dir}", *extra]
    proc = run_cli("fit", "--config", config(name), *args, env=ONE_THREAD)
    rows = _metrics(tmp_path / "csv")
    assert len(_logged(rows, "val/loss")) == 2 and len(_logged(rows, "time/epoch_s")) == 2
    assert all(np.isfinite(_logged(rows, "train/loss")))
    assert "[step 5, greedy]" in proc.stdout + proc.stderr  # TextSamples generated text
    if name == "lstm_wikitext2.yaml":  # and the test pass on the saved checkpoint
        (last,) = tmp_path.rglob("last.ckpt")
        run_cli("test", "--config", config(name), *args, f"--ckpt_path={last}", env=ONE_THREAD)
        metrics = _metrics(tmp_path / "csv")
        word_ppl, ppl = _logged(metrics, "test/word_ppl"), _logged(metrics, "test/ppl")
        assert word_ppl and word_ppl == pytest.approx(ppl)  # word level: the same figure
