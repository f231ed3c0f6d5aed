"""What every translator of the suite shares: the teacher-forced loss, the evaluation pass (loss,
perplexity, BLEU of the decoded translations) and decoding through the shared strategies.

A batch (the data contract) holds `source` [B, S] (ids + <eos>, right-padded with <pad>) and
`target` [B, T] (<bos> + ids + <eos>, right-padded); the model reads target[:, :-1] and
predicts target[:, 1:] (teacher forcing):

    loss = CrossEntropy(logits, target[:, 1:])      over real target tokens, label smoothing
    ppl  = exp(summed NLL / real target tokens)     teacher-forced, no smoothing
    bleu     = SacreBLEU(13a) of decode(hypotheses) vs the reference text, x 100, lower-cased
               when the data lower-cases (Multi30k's default): torchmetrics' implementation
    bleu_tok = BLEU on lower-cased word tokens, the figure pytorch-seq2seq's notebooks print
    sacrebleu_cased, chrf = the `sacrebleu` package's BLEU (13a, cased) and chrF2 of the same
               text: no lower-casing, the figures papers report (signatures printed at test end)

A subclass is an encoder-decoder: `forward(source, target_in) -> logits` for training, and
for decoding one token at a time

    encode(source [B, S]) -> memory                 what the decoder reads of the source
    init_decoder_state(memory) -> state             the decoder before its first token
    decode_step(memory, state, ids [B]) -> (logits [B, V], state)
    reorder_decoding(memory, state, rows) -> (memory, state)   keep (and repeat) batch rows

`BoundSource` binds an encoded source batch to the model, so that the shared `generate`
(greedy) and `beam_search` in lit_models/modules/decoding.py translate as they continue a
prompt: the prompt is [<bos>], the continuation the translation. The training and evaluation
loop is TextModel's (lit_models/text_model.py); a translator adds BLEU to it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.text import BLEUScore, SacreBLEUScore

from core.checks import require_in_range, require_non_negative, require_positive
from core.constants import IGNORE_INDEX
from core.errors import UserError
from lit_models.modules.decoding import DecodingState, beam_search, generate
from lit_models.modules.sacrebleu_metrics import SacreBLEU, SacrebleuMetric, SacreChrF
from lit_models.text_model import EVAL_STAGES, EvalStage, TextModel, TokenScores, next_token_nll

TRANSLATE_CHUNK = 128  # sentences decoded together by translate_ids' greedy search


class Translator(TextModel):
    """Subclasses call `super().__init__()`, then `self.save_hyperparameters()` with the init
    args of the contract (vocab_size, block_size, pad_id, bos_id, eos_id, learning_rate,
    label_smoothing, eval_num_beams, test_num_beams, length_penalty, max_new_tokens), then
    `self.check_translation_hparams()`."""

    def __init__(self):
        super().__init__()
        self.bleu_metrics: nn.ModuleDict | None = None  # made in setup() when the data can decode

    def check_translation_hparams(self) -> None:
        hp = self.hparams
        require_positive("model", vocab_size=hp.vocab_size, block_size=hp.block_size)
        require_non_negative("model", learning_rate=hp.learning_rate)
        for name in ("eval_num_beams", "test_num_beams"):
            if hp[name] < 1:
                raise UserError(
                    f"model.init_args.{name}={hp[name]} must be >= 1 (1 is greedy decoding)."
                )
        if not 0.0 <= hp.label_smoothing < 1.0:
            raise UserError(
                f"model.init_args.label_smoothing={hp.label_smoothing} must be in [0, 1)."
            )
        if hp.max_new_tokens is not None and hp.max_new_tokens < 1:
            raise UserError(
                f"model.init_args.max_new_tokens={hp.max_new_tokens} must be >= 1 or null."
            )
        if len({hp.pad_id, hp.bos_id, hp.eos_id}) != 3:
            raise UserError(
                f"model.init_args.pad_id, bos_id and eos_id must differ (got {hp.pad_id}, {hp.bos_id}, "
                f"{hp.eos_id}); the datamodules use 0, 1 and 2."
            )
        require_in_range(
            "model", 0, hp.vocab_size, "[)", pad_id=hp.pad_id, bos_id=hp.bos_id, eos_id=hp.eos_id
        )  # token ids

    # --- what a subclass provides ------------------------------------------------------------

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, V] of the next target token after each of target_in [B, T]."""
        raise NotImplementedError

    def encode(self, source: torch.Tensor):
        raise NotImplementedError

    def init_decoder_state(self, memory):
        raise NotImplementedError

    def decode_step(self, memory, state, ids: torch.Tensor):
        raise NotImplementedError

    def reorder_decoding(self, memory, state, rows: torch.Tensor):
        raise NotImplementedError

    def cross_attention(self, source: list[int], target: list[int]) -> torch.Tensor | None:
        """Weights [len(target), len(source)] with which each target token, teacher-forced,
        attended to the source; None for a model without attention."""
        return None

    # --- training and evaluation --------------------------------------------------------------

    def source_mask(self, source: torch.Tensor) -> torch.Tensor:
        return source != self.hparams.pad_id

    def training_loss(self, batch: dict) -> torch.Tensor:
        target = batch["target"]
        logits = self(batch["source"], target[:, :-1])
        return F.cross_entropy(
            logits.flatten(0, 1).float(),
            target[:, 1:].flatten(),
            ignore_index=self.hparams.pad_id,
            label_smoothing=self.hparams.label_smoothing,
        )

    def setup(self, stage: str) -> None:
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer else None
        self.check_special_ids(datamodule)
        if self.bleu_metrics is None and callable(getattr(datamodule, "decode", None)):
            lowercase = bool(getattr(datamodule, "lowercase", False))
            self.bleu_metrics = nn.ModuleDict(
                {
                    stage: nn.ModuleDict(
                        {
                            "bleu": SacreBLEUScore(tokenize="13a", lowercase=lowercase),
                            "bleu_tok": BLEUScore(),
                            "sacrebleu_cased": SacreBLEU(lowercase=False),
                            "chrf": SacreChrF(),
                        }
                    )
                    for stage in EVAL_STAGES
                }
            )

    def check_special_ids(self, datamodule) -> None:
        """The CLI links pad_id and bos_id from the data; eos_id cannot be linked (Lightning
        passes a checkpoint's hyperparameters on as free keywords, and the language models,
        which take none, would receive the language datamodules' eos_id too), so it is held
        against the data's here: a mismatch would train on the wrong tokens silently."""
        for name in ("pad_id", "bos_id", "eos_id"):
            data_id = getattr(datamodule, name, None)
            if data_id is not None and data_id != self.hparams[name]:
                raise UserError(
                    f"model.init_args.{name}={self.hparams[name]} but the data's {name} is {data_id}: "
                    f"set model.init_args.{name}={data_id} (or leave it to the default)."
                )

    def score_tokens(self, batch: dict, stage: EvalStage) -> TokenScores:
        """Teacher-forced: the NLL of target[:, 1:] reading target[:, :-1], without smoothing."""
        source, target = batch["source"], batch["target"]
        gold = target[:, 1:]
        real = gold != self.hparams.pad_id
        nll = next_token_nll(self(source, target[:, :-1]), gold.masked_fill(~real, IGNORE_INDEX))
        return TokenScores(nll, real)

    def update_extra_metrics(self, batch: dict, stage: EvalStage) -> dict:
        """BLEU of the translations when the datamodule can turn ids into text (greedy or beam
        search by `eval_num_beams` / `test_num_beams`). Returns the hypotheses' ids (and text)
        for callbacks."""
        if self.bleu_metrics is None:
            return {}
        num_beams = self.hparams.eval_num_beams if stage == "val" else self.hparams.test_num_beams
        hypotheses = self._translate_batch(
            batch["source"], num_beams, self.hparams.length_penalty, self._max_new_tokens(None)
        )
        codec = self._trainer.datamodule
        texts = [codec.decode(ids) for ids in hypotheses]
        references = list(batch["target_text"])
        metrics = self.bleu_metrics[stage]
        metrics["bleu"].update(texts, [[r] for r in references])
        metrics["sacrebleu_cased"].update(texts, references)
        metrics["chrf"].update(texts, references)
        words = lambda text: " ".join(codec.bleu_tokens(text))  # noqa: E731
        metrics["bleu_tok"].update([words(t) for t in texts], [[words(r)] for r in references])
        return {"hypotheses": hypotheses, "hypothesis_text": texts}

    def log_extra_metrics(self, stage: EvalStage) -> None:
        if self.bleu_metrics is None:
            return
        for name, metric in self.bleu_metrics[stage].items():
            # torchmetrics' BLEU is 0..1, sacrebleu's already 0..100
            scale = 1 if isinstance(metric, SacrebleuMetric) else 100
            self.log(f"{stage}/{name}", scale * metric.compute(), prog_bar=name == "bleu")
            metric.reset()
        if stage == "test" and self.trainer.is_global_zero:
            # a sacrebleu figure is only comparable with another of the same signature
            for name in ("sacrebleu_cased", "chrf"):
                print(f"test/{name}: {self.bleu_metrics[stage][name].signature}")

    # --- translation -------------------------------------------------------------------------

    @torch.inference_mode()
    def translate_ids(
        self,
        sources: list[list[int]],
        num_beams: int = 1,
        length_penalty: float = 1.0,
        max_new_tokens: int | None = None,
    ) -> list[list[int]]:
        """Target ids (without <bos>/<eos>) of each source (ids + <eos>, no padding).
        num_beams 1 is greedy search, a batch at a time; more is beam search, a source at a
        time. max_new_tokens: None is the model's `max_new_tokens`, else `block_size`."""
        if num_beams < 1:
            raise ValueError(f"num_beams must be >= 1, got {num_beams}")
        if any(len(s) == 0 for s in sources):
            raise ValueError("every source needs at least one token (its ids and <eos>)")
        max_new = self._max_new_tokens(max_new_tokens)
        out: list[list[int]] = []
        for start in range(0, len(sources), TRANSLATE_CHUNK):
            chunk = sources[start : start + TRANSLATE_CHUNK]
            out += self._translate_batch(self._right_pad(chunk), num_beams, length_penalty, max_new)
        return out

    def _translate_batch(
        self, source: torch.Tensor, num_beams: int, length_penalty: float, max_new_tokens: int
    ) -> list[list[int]]:
        bos, eos = self.hparams.bos_id, self.hparams.eos_id
        if num_beams == 1:
            prompts = [[bos]] * source.size(0)
            return generate(BoundSource(self, source), prompts, max_new_tokens, eos_id=eos)
        out = []
        for row in source:
            one = row[self.source_mask(row)][None]  # its own length: no padding at all
            best = beam_search(
                BoundSource(self, one),
                [bos],
                num_beams=num_beams,
                max_new_tokens=max_new_tokens,
                length_penalty=length_penalty,
                eos_id=eos,
            )[0]
            out.append(best.tokens)
        return out

    def _max_new_tokens(self, asked: int | None) -> int:
        if asked is not None:
            return asked
        return self.hparams.max_new_tokens or self.hparams.block_size

    def _right_pad(self, sequences: list[list[int]]) -> torch.Tensor:
        """Sequences as one [B, L] batch padded on the right with <pad>, on the model's device."""
        length = max(len(s) for s in sequences)
        batch = torch.full((len(sequences), length), self.hparams.pad_id, dtype=torch.long)
        for i, s in enumerate(sequences):
            batch[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        return batch.to(self.device)

    def teacher_forced_pair(
        self, source: list[int], target: list[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """A source and [<bos>] + target as batches of one, for cross_attention."""
        return self._right_pad([source]), self._right_pad([[self.hparams.bos_id, *target]])


class BoundSource:
    """A translator with one source batch, seen by the shared decoding strategies as a
    language model (it is `Decodable`): the prompts are target prefixes (one per source row,
    all of one length, usually [<bos>]) and the continuation is the translation. The source is
    encoded in start_decoding, so inside the translator's decoding mode (eval, no gradient)."""

    def __init__(self, model: Translator, source: torch.Tensor):
        self.model, self.source = model, source

    @property
    def device(self) -> torch.device:
        return self.model.device

    def decoding_mode(self) -> AbstractContextManager[None]:
        return self.model.decoding_mode()

    def start_decoding(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, DecodingState]:
        if not bool(attention_mask.all()):
            raise ValueError("every target prefix must have the same length")
        if input_ids.size(0) != self.source.size(0):
            raise ValueError(
                f"{input_ids.size(0)} target prefixes for {self.source.size(0)} sources"
            )
        memory = self.model.encode(self.source.to(input_ids.device))
        state = self.model.init_decoder_state(memory)
        for t in range(input_ids.size(1)):
            logits, state = self.model.decode_step(memory, state, input_ids[:, t])
        return logits, (memory, state)

    def continue_decoding(
        self, state: DecodingState, next_ids: torch.Tensor
    ) -> tuple[torch.Tensor, DecodingState]:
        memory, decoder_state = state
        logits, decoder_state = self.model.decode_step(memory, decoder_state, next_ids)
        return logits, (memory, decoder_state)

    def reorder_decoding_state(self, state: DecodingState, rows: torch.Tensor) -> DecodingState:
        return self.model.reorder_decoding(*state, rows)


def index_rows(tree, rows: torch.Tensor, dim: int = 0):
    """Keep (and repeat) the rows `rows` along `dim` of every tensor in a nest of tuples,
    lists and dicts; None stays None."""
    if tree is None:
        return None
    if isinstance(tree, torch.Tensor):
        return tree.index_select(dim, rows)
    if isinstance(tree, dict):
        return {k: index_rows(v, rows, dim) for k, v in tree.items()}
    return type(tree)(index_rows(v, rows, dim) for v in tree)
