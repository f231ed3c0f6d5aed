"""`tokenizer: pretrained` (datamodules/pretrained_tokenizer.py) and chat templates
(datamodules/chat_template.py): a tiny byte-level BPE, trained here and saved as a Hugging
Face tokenizer with a chat template (no hub), reads Tiny Shakespeare and WikiText exactly as
`AutoTokenizer` does, its token ids cached under its files' hash; conversations in its
template count exactly the assistant's tokens; messages JSONL and its errors; a tiny LLaMA
with that vocabulary fine-tunes, chats and generates through the CLI."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch

from core.constants import IGNORE_INDEX
from core.errors import DataError, UserError
from datamodules import ChatDataModule, TinyShakespeareDataModule, WikiText2DataModule
from datamodules.chat import template_example
from datamodules.pretrained_tokenizer import load_pretrained_tokenizer
from tests.conftest import SHARED_DATA, config, run_cli

transformers = pytest.importorskip("transformers")
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402

SPECIALS = ["<s>", "</s>", "<|im_start|>", "<|im_end|>"]
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
# LLaMA 2's shape: no role headers, the answer stripped and closed by eos after a space.
INST = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }}"
    " [/INST]{% elif m['role'] == 'assistant' %} {{ m['content'].strip() }} {{ eos_token }}"
    "{% else %}<<SYS>>{{ m['content'] }}<</SYS>>{% endif %}{% endfor %}"
)


def shakespeare_text(n: int = 30_000) -> str:
    path = SHARED_DATA / "tinyshakespeare" / "input.txt"
    if not path.is_file():
        pytest.skip("tinyshakespeare not found")
    return path.read_text(encoding="utf-8")[:n]


def save_tokenizer(folder, template: str | None = CHATML, vocab: int = 400, bos: bool = True):
    """A byte-level BPE as LLaMA's tokenizers behave: <s> before every text, </s> its eos."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([shakespeare_text(), "user assistant Hello answer question"], trainer)
    if bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", special_tokens=[("<s>", 0)]
        )
    hf = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=SPECIALS[2:],
        chat_template=template,
    )
    hf.save_pretrained(folder)
    return transformers.AutoTokenizer.from_pretrained(folder)


@pytest.fixture
def tok_dir(tmp_path):
    save_tokenizer(tmp_path / "tok")
    return tmp_path / "tok"


@pytest.fixture
def shakespeare_dir(tmp_path):
    folder = tmp_path / "ts"
    folder.mkdir()
    (folder / "input.txt").write_text(shakespeare_text(), encoding="utf-8")
    return folder


def shakespeare(folder, tok_dir, **kwargs) -> TinyShakespeareDataModule:
    return TinyShakespeareDataModule(
        data_dir=str(folder),
        tokenizer="pretrained",
        pretrained_tokenizer=str(tok_dir),
        block_size=16,
        batch_size=2,
        **kwargs,
    )


# --- language-model corpora ----------------------------------------------------------------


def test_tinyshakespeare_gets_the_ids_autotokenizer_gives(shakespeare_dir, tok_dir):
    hf = transformers.AutoTokenizer.from_pretrained(tok_dir)
    data = shakespeare(shakespeare_dir, tok_dir)
    assert data.vocab_size == len(hf) and data.eos_id == hf.eos_token_id
    for split in ("train", "val"):
        text = "".join(data.lines()[split])
        encoded = data.encoded(split)
        assert encoded.ids.tolist() == hf(text)["input_ids"]  # one document, <s> first
        assert encoded.ids[0] == hf.bos_token_id and hf.bos_token_id not in encoded.ids[1:]
        # word perplexity and bits per character count the text's words and characters
        assert encoded.chars.sum() == len(text)
        assert encoded.words.sum() == len(text.split()) + text.count("\n")
    # generation: a prompt starts as a text does, and decodes back
    ids = data.encode("ROMEO:\nHow now")
    assert ids == hf("ROMEO:\nHow now")["input_ids"]
    assert data.decode(ids[1:]) == "ROMEO:\nHow now"
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert batch["input_ids"].shape == (2, 16) and batch["input_ids"].max() < data.vocab_size


