"""Recurrent encoder-decoder translators.

Seq2Seq (Sutskever et al. 2014, Cho et al. 2014; pytorch-seq2seq notebook 1): an encoder reads
the source, its final state is all the decoder knows of it.

    (h_S, c_S) = RNN_enc(E_src[x_1..x_S])       final state of every layer (LSTM or GRU)
    s_0 = (h_S, c_S)                             the encoder's final state starts the decoder
    s_t = RNN_dec(E_tgt[y_{t-1}], s_{t-1})
    P(y_t | y_<t, x) = softmax(W s_t + b)

AttentionSeq2Seq (Bahdanau et al. 2015; pytorch-seq2seq notebook 3): the decoder looks back at
every source position at every step.

    h_j = [h->_j ; h<-_j]                        bidirectional encoder annotations
    s_0 = tanh(W_b [h->_S ; h<-_1])              from the final forward and backward states
    a_t = softmax_j(v^T tanh(W s_{t-1} + U h_j))   additive attention, 0 at padding
    c_t = sum_j a_tj h_j                          the context
    s_t = RNN_dec([E_tgt[y_{t-1}] ; c_t], s_{t-1})
    P(y_t | y_<t, x) = softmax(W_o [s_t ; c_t ; E_tgt[y_{t-1}]] + b_o)

Both read the source as packed sequences, so padding never reaches a real position's state,
and train with teacher forcing: at each step the decoder reads the true previous token with
probability `teacher_forcing_ratio`, else its own most likely one (one draw per step for the
whole batch, as in the notebooks). Validation and test read the true tokens (the loss and
perplexity are the teacher-forced NLL). Adam, as in the notebooks; clipping is the trainer's.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from core.checks import (
    SettingError,
    require_positive,
    require_positive_or_none,
    require_probability,
)
from lit_models.modules import AdditiveAttention, make_recurrent
from lit_models.modules.recurrent import select_rows
from lit_models.translation import Translator, index_rows

Seq2SeqCell = Literal["lstm", "gru"]


class RecurrentTranslator(Translator):
    """The teacher-forcing loop and the optimiser of the recurrent translators."""

    def _check_recurrent_hparams(self) -> None:
        hp = self.hparams
        if not 0.0 <= hp.teacher_forcing_ratio <= 1.0:
            raise SettingError(
                f"model.init_args.teacher_forcing_ratio={hp.teacher_forcing_ratio} must be in [0, 1] "
                f"(1: always the true previous token)."
            )
        require_positive("model", n_embd=hp.n_embd)
        require_probability("model", dropout=hp.dropout)

    def forward(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        memory = self.encode(source)
        ratio = self.hparams.teacher_forcing_ratio if self.training else 1.0
        if ratio >= 1.0:
            return self.decode_teacher_forced(memory, target_in)
        state = self.init_decoder_state(memory)
        logits, token = [], target_in[:, 0]
        for t in range(target_in.size(1)):
            step_logits, state = self.decode_step(memory, state, token)
            logits.append(step_logits)
            if t + 1 < target_in.size(1):
                teacher = bool(torch.rand(()) < ratio)
                token = target_in[:, t + 1] if teacher else step_logits.argmax(dim=-1)
        return torch.stack(logits, dim=1)

    def decode_teacher_forced(self, memory, target_in: torch.Tensor) -> torch.Tensor:
        """Logits [B, T, V] reading the true previous tokens target_in [B, T]."""
        state = self.init_decoder_state(memory)
        logits = []
        for t in range(target_in.size(1)):
            step_logits, state = self.decode_step(memory, state, target_in[:, t])
            logits.append(step_logits)
        return torch.stack(logits, dim=1)

    def _packed(self, embedded: torch.Tensor, source: torch.Tensor):
        lengths = self.source_mask(source).sum(dim=1).cpu()
        return pack_padded_sequence(embedded, lengths, batch_first=True, enforce_sorted=False)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.hparams.learning_rate)


class Seq2Seq(RecurrentTranslator):
    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        cell: Seq2SeqCell = "lstm",
        n_embd: int = 256,
        n_hidden: int = 512,
        n_layer: int = 2,
        dropout: float = 0.5,
        teacher_forcing_ratio: float = 0.5,
        learning_rate: float = 1e-3,
        label_smoothing: float = 0.0,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        eval_num_beams: int = 1,
        test_num_beams: int = 5,
        length_penalty: float = 1.0,
        max_new_tokens: int | None = None,
    ):
        """
        Args:
            vocab_size, block_size: set by the datamodule (linked by the CLI); block_size is
                the longest translation decoded when max_new_tokens is None.
            cell: lstm (Sutskever et al.) or gru (Cho et al.), for encoder and decoder.
            n_embd: width of the source and of the target embeddings.
            n_hidden: width of each layer of the encoder and of the decoder.
            n_layer: layers of the encoder and of the decoder (dropout between layers).
            teacher_forcing_ratio: in training, the probability of reading the true previous
                token at a step (else the model's own guess); 1.0 always reads the true one.
            eval_num_beams, test_num_beams: 1 decodes greedily for val/bleu, test/bleu.
        """
        super().__init__()
        self.save_hyperparameters()
        self.check_translation_hparams()
        self._check_recurrent_hparams()
        require_positive("model", n_hidden=n_hidden, n_layer=n_layer)
        self.source_embedding = nn.Embedding(vocab_size, n_embd)
        self.target_embedding = nn.Embedding(vocab_size, n_embd)
        self.encoder = make_recurrent(
            cell, "torch", n_embd, n_hidden, n_layer, dropout, batch_first=True
        )
        self.decoder = make_recurrent(
            cell, "torch", n_embd, n_hidden, n_layer, dropout, batch_first=True
        )
        self.out = nn.Linear(n_hidden, vocab_size)
        self.drop = nn.Dropout(dropout)
        for p in self.parameters():  # Sutskever et al.: uniform in [-0.08, 0.08]
            nn.init.uniform_(p, -0.08, 0.08)

    def encode(self, source: torch.Tensor):
        """The encoder's final state, h [L, B, H] (or (h, c) for the LSTM)."""
        embedded = self.drop(self.source_embedding(source))
        _, state = self.encoder(self._packed(embedded, source))
        return state

    def init_decoder_state(self, memory):
        return memory

    def decode_step(self, memory, state, ids: torch.Tensor):
        embedded = self.drop(self.target_embedding(ids[:, None]))
        output, state = self.decoder(embedded, state)
        return self.out(output[:, 0]), state

    def decode_teacher_forced(self, memory, target_in: torch.Tensor) -> torch.Tensor:
        # Nothing depends on the source but the first state: one fused call for all steps.
        output, _ = self.decoder(self.drop(self.target_embedding(target_in)), memory)
        return self.out(output)

    def reorder_decoding(self, memory, state, rows: torch.Tensor):
        return select_rows(memory, rows), select_rows(state, rows)


class AttentionSeq2Seq(RecurrentTranslator):
    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        cell: Seq2SeqCell = "gru",
        n_embd: int = 256,
        encoder_n_hidden: int = 512,
        decoder_n_hidden: int = 512,
        attention_n_hidden: int | None = None,
        dropout: float = 0.5,
        teacher_forcing_ratio: float = 0.5,
        learning_rate: float = 1e-3,
        label_smoothing: float = 0.0,
        pad_id: int = 0,
        bos_id: int = 1,
        eos_id: int = 2,
        eval_num_beams: int = 1,
        test_num_beams: int = 5,
        length_penalty: float = 1.0,
        max_new_tokens: int | None = None,
    ):
        """
        Args:
            vocab_size, block_size: set by the datamodule (linked by the CLI).
            cell: gru (Bahdanau et al., the notebook) or lstm, for encoder and decoder.
            n_embd: width of the source and of the target embeddings.
            encoder_n_hidden: units of each direction of the encoder (annotations are
                twice as wide).
            decoder_n_hidden: units of the decoder.
            attention_n_hidden: width of the attention's hidden layer (W s + U h); None:
                decoder_n_hidden, as in the notebook.
            teacher_forcing_ratio: as in Seq2Seq.
        """
        super().__init__()
        self.save_hyperparameters()
        self.check_translation_hparams()
        self._check_recurrent_hparams()
        require_positive(
            "model", encoder_n_hidden=encoder_n_hidden, decoder_n_hidden=decoder_n_hidden
        )
        require_positive_or_none("model", attention_n_hidden=attention_n_hidden)
        annotation_size = 2 * encoder_n_hidden
        self.source_embedding = nn.Embedding(vocab_size, n_embd)
        self.target_embedding = nn.Embedding(vocab_size, n_embd)
        rnn, rnn_cell = (nn.LSTM, nn.LSTMCell) if cell == "lstm" else (nn.GRU, nn.GRUCell)
        self.encoder = rnn(n_embd, encoder_n_hidden, batch_first=True, bidirectional=True)
        self.bridge = nn.Linear(annotation_size, decoder_n_hidden)  # s_0 from h->_S, h<-_1
        self.bridge_cell = nn.Linear(annotation_size, decoder_n_hidden) if cell == "lstm" else None
        self.attention = AdditiveAttention(
            decoder_n_hidden, annotation_size, attention_n_hidden or decoder_n_hidden
        )
        self.decoder = rnn_cell(n_embd + annotation_size, decoder_n_hidden)
        self.out = nn.Linear(decoder_n_hidden + annotation_size + n_embd, vocab_size)
        self.drop = nn.Dropout(dropout)
        for name, p in self.named_parameters():  # the notebook's: N(0, 0.01), biases 0
            if "weight" in name:
                nn.init.normal_(p, mean=0.0, std=0.01)
            else:
                nn.init.zeros_(p)

    def encode(self, source: torch.Tensor) -> dict:
        """The annotations h [B, S, 2H], their attention keys U h, the source mask and s_0."""
        embedded = self.drop(self.source_embedding(source))
        packed, final = self.encoder(self._packed(embedded, source))
        annotations, _ = pad_packed_sequence(packed, batch_first=True, total_length=source.size(1))
        lstm = self.hparams.cell == "lstm"
        h = final[0] if lstm else final  # [2, B, H]: forward after x_S, backward after x_1
        start = torch.tanh(self.bridge(torch.cat([h[0], h[1]], dim=-1)))
        if lstm:
            c = final[1]
            start = (start, torch.tanh(self.bridge_cell(torch.cat([c[0], c[1]], dim=-1))))
        return {
            "annotations": annotations,
            "keys": self.attention.project_keys(annotations),
            "mask": self.source_mask(source),
            "start": start,
        }

    def init_decoder_state(self, memory: dict):
        return memory["start"]

    def decode_step(self, memory: dict, state, ids: torch.Tensor):
        logits, state, _ = self._attend_and_step(memory, state, ids)
        return logits, state

    def _attend_and_step(self, memory: dict, state, ids: torch.Tensor):
        """One decoder step: logits [B, V], the new state, and the attention weights [B, S]."""
        embedded = self.drop(self.target_embedding(ids))
        query = state[0] if isinstance(state, tuple) else state  # s_{t-1}
        context, weights = self.attention(
            query, memory["annotations"], memory["mask"], memory["keys"]
        )
        state = self.decoder(torch.cat([embedded, context], dim=-1), state)
        s = state[0] if isinstance(state, tuple) else state
        return self.out(torch.cat([s, context, embedded], dim=-1)), state, weights

    def reorder_decoding(self, memory: dict, state, rows: torch.Tensor):
        return index_rows(memory, rows), index_rows(state, rows)

    def attention_weights(self, source: torch.Tensor, target_in: torch.Tensor) -> torch.Tensor:
        """Teacher-forced attention weights [B, T, S]: row t is where the decoder looked when
        predicting the token after target_in[:, t]."""
        memory = self.encode(source)
        state = self.init_decoder_state(memory)
        weights = []
        for t in range(target_in.size(1)):
            _, state, step_weights = self._attend_and_step(memory, state, target_in[:, t])
            weights.append(step_weights)
        return torch.stack(weights, dim=1)

    def cross_attention(self, source: list[int], target: list[int]) -> torch.Tensor:
        with self.decoding_mode():
            source_ids, target_ids = self.teacher_forced_pair(source, target)
            return self.attention_weights(source_ids, target_ids[:, :-1])[0]
