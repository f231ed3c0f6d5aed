"""The chat datamodule: chatterbot-corpus in English and Chinese, local YAML / JSONL files,
the chat template with response-only targets, the split, and clear errors for bad files."""

from __future__ import annotations

import json

import pytest
import torch

from core.constants import IGNORE_INDEX
from core.errors import DataError, UserError
from datamodules.chat import (
    ASSISTANT,
    CHAT_SPECIALS,
    USER,
    ChatDataModule,
    chat_example,
)
from datamodules.tokenizers import END_OF_TEXT, ByteTokenizer
from lit_models.language_model import next_token_nll


def counted_text(data: ChatDataModule, targets: list[int]) -> str:
    return data.decode([t for t in targets if t != IGNORE_INDEX])


def test_byte_tokenizer_round_trips_english_chinese_and_markers():
    tok = ByteTokenizer(CHAT_SPECIALS)
    text = f"{USER}\nHello, 你好!\n{ASSISTANT}\n嗨{END_OF_TEXT}"
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert ids[0] == tok.token_to_id(USER) and ids[-1] == tok.token_to_id(END_OF_TEXT)
    assert max(ids) < tok.vocab_size == 256 + len(CHAT_SPECIALS)


@pytest.mark.parametrize("language, sample", [("english", "What is AI?"), ("chinese", "什么是ai")])
def test_chatterbot_corpus_loads_as_template_pairs(language, sample):
    data = ChatDataModule(language=language, block_size=128, batch_size=4)
    data.setup("fit")
    conversations = data.conversations()
    assert len(conversations["train"]) > 100 and len(conversations["val"]) > 10
    assert any(sample in turn for c in conversations["train"] + conversations["val"] for turn in c)
    example = data.train_set[0]
    text = data.decode(example.input_ids)
    assert text.startswith(f"{USER}\n") and f"\n{ASSISTANT}\n" in text
    batch = next(iter(data.train_dataloader()))
    assert batch["input_ids"].shape == batch["targets"].shape
    assert batch["input_ids"].shape[0] == 4 and batch["input_ids"].shape[1] <= 128


def test_targets_count_the_response_only():
    tok = ByteTokenizer(CHAT_SPECIALS)
    example = chat_example(tok, "How are you?", "Fine, 谢谢.", block_size=128)
    n_prompt = len(tok.encode(f"{USER}\nHow are you?\n{ASSISTANT}\n"))
    # every prompt and template token is ignored; the response and its end are counted
    assert all(t == IGNORE_INDEX for t in example.targets[: n_prompt - 1])
    assert (
        tok.decode([t for t in example.targets if t != IGNORE_INDEX]) == "Fine, 谢谢.<|endoftext|>"
    )
    # and so the loss gives the prompt's positions no weight: their logits get no gradient
    logits = torch.randn(1, len(example.input_ids), tok.vocab_size, requires_grad=True)
    targets = torch.tensor([example.targets])
    nll = next_token_nll(logits, targets)
    (nll.sum() / (targets != IGNORE_INDEX).sum()).backward()
    grad_per_position = logits.grad.abs().sum(dim=-1)[0]
    assert torch.all(grad_per_position[: n_prompt - 1] == 0)
    assert torch.all(grad_per_position[n_prompt - 1 :] > 0)


def test_long_pairs_keep_the_end_of_the_prompt_and_the_start_of_the_response():
    tok = ByteTokenizer(CHAT_SPECIALS)
    short = chat_example(tok, "x" * 500, "the answer", block_size=32)
    assert len(short.input_ids) <= 32
    assert tok.decode(short.input_ids).endswith(f"x\n{ASSISTANT}\nthe answer")
    assert tok.decode([t for t in short.targets if t != IGNORE_INDEX]) == "the answer" + END_OF_TEXT
    long = chat_example(tok, "x" * 500, "y" * 500, block_size=32)
    assert len(long.input_ids) == len(long.targets) == 32
    assert (
        tok.decode([t for t in long.targets if t != IGNORE_INDEX]) == "y" * 17
    )  # 33 tokens: 16 of prompt, 17 of answer


def test_plain_format_counts_every_token_in_blocks():
    data = ChatDataModule(language="english", format="plain", block_size=64, batch_size=4)
    data.setup("fit")
    assert all(len(e.input_ids) <= 64 for e in data.train_set)
    assert all(t != IGNORE_INDEX for e in data.train_set for t in e.targets)
    assert USER not in data.decode(data.train_set[0].input_ids)


def test_split_is_by_conversation_and_seeded(tmp_path):
    lines = [json.dumps([f"question {i}", f"answer {i}"]) for i in range(50)]
    (tmp_path / "talk.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def split(seed):
        data = ChatDataModule(data_dir=str(tmp_path), val_fraction=0.2, split_seed=seed)
        c = data.conversations()
        return [t[0] for t in c["train"]], [t[0] for t in c["val"]]

    train, valid = split(1)
    assert len(valid) == 10 and len(train) == 40 and not set(train) & set(valid)
    assert split(1) == (train, valid)
    assert split(2)[1] != valid


def test_local_yaml_in_the_chatterbot_layout(tmp_path):
    (tmp_path / "a.yml").write_text(
        "categories: [test]\nconversations:\n- - hi\n  - hello\n  - how are you?\n- - 早\n  - 早上好\n",
        encoding="utf-8",
    )
    (tmp_path / "b.yml").write_text("conversations:\n- - bye\n  - see you\n", encoding="utf-8")
    data = ChatDataModule(data_dir=str(tmp_path), val_fraction=0.3, batch_size=1)
    data.setup("fit")
    pairs = [data.decode(e.input_ids) for e in data.train_set + data.val_set]
    assert len(pairs) == 4  # hi->hello, hello->how are you?, 早->早上好, bye->see you
    assert any("早上好" in p for p in pairs)


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("bad.yml", "conversations:\n- - hi\n  - [unclosed\n", "bad.yml: line"),
        ("bad.yml", "conversations:\n- - hi\n  - {a: b}\n", "bad.yml: line 3"),
        ("bad.yml", "conversations:\n- just text\n", "bad.yml: line 2"),
        ("bad.yml", "talks:\n- - hi\n", "no `conversations:`"),
        ("bad.jsonl", '["hi", "hello"]\n{"oops"\n', "bad.jsonl: line 2"),
        ("bad.jsonl", '["hi", 3]\n', "bad.jsonl: line 1"),
    ],
)
def test_malformed_files_name_the_file_and_line(tmp_path, name, content, message):
    (tmp_path / name).write_text(content, encoding="utf-8")
    data = ChatDataModule(data_dir=str(tmp_path))
    with pytest.raises(DataError, match=message.replace("[", r"\[")):
        data.conversations()


def test_missing_folder_and_unknown_language_are_clear(tmp_path):
    with pytest.raises(DataError, match="not a folder"):
        ChatDataModule(data_dir=str(tmp_path / "nowhere")).conversations()
    with pytest.raises(DataError, match="no conversation files"):
        ChatDataModule(data_dir=str(tmp_path)).conversations()
    with pytest.raises(UserError, match="chinese"):
        ChatDataModule(language="klingon").conversations()