def test_wikitext_gets_the_ids_autotokenizer_gives(tmp_path, tok_dir):
    source = SHARED_DATA / "wikitext-2-mini"
    if not source.is_dir():
        pytest.skip("wikitext-2-mini not found")
    folder = tmp_path / "wt"
    folder.mkdir()
    for name in ("train.txt", "valid.txt", "test.txt"):
        lines = (source / name).read_text(encoding="utf-8").splitlines(keepends=True)[:200]
        (folder / name).write_text("".join(lines), encoding="utf-8")
    data = WikiText2DataModule(
        data_dir=str(folder), tokenizer="pretrained", pretrained_tokenizer=str(tok_dir)
    )
    hf = transformers.AutoTokenizer.from_pretrained(tok_dir)
    for split in ("train", "val", "test"):
        assert data.encoded(split).ids.tolist() == hf("".join(data.lines()[split]))["input_ids"]


def test_token_ids_are_cached_under_the_tokenizer_files_hash(
    shakespeare_dir, tok_dir, tmp_path, monkeypatch
):
    first = shakespeare(shakespeare_dir, tok_dir)
    first.prepare_data()
    assert (first.cache.folder / "train-00000.tokens").is_file()
    assert first.tokenizer_path == tok_dir  # nothing of the tokenizer goes to the cache

    # The same files in another folder: the same tokenizer, the cache is read, not rebuilt.
    copy = tmp_path / "copy"
    shutil.copytree(tok_dir, copy)
    again = shakespeare(shakespeare_dir, copy)
    from datamodules.pretrained_tokenizer import PretrainedTokenizer

    def never(*_):
        raise AssertionError("token ids rebuilt although cached")

    with monkeypatch.context() as patch:
        patch.setattr(PretrainedTokenizer, "encode_document", never)
        assert again.cache.folder == first.cache.folder
        assert again.encoded("train").ids.tolist() == first.encoded("train").ids.tolist()

    # Other files (a smaller vocabulary) are another tokenizer: other ids, another folder.
    save_tokenizer(copy, vocab=300)
    changed = shakespeare(shakespeare_dir, copy)
    assert changed.cache.folder != first.cache.folder
    assert changed.vocab_size == 300
    assert len(changed.encoded("train")) > len(first.encoded("train"))


def test_an_offline_hub_id_without_a_local_copy_says_where_to_put_the_files(shakespeare_dir):
    data = shakespeare(shakespeare_dir, "someone/tiny-llama")
    with pytest.raises(DataError, match="hf download someone/tiny-llama --local-dir DIR"):
        data.vocab_size  # noqa: B018
    with pytest.raises(DataError, match="HF_HUB_OFFLINE is set"):
        ChatDataModule(tokenizer="pretrained", pretrained_tokenizer="someone/tiny-llama")
    proc = run_cli(
        "fit",
        "--config",
        config("gpt_chat_pretrain.yaml"),
        "--data.init_args.tokenizer=pretrained",
        "--data.init_args.pretrained_tokenizer=someone/tiny-llama",
        check=False,
    )
    assert proc.returncode == 2 and "hf download someone/tiny-llama" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_tokenizer_setting_and_its_folder_go_together(shakespeare_dir, tok_dir):
    with pytest.raises(
        UserError, match="tokenizer=pretrained needs data.init_args.pretrained_tokenizer"
    ):
        TinyShakespeareDataModule(data_dir=str(shakespeare_dir), tokenizer="pretrained")
    with pytest.raises(
        UserError, match="pretrained_tokenizer is set but data.init_args.tokenizer=char"
    ):
        TinyShakespeareDataModule(
            data_dir=str(shakespeare_dir), tokenizer="char", pretrained_tokenizer=str(tok_dir)
        )
    with pytest.raises(
        UserError, match="pretrained_tokenizer is set but data.init_args.tokenizer=byte"
    ):
        ChatDataModule(pretrained_tokenizer=str(tok_dir))


def test_model_rows_beyond_the_tokenizer_are_the_data_vocabulary(tmp_path, tok_dir):
    """Qwen2 pads its embedding past len(tokenizer): the data's vocab_size is the model's, so
    init_from accepts it and a checkpoint of the run loads again with the same data."""
    from lit_models import GPT

    hf = transformers.AutoTokenizer.from_pretrained(tok_dir)
    assert load_pretrained_tokenizer(str(tok_dir)).vocab_size == len(hf)  # no config.json
    padded = len(hf) + 12
    llama = transformers.LlamaConfig(
        vocab_size=padded,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=64,
    )
    transformers.AutoModelForCausalLM.from_config(llama).save_pretrained(tok_dir)
    tok = load_pretrained_tokenizer(str(tok_dir))
    assert tok.vocab_size == padded
    gpt = GPT(vocab_size=tok.vocab_size, block_size=32, init_from=str(tok_dir))
    assert gpt.hparams.vocab_size == padded


# --- chat templates ------------------------------------------------------------------------


