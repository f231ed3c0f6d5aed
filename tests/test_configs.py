"""Configs say only what differs: the shared settings live in configs/defaults.yaml, every
config parses merged with them, and the listing names each config's model and corpus."""

from __future__ import annotations

import re

import pytest
import yaml

from cli.list_configs import config_rows
from tests.conftest import ROOT, run_cli

CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml") if p.name != "defaults.yaml")
SHARED = {"seed_everything", "logger", "ModelCheckpoint", "EarlyStopping"}
# One config of each kind of override (a parse costs seconds: the parser of every subcommand
# is built); the other configs are parsed by the tests that train them.
PARSED = ["gpt_wikitext2", "gpt_chat_pretrain", "sentiment_lstm_sst2", "word2vec_cbow_wikitext2"]


@pytest.mark.parametrize("name", PARSED)
def test_config_parses_merged_with_the_defaults(name):
    proc = run_cli("fit", "--config", str(ROOT / "configs" / f"{name}.yaml"), "--print_config")
    merged = yaml.safe_load(proc.stdout)
    assert merged["seed_everything"] == 1337
    assert merged["trainer"]["logger"]["class_path"].endswith("WandbLogger")
    assert merged["last_checkpoint"]["filename"] == "last"
    assert merged["early_stopping"]["monitor"] == merged["checkpoint"]["monitor"]


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_does_not_repeat_the_defaults(path):
    text = path.read_text(encoding="utf-8")
    repeated = {word for word in SHARED if f"{word}:" in text or f".{word}" in text}
    assert not repeated, f"{path.name} repeats shared settings: {sorted(repeated)}"


def test_list_configs_names_model_and_corpus():
    rows = {name: (model, data) for name, model, data in config_rows()}
    assert set(rows) == {p.name for p in CONFIGS}
    assert rows["gpt_wikitext2.yaml"] == ("GPT", "WikiText2DataModule")
    assert rows["transformer_multi30k.yaml"] == ("TransformerTranslator", "Multi30kDataModule")


def size_line(text: str) -> str | None:
    """The header's `# Size: ...` line with its `#   ` continuation lines, joined."""
    match = re.search(r"^# Size: .*(?:\n#   .*)*", text, re.MULTILINE)
    return re.sub(r"\n#   ", " ", match.group()) if match else None


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_config_header_says_its_size_and_the_hardware_it_is_meant_for(path):
    line = size_line(path.read_text(encoding="utf-8"))
    assert line and "parameters" in line and "Hardware: " in line, f"{path.name}: {line}"


def test_the_quick_start_config_has_the_size_its_header_says():
    from lit_models import GPT

    path = ROOT / "configs" / "gpt_shakespeare_char_cpu.yaml"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    # Tiny Shakespeare's character vocabulary: 65 characters and <unk>.
    model = GPT(**config["model"]["init_args"], vocab_size=66, block_size=64)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    assert size_line(path.read_text()).startswith(f"# Size: {millions:.2f}M parameters.")
