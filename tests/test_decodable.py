"""Every model that generates is `Decodable`: the protocol the decoding strategies ask for
(device, decoding_mode, start / continue / reorder). The translators take part through
BoundSource, the language models directly; decoding leaves the model in the mode it found."""

from __future__ import annotations

import pytest
import torch

from lit_models import (
    GPT,
    AttentionSeq2Seq,
    LoRAGPT,
    MLPLanguageModel,
    RNNLanguageModel,
    Seq2Seq,
    TransformerTranslator,
    WaveNetLanguageModel,
)
from lit_models.modules.decoding import Decodable, beam_search, generate
from lit_models.translation import BoundSource

VOCAB, BLOCK = 13, 8
SOURCE = torch.tensor([[5, 6, 7, 2]])  # ids + <eos>, as a translator's batch holds them

# Sizes are the defaults (only the data's facts are given), so the test builds each class
# as a config without model options would.
LANGUAGE_MODELS = {
    "gpt": lambda: GPT(VOCAB, BLOCK),
    "gpt_no_kv_cache": lambda: GPT(VOCAB, BLOCK, kv_cache=False),
    "rnn": lambda: RNNLanguageModel(VOCAB),
    "mlp": lambda: MLPLanguageModel(VOCAB),
    "wavenet": lambda: WaveNetLanguageModel(VOCAB),
}
TRANSLATORS = {
    "seq2seq": lambda: Seq2Seq(VOCAB, BLOCK),
    "attention_seq2seq": lambda: AttentionSeq2Seq(VOCAB, BLOCK),
    "transformer": lambda: TransformerTranslator(VOCAB, BLOCK),
}


def decodable(name: str) -> tuple[Decodable, torch.nn.Module]:
    """The thing decoding is handed, and the module whose mode it must restore."""
    torch.manual_seed(0)
    if name in TRANSLATORS:
        model = TRANSLATORS[name]()
        return BoundSource(model, SOURCE), model
    model = LANGUAGE_MODELS[name]()
    return model, model


@pytest.mark.parametrize("name", [*LANGUAGE_MODELS, *TRANSLATORS])
def test_each_generating_model_is_decodable_and_decodes_in_eval_mode(name):
    model, module = decodable(name)
    assert isinstance(model, Decodable)
    assert model.device == torch.device("cpu")
    module.train()
    with model.decoding_mode():
        assert not module.training and not torch.is_grad_enabled()
    assert module.training and torch.is_grad_enabled()
    prompt = [1]  # a translator's [<bos>]; any token for a language model
    assert len(generate(model, [prompt], max_new_tokens=3)[0]) == 3
    assert len(beam_search(model, prompt, num_beams=2, max_new_tokens=3)) == 1
    assert module.training  # decoding put back the mode it found


def test_decoding_restores_eval_mode_too():
    model = GPT(VOCAB, BLOCK).eval()
    generate(model, [[1]], max_new_tokens=2)
    assert not model.training


def test_a_translator_decodes_through_its_bound_source():
    model = Seq2Seq(VOCAB, BLOCK)
    assert not isinstance(model, Decodable)  # it needs a source to translate
    assert isinstance(BoundSource(model, SOURCE), Decodable)
    assert not isinstance(object(), Decodable)


def test_lora_gpt_is_decodable(tmp_path):
    pytest.importorskip("peft")
    torch.manual_seed(0)
    base = GPT(VOCAB, BLOCK, n_layer=1, n_head=2, n_embd=16)
    path = tmp_path / "base.ckpt"
    hparams = {**base.hparams, "_class_path": "lit_models.GPT"}
    torch.save({"state_dict": base.state_dict(), "hyper_parameters": hparams}, path)
    model = LoRAGPT(str(path), rank=2).train()
    assert isinstance(model, Decodable)
    assert len(generate(model, [[1, 2]], max_new_tokens=3)[0]) == 3
    assert model.training and model.gpt.training