SINGLE = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": "Hello there"},
    {"role": "assistant", "content": "Hello there"},  # the user's words again: not confused
]
MULTI = [
    {"role": "user", "content": "What is a question?"},
    {"role": "assistant", "content": "A question asks."},
    {"role": "user", "content": "And an answer?"},
    {"role": "assistant", "content": " It answers. "},  # spaces the INST template strips
    {"role": "user", "content": "Thanks"},
    {"role": "assistant", "content": "You are welcome."},
]
# Per template: the assistant's content and the token that closes the turn, in its text.
ASSISTANT_SPANS = {
    "chatml": r"<\|im_start\|>assistant\n(?P<content>.*?)(?P<end><\|im_end\|>)",
    "inst": r"\[/INST\] (?P<content>.*?) (?P<end></s>)",
}


def expected_counted(text: str, offsets, template: str) -> list[bool]:
    """Independently of the code under test: a token counts when it covers characters of an
    assistant's content, or is exactly the token closing that turn."""
    spans = []
    for match in re.finditer(ASSISTANT_SPANS[template], text, flags=re.S):
        spans.append(("content", *match.span("content")))
        spans.append(("end", *match.span("end")))
    return [
        any((a < e and b > s) if kind == "content" else (a, b) == (s, e) for kind, s, e in spans)
        for a, b in offsets
    ]


@pytest.mark.parametrize("template", ["chatml", "inst"])
@pytest.mark.parametrize("messages", [SINGLE, MULTI], ids=["single_turn", "multi_turn"])
def test_the_template_counts_exactly_the_assistant_tokens(tmp_path, template, messages):
    if template == "inst" and messages is SINGLE:
        messages = SINGLE[1:]  # the INST template places a system turn as a user one would
    hf = save_tokenizer(tmp_path / "tok", CHATML if template == "chatml" else INST)
    tok = load_pretrained_tokenizer(str(tmp_path / "tok"))
    example = template_example(tok, messages, block_size=512)
    text = hf.apply_chat_template(messages, tokenize=False)
    enc = hf(text, add_special_tokens=False, return_offsets_mapping=True)
    assert example.input_ids == enc["input_ids"][:-1]  # the whole rendered conversation
    expected = expected_counted(text, enc["offset_mapping"], template)
    # target j is token j + 1: counted exactly where that token is the assistant's
    counted = [t != IGNORE_INDEX for t in example.targets]
    assert counted == expected[1:]
    assert all(
        t == i
        for t, i in zip(example.targets, enc["input_ids"][1:], strict=True)
        if t != IGNORE_INDEX
    )
    said = [m["content"].strip() for m in messages if m["role"] == "assistant"]
    closing = "<|im_end|>" if template == "chatml" else "</s>"
    pieces = [enc["offset_mapping"][j + 1] for j, c in enumerate(counted) if c]
    assert "".join(text[a:b] for a, b in pieces).replace(" ", "") == "".join(
        s + closing for s in said
    ).replace(" ", "")


def test_chat_data_in_the_template_prompts_and_stops_as_the_template_does(tmp_path, tok_dir):
    folder = tmp_path / "conversations"
    folder.mkdir()
    rows = [{"messages": MULTI}] * 4 + [["Hi", "Hello", "How are you?", "Fine."]] * 4
    (folder / "talk.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    data = ChatDataModule(
        data_dir=str(folder),
        tokenizer="pretrained",
        pretrained_tokenizer=str(tok_dir),
        block_size=256,
        batch_size=2,
    )
    hf = transformers.AutoTokenizer.from_pretrained(tok_dir)
    assert data.format_prompt("Hi") == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    assert data.eos_id == hf.convert_tokens_to_ids("<|im_end|>")  # a reply ends its turn
    assert data.encode(data.format_prompt("Hi")) == hf(data.format_prompt("Hi"))["input_ids"][1:]
    assert data.tokenizer_name.startswith("pretrained:") and data.stop_strings == []
    data.setup("fit")
    # one example a conversation; turns without roles alternate user, assistant
    counted = {
        hf.decode([t for t in e.targets if t != IGNORE_INDEX])
        for e in data.train_set + data.val_set
    }
    assert counted == {
        "A question asks.<|im_end|> It answers. <|im_end|>You are welcome.<|im_end|>",
        "Hello<|im_end|>Fine.<|im_end|>",
    }


