"""The command line as a user drives it: fit, test, validate, predict and --print_config on the
shared corpora, the files a run leaves behind, and the one-line error of the real interpreter
(the matrix of bad input, run in this process, is test_bad_inputs.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from cli.trainer import Trainer, resolve_precision
from tests.conftest import (
    SHARED_DATA,
    TINY_GPT,
    assert_one_clear_error,
    config,
    evaluation_metrics,
    logged_metrics,
    need_corpus,
    run_cli,
    run_cli_subprocess,
)

SHAKESPEARE = config("gpt_shakespeare_char.yaml")
WIKITEXT = config("gpt_wikitext2.yaml")
CSV_LOGGER = ["--trainer.logger=CSVLogger", "--trainer.logger.save_dir=csv"]


def the_run(root: Path) -> Path:
    """The one run folder under `root` (W&B logger: `<project>/<run-id>`)."""
    (run,) = (root / "seqmodels").iterdir()
    return run


def checkpoint_val_loss(ckpt: Path) -> float:
    """val/loss of the validation that the checkpoint was saved after."""
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    (key,) = (
        k for k in state["callbacks"] if k.startswith("ModelCheckpoint{'monitor': 'val/loss'")
    )
    return float(state["callbacks"][key]["current_score"])


def assert_lm_metrics(metrics: dict[str, float], stage: str) -> None:
    loss, ppl = metrics[f"{stage}/loss"], metrics[f"{stage}/ppl"]
    assert math.isfinite(loss) and math.isfinite(ppl), metrics
    assert 0 < loss < 20
    assert ppl == pytest.approx(math.exp(loss), rel=1e-5)


@pytest.fixture(scope="module")
def shakespeare_run(tmp_path_factory) -> Path:
    """One tiny `fit` on Tiny Shakespeare, shared by the tests that read or reuse its files."""
    need_corpus("tinyshakespeare")
    folder = tmp_path_factory.mktemp("shakespeare_fit")
    env = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "XDG_CACHE_HOME": str(folder / "cache"),
        "DATA_DIR": str(SHARED_DATA),
    }
    run_cli("fit", "--config", SHAKESPEARE, *TINY_GPT, cwd=folder, env=env)
    return the_run(folder)


def csv_logged(*args: str, env: dict[str, str] | None = None) -> dict[str, float]:
    """`main.py ARGS` logging to a CSVLogger in ./csv (with a checkpoint of a run: into that
    run's `<subcommand>` folder): the last value of each metric it logged."""
    run_cli(*args, *CSV_LOGGER, env=env)
    ckpt = next((a.split("=", 1)[1] for a in args if a.startswith("--ckpt_path=")), None)
    return logged_metrics(Path("csv")) if ckpt is None else evaluation_metrics(ckpt, args[0])


def same_cache(run: Path) -> dict[str, str]:
    """The fit's token cache for a later command on its checkpoint: the corpus is encoded
    once for the module, not once per test."""
    return {"XDG_CACHE_HOME": str(run.parents[1] / "cache")}


# --- fit, test, validate, predict, --print_config ------------------------------------------


def test_fit_saves_best_and_last_checkpoints_beside_the_resolved_config(shakespeare_run):
    ckpts = shakespeare_run / "checkpoints"
    assert (ckpts / "last.ckpt").is_file()
    assert len(list(ckpts.glob("best-*.ckpt"))) == 1
    assert torch.load(ckpts / "last.ckpt", weights_only=True)["global_step"] == 20

    saved = yaml.safe_load((shakespeare_run / "config.yaml").read_text())
    assert saved["model"]["class_path"] == "lit_models.GPT"
    assert saved["model"]["init_args"]["n_layer"] == 1  # the command line wins over the YAML
    assert saved["model"]["init_args"]["n_embd"] == 32
    assert saved["data"]["init_args"]["block_size"] == 32
    assert saved["trainer"]["max_steps"] == 20


def test_test_reports_finite_loss_and_perplexity_of_the_checkpoint(shakespeare_run):
    last = shakespeare_run / "checkpoints" / "last.ckpt"
    args = ["test", "--config", SHAKESPEARE, *TINY_GPT, f"--ckpt_path={last}"]
    metrics = csv_logged(*args, env=same_cache(shakespeare_run))
    assert_lm_metrics(metrics, "test")
    # Tiny Shakespeare tests on its validation text: the same 4 batches that fit validated
    # at step 20, so the weights restored from last.ckpt give the same loss.
    assert metrics["test/loss"] == pytest.approx(checkpoint_val_loss(last), rel=1e-5)


def test_validate_with_the_saved_config_reproduces_the_val_loss(shakespeare_run):
    last = shakespeare_run / "checkpoints" / "last.ckpt"
    saved = shakespeare_run / "config.yaml"
    metrics = csv_logged(
        "validate", "--config", str(saved), f"--ckpt_path={last}", env=same_cache(shakespeare_run)
    )
    assert_lm_metrics(metrics, "val")
    assert metrics["val/loss"] == pytest.approx(checkpoint_val_loss(last), rel=1e-5)


def test_predict_runs(shakespeare_run):
    last = shakespeare_run / "checkpoints" / "last.ckpt"
    proc = run_cli(
        "predict",
        "--config",
        SHAKESPEARE,
        *TINY_GPT,
        "--trainer.logger=false",
        "--trainer.limit_predict_batches=2",
        f"--ckpt_path={last}",
        env=same_cache(shakespeare_run),
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr


def test_print_config_needs_no_corpus_and_shows_the_overrides(tmp_path):
    """--print_config stops before any data is read: it works with no corpus at all."""
    env = {"DATA_DIR": str(tmp_path / "no-corpora")}
    args = ["fit", "--config", SHAKESPEARE, "--model.init_args.n_layer=3", "--print_config"]
    printed = yaml.safe_load(run_cli(*args, env=env).stdout)
    assert printed["model"]["class_path"] == "lit_models.GPT"
    assert printed["model"]["init_args"]["n_layer"] == 3  # the command line
    assert printed["model"]["init_args"]["n_head"] == 6  # the YAML
    assert printed["data"]["init_args"]["block_size"] == 256
    assert printed["trainer"]["precision"] == "auto"
    assert not (tmp_path / "no-corpora").exists()


def test_limit_batches_one_means_one_batch():
    # Lightning: an int counts batches, a float is a fraction; 1 must not become 1.0 (all).
    args = ["--trainer.limit_val_batches=1", "--trainer.limit_train_batches=0.5"]
    printed = yaml.safe_load(
        run_cli("fit", "--config", SHAKESPEARE, *args, "--print_config").stdout
    )
    assert printed["trainer"]["limit_val_batches"] == 1
    assert isinstance(printed["trainer"]["limit_val_batches"], int)
    assert printed["trainer"]["limit_train_batches"] == 0.5


def test_fit_then_test_on_wikitext2(wikitext_dir):
    data = f"--data.init_args.data_dir={wikitext_dir}"
    run_cli("fit", "--config", WIKITEXT, *TINY_GPT, data)
    run = the_run(Path.cwd())
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert len(list((run / "checkpoints").glob("best-*.ckpt"))) == 1
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["data"]["init_args"]["data_dir"] == str(wikitext_dir)
    assert saved["data"]["init_args"]["tokenizer"] == "word"

    last = run / "checkpoints" / "last.ckpt"
    metrics = csv_logged("test", "--config", WIKITEXT, *TINY_GPT, data, f"--ckpt_path={last}")
    assert_lm_metrics(metrics, "test")
    # Word tokens are WikiText's words (one <eos> per line): word perplexity is perplexity.
    assert metrics["test/word_ppl"] == pytest.approx(metrics["test/ppl"], rel=1e-5)


# --- bad input: one message, a non-zero exit, no traceback ------------------------------------
# Bad settings and bad data files of every model and corpus: the matrix of test_bad_inputs.py.


def test_unknown_config_key():
    # `python main.py` itself, once: what the real interpreter prints and the status it exits with.
    args = ["fit", "--config", SHAKESPEARE, "--model.init_args.n_layerz=2"]
    proc = run_cli_subprocess(*args, check=False)
    assert proc.returncode == 2
    assert_one_clear_error(proc, "n_layerz")
    assert len(proc.stderr.splitlines()) < 20  # the message, not the whole usage


# --- precision: auto ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("accelerator", "cuda", "bf16", "expected"),
    [
        ("auto", False, False, "32-true"),  # a CPU machine
        ("cpu", True, True, "32-true"),  # the CPU asked for on a GPU machine
        ("auto", True, True, "bf16-mixed"),  # Ampere and newer
        ("gpu", True, False, "16-mixed"),  # older GPUs (T4, V100)
        ("cuda", True, True, "bf16-mixed"),
    ],
)
def test_precision_auto(monkeypatch, accelerator, cuda, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    assert resolve_precision("auto", accelerator) == expected


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed", "64-true", 16])
def test_precision_other_than_auto_is_kept(precision):
    assert resolve_precision(precision, "auto") == precision


def test_trainer_with_precision_auto_runs_fp32_on_the_cpu():
    trainer = Trainer(accelerator="cpu", devices=1, logger=False, enable_checkpointing=False)
    assert trainer.precision == "32-true"