def test_a_tokenizer_without_a_template_is_refused_for_chat_and_reads_plain_text(tmp_path):
    save_tokenizer(tmp_path / "base", template=None)
    with pytest.raises(UserError, match="has no chat template.*format=plain"):
        ChatDataModule(tokenizer="pretrained", pretrained_tokenizer=str(tmp_path / "base"))
    folder = tmp_path / "c"
    folder.mkdir()
    (folder / "t.jsonl").write_text('["Hi", "Hello"]\n["Who?", "Me."]\n["A", "B"]\n')
    data = ChatDataModule(
        data_dir=str(folder),
        format="plain",
        tokenizer="pretrained",
        pretrained_tokenizer=str(tmp_path / "base"),
        batch_size=1,
    )
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path / "base")
    data.setup("fit")
    # as the tokenizer reads a text (<s> first), then its eos; every token a target
    texts = {tuple(e.input_ids): e.targets for e in data.train_set + data.val_set}
    ids = hf("Hi\nHello")["input_ids"] + [hf.eos_token_id]
    assert texts[tuple(ids)] == ids[1:]


# --- messages files ------------------------------------------------------------------------


def test_messages_jsonl_with_the_byte_tokenizer_pairs_user_and_assistant(tmp_path):
    (tmp_path / "m.jsonl").write_text(
        "\n".join(json.dumps({"messages": MULTI}) for _ in range(3)) + "\n"
    )
    data = ChatDataModule(data_dir=str(tmp_path), batch_size=1)  # the default: bytes
    data.setup("fit")
    responses = {data.decode([t for t in e.targets if t != IGNORE_INDEX]) for e in data.train_set}
    # each assistant message answers the user's before it; no user turn is a response
    assert responses == {
        "A question asks.<|endoftext|>",
        " It answers. <|endoftext|>",
        "You are welcome.<|endoftext|>",
    }


@pytest.mark.parametrize(
    "line, message",
    [
        ('{"messages": "hi"}', r"line 2: `messages` must be a list of \{\"role\""),
        ('{"messages": []}', "line 2: `messages` must be .*not empty"),
        ('{"messages": [{"role": "bot", "content": "hi"}]}', "message 1 has the role 'bot'"),
        ('{"messages": [{"role": "user", "content": 3}]}', "line 2: message 1 is not"),
        ('{"messages": [{"role": "user"', "line 2: not valid JSON"),
    ],
    ids=["not_a_list", "empty", "role", "content", "json"],
)
def test_bad_messages_files_name_the_file_line_and_message(tmp_path, line, message):
    good = json.dumps({"messages": SINGLE})
    (tmp_path / "bad.jsonl").write_text(f"{good}\n{line}\n")
    with pytest.raises(DataError, match=f"bad.jsonl: {message}" if "line" in message else message):
        ChatDataModule(data_dir=str(tmp_path)).conversations()


def test_a_hub_dataset_is_online_only(monkeypatch):
    with pytest.raises(DataError, match="HF_HUB_OFFLINE.*give data.init_args.data_dir"):
        ChatDataModule(dataset="someone/chats").conversations()
    with pytest.raises(UserError, match="give one"):
        ChatDataModule(dataset="someone/chats", data_dir=".")


def test_a_hub_dataset_reads_its_messages_column(online, monkeypatch):
    import datasets

    rows = [{"messages": MULTI, "source": "x"}] * 5
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: rows)
    data = ChatDataModule(dataset="someone/chats", batch_size=1)
    assert sum(len(c) for c in data.conversations().values()) == 5 + 1  # val = test
    monkeypatch.setattr(datasets, "load_dataset", lambda name, split: [{"text": "hi"}])
    with pytest.raises(DataError, match="no `messages` column"):
        ChatDataModule(dataset="someone/chats").conversations()


# --- through the CLI: fine-tune a tiny LLaMA in its own template, chat, generate ----------------


def tiny_llama(folder, vocab: int) -> None:
    """A random LLaMA with the tokenizer's vocabulary, saved beside it (weights far from
    their init, as in tests/test_hf_models.py, so that greedy choices are clear-cut)."""
    from tests.test_hf_models import hf_model, llama_config

    hf_model(llama_config(vocab_size=vocab, max_position_embeddings=128)).save_pretrained(folder)


QUICK = [
    "--data.init_args.block_size=64",
    "--data.init_args.batch_size=2",
    "--trainer.max_steps=3",
    "--trainer.val_check_interval=3",
    "--trainer.limit_val_batches=1",
    "--trainer.callbacks=[]",
    "--trainer.enable_progress_bar=false",
    "--trainer.logger=CSVLogger",
    "--trainer.logger.save_dir=csv",
]


def test_fine_tune_a_llama_in_its_chat_template_then_chat(tmp_path, tok_dir):
    """fit from a LLaMA whose embedding has rows past the tokenizer's length (as Qwen2's),
    then `chat` from its checkpoint: the data's vocabulary is the model's at both ends."""
    hf = transformers.AutoTokenizer.from_pretrained(tok_dir)
    tiny_llama(tok_dir, len(hf) + 12)
    conversations = tmp_path / "conversations"
    conversations.mkdir()
    (conversations / "c.jsonl").write_text(
        "\n".join(json.dumps({"messages": MULTI}) for _ in range(8))
    )
    data = [
        "--config",
        config("gpt_chat_pretrain.yaml"),
        "--data.init_args.format=chat",
        f"--model.init_args.init_from={tok_dir}",
        f"--data.init_args.data_dir={conversations}",
        "--data.init_args.tokenizer=pretrained",
        f"--data.init_args.pretrained_tokenizer={tok_dir}",
    ]
    run_cli("fit", *data, *QUICK)
    (ckpt,) = tmp_path.glob("csv/**/checkpoints/last.ckpt")
    args = ["--ckpt_path", str(ckpt), "--prompt", "Hello", "--strategy", "greedy"]
    proc = run_cli("chat", *data, *QUICK[:1], "--trainer.logger=false", *args, "--max_new_tokens=6")
    assert proc.stdout.startswith("user: Hello\nassistant:")
    # the reply is the fine-tuned model's greedy continuation of the template's prompt
    from lit_models import GPT
    from lit_models.modules.decoding import generate_text

    tuned = GPT.load_from_checkpoint(ckpt).eval()
    assert tuned.hparams.vocab_size == len(hf) + 12 and tuned.hparams.n_kv_head == 2
    chat = ChatDataModule(tokenizer="pretrained", pretrained_tokenizer=str(tok_dir))
    prompt = "<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    (reply,) = generate_text(tuned, [prompt], chat, max_new_tokens=6, strategy="greedy")
    assert reply.strip() and proc.stdout == f"user: Hello\nassistant: {reply.strip()}\n"


@torch.no_grad()
def test_generate_decodes_with_the_pretrained_tokenizer(shakespeare_dir, tok_dir):
    """With init_from and no checkpoint, `generate` continues with the Hugging Face weights
    themselves: the text is transformers' greedy continuation, decoded by the tokenizer."""
    hf = transformers.AutoTokenizer.from_pretrained(tok_dir)
    tiny_llama(tok_dir, len(hf))
    proc = run_cli(
        "generate",
        "--config",
        config("gpt_shakespeare_char.yaml"),
        f"--data.init_args.data_dir={shakespeare_dir}",
        "--data.init_args.tokenizer=pretrained",
        f"--data.init_args.pretrained_tokenizer={tok_dir}",
        "--data.init_args.block_size=64",
        f"--model.init_args.init_from={tok_dir}",
        "--trainer.logger=false",
        "--prompt=ROMEO:",
        "--strategy=greedy",
        "--max_new_tokens=12",
    )
    model = transformers.AutoModelForCausalLM.from_pretrained(tok_dir).eval()
    ids = hf("ROMEO:", return_tensors="pt")["input_ids"]
    out = model.generate(ids, max_new_tokens=12, do_sample=False, eos_token_id=1, pad_token_id=1)
    new = [i for i in out[0, ids.size(1) :].tolist() if i != 1]
    assert proc.stdout.startswith("ROMEO:" + hf.decode(new))


def test_a_model_folder_refuses_data_of_another_tokenizer_of_its_size(tmp_path, shakespeare_dir):
    """Sizes that agree are not enough: data tokenized by another tokenizer (its folder's
    config.json gives it the model's 400 rows) would feed the model other tokens' ids."""
    model_dir, other = tmp_path / "model", tmp_path / "other"
    save_tokenizer(model_dir, vocab=400)
    tiny_llama(model_dir, 400)
    save_tokenizer(other, vocab=380)
    shutil.copy(model_dir / "config.json", other / "config.json")
    args = [
        "--config",
        config("gpt_shakespeare_char.yaml"),
        f"--data.init_args.data_dir={shakespeare_dir}",
        "--data.init_args.tokenizer=pretrained",
        f"--model.init_args.init_from={model_dir}",
        *QUICK,
    ]
    proc = run_cli("fit", *args, f"--data.init_args.pretrained_tokenizer={other}", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert (
        f"model.init_args.init_from {model_dir} learned the token ids of the tokenizer"
        in proc.stderr
    )
    run_cli("fit", *args, f"--data.init_args.pretrained_tokenizer={model_dir}")
