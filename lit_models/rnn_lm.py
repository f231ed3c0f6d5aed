"""Recurrent language models: an Elman RNN, a GRU or an LSTM over token embeddings, as in
pytorch/examples' word_language_model (dropout as Zaremba et al. 2014; tied input and output
embeddings as Press & Wolf 2017 and Inan et al. 2017).

    e_t = Dropout(E[x_t])                                       token embedding
    h_t^k = Cell_k(h_t^{k-1}, h_{t-1}^k),  h_t^0 = e_t          k = 1..L, dropout between layers
    P(x_{t+1} | x_{<=t}) = softmax(W Dropout(h_t^L) + b)        W = E when tied

Truncated backpropagation through time (Williams & Peng 1990): the datamodule reads each
split as parallel streams in order (`data.init_args.batching: contiguous`, pytorch/examples' batchify),
`block_size` steps a batch. The state at the end of a batch starts the next one, detached, so
the gradient flows back over one batch (the BPTT length) while the state carries the whole
history. It starts from zeros at each epoch and at each validation or test pass. A checkpoint
holds the training state (every DDP rank's), so a resumed run goes on with it.

The optimiser is pytorch/examples': plain SGD at lr 20, divided by 4 whenever the validation
loss fails to improve (ReduceLROnPlateau, factor 0.25, patience 0); clipping is the trainer's
`gradient_clip_val` (0.25 in the configs). AdamW is there for the character-level configs.
"""

from __future__ import annotations

from typing import Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from core.checks import (
    require_fraction,
    require_non_negative,
    require_positive,
    require_positive_or_none,
    require_probability,
)
from core.constants import IGNORE_INDEX
from core.errors import UserError
from lit_models.language_model import LanguageModel, next_token_nll, scores_of_targets
from lit_models.modules.recurrent import (
    Cell,
    Impl,
    State,
    concat_rows,
    detach_state,
    make_recurrent,
    select_rows,
)
from lit_models.optim import adamw_decaying_matrices
from lit_models.text_model import EvalStage, TokenScores

Optimizer = Literal["sgd", "adamw"]
CARRIED_STATE = "carried_train_state"  # the checkpoint key of the training stream's state


class RNNLanguageModel(LanguageModel):
    def __init__(
        self,
        vocab_size: int,
        block_size: int | None = None,
        cell: Cell = "lstm",
        n_layer: int = 2,
        n_embd: int = 200,
        n_hidden: int = 200,
        dropout: float = 0.2,
        tie_weights: bool = True,
        impl: Impl = "torch",
        carry_state: bool = True,
        optimizer: Optimizer = "sgd",
        learning_rate: float = 20.0,
        weight_decay: float = 0.0,
        lr_factor: float = 0.25,
        lr_patience: int = 0,
    ):
        """
        Args:
            vocab_size: set by the datamodule (linked by the CLI).
            block_size: set by the datamodule's `block_size`: with contiguous batching, the
                BPTT length. The recurrence itself has no context limit; this only records it.
            cell: rnn_tanh | rnn_relu (Elman) | gru | lstm.
            impl: torch (nn.RNN / nn.GRU / nn.LSTM, fused and fast) or scratch (the
                hand-written cells of lit_models/modules/recurrent.py; same parameters, so a
                checkpoint loads into either).
            n_layer: recurrent layers (dropout between them).
            n_embd: width of the token embeddings.
            n_hidden: width of each recurrent layer.
            tie_weights: share the embedding with the output layer (needs n_hidden == n_embd).
            carry_state: truncated BPTT, the state carried from batch to batch; needs
                `data.init_args.batching: contiguous`. Off: every batch starts from zeros.
            optimizer: sgd (pytorch/examples) or adamw (weight decay on matrices only).
            lr_factor, lr_patience: the learning rate is multiplied by `lr_factor` after
                `lr_patience` + 1 validations in a row without a lower val/loss.
        """
        super().__init__()
        require_positive(
            "model", vocab_size=vocab_size, n_layer=n_layer, n_embd=n_embd, n_hidden=n_hidden
        )
        require_positive_or_none("model", block_size=block_size)
        require_probability("model", dropout=dropout)
        require_non_negative("model", learning_rate=learning_rate, weight_decay=weight_decay)
        # ReduceLROnPlateau's factor: below 1, or the rate never falls (0 would stop training).
        require_fraction("model", lr_factor=lr_factor)
        require_non_negative("model", lr_patience=lr_patience)
        if tie_weights and n_hidden != n_embd:
            raise UserError(
                f"model.init_args.tie_weights shares the embedding with the output layer, so n_hidden "
                f"must equal n_embd (got n_hidden={n_hidden}, n_embd={n_embd}): set "
                f"them equal or tie_weights=false."
            )
        self.save_hyperparameters()
        self.embedding = nn.Embedding(vocab_size, n_embd)
        self.drop = nn.Dropout(dropout)
        self.rnn = make_recurrent(cell, impl, n_embd, n_hidden, n_layer, dropout, batch_first=True)
        self.decoder = nn.Linear(n_hidden, vocab_size)
        # pytorch/examples' initialisation; the recurrent layers keep torch's own.
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        if tie_weights:
            self.decoder.weight = self.embedding.weight
        self.carried: dict[str, State] = {}  # stream name -> state after its last batch
        self._resumed_state: State | None = None  # the training state a checkpoint held

    def forward(
        self, input_ids: torch.Tensor, state: State | None = None
    ) -> tuple[torch.Tensor, State]:
        """Logits of the next token at every position [B, T, vocab_size] and the state after
        the last one; `state` (zeros when None) is the state before the first."""
        e = self.drop(self.embedding(input_ids))
        h, state = self.rnn(e, state)
        return self.decoder(self.drop(h)), state

    # --- truncated BPTT: one state per stream (train, val, test), carried between batches ---

    def token_nll(self, batch: dict[str, torch.Tensor], stream: str | None = None) -> torch.Tensor:
        """Per-token negative log-likelihood of the targets [B, T] (0 at padding). With a
        `stream`, the state continues from that stream's previous batch and is kept, detached,
        for its next; without one, it starts from zeros."""
        state = self.carried.get(stream) if stream and self.hparams.carry_state else None
        if state is not None and _rows(state) != batch["input_ids"].size(0):
            state = None  # a stream of another width: nothing to continue
        logits, state = self(batch["input_ids"], state)
        if stream:
            self.carried[stream] = detach_state(state)  # the gradient stops at this batch
        return next_token_nll(logits, batch["targets"])

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        nll = self.token_nll(batch, stream="train")
        return nll.sum() / (batch["targets"] != IGNORE_INDEX).sum()

    def score_tokens(self, batch: dict[str, torch.Tensor], stage: EvalStage) -> TokenScores:
        return scores_of_targets(self.token_nll(batch, stream=stage), batch)

    def on_train_epoch_start(self) -> None:
        self.carried.pop("train", None)

    def on_validation_epoch_start(self) -> None:
        self.carried.pop("val", None)

    def on_test_epoch_start(self) -> None:
        self.carried.pop("test", None)

    # --- exact resume: the training state is part of the checkpoint ---------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        state = self.carried.get("train")
        if state is None or not self.hparams.carry_state:
            return
        # Every rank reads its own columns, so every rank's state is kept: [world_size, ...].
        if self.trainer.world_size > 1:
            checkpoint[CARRIED_STATE] = self.all_gather(state)
        else:
            checkpoint[CARRIED_STATE] = _map_state(lambda t: t[None], state)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resumed_state = checkpoint.get(CARRIED_STATE)

    def on_train_start(self) -> None:
        # Here, not at loading: the model is on its device and the trainer knows the ranks.
        saved, self._resumed_state = self._resumed_state, None
        if saved is None:
            return
        if _as_tuple(saved)[0].size(0) != self.trainer.world_size:
            rank_zero_warn(
                "the checkpoint's recurrent state was saved on another number of devices (the "
                "streams were cut differently): training goes on from a zero state."
            )
            return
        rank = self.trainer.global_rank
        self.carried["train"] = _map_state(lambda t: t[rank].to(self.device), saved)

    def setup(self, stage: str) -> None:
        batching = getattr(self.trainer.datamodule, "batching", None)
        if self.hparams.carry_state and batching not in (None, "contiguous"):
            raise UserError(
                f"the recurrent model carries its state from batch to batch, which needs the "
                f"batches in order: set data.init_args.batching=contiguous (it is {batching!r}), "
                f"or model.init_args.carry_state=false to start every batch from zeros."
            )

    # --- decoding (lit_models.modules.decoding drives these) ---------------------------------

    def start_decoding(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        # Left padding must not reach the state: each row reads its own tokens from zeros.
        logits, states = [], []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            row_logits, state = self(ids[mask][None])
            logits.append(row_logits[:, -1])
            states.append(state)
        return torch.cat(logits), concat_rows(states)

    def continue_decoding(self, state: State, next_ids: torch.Tensor):
        logits, state = self(next_ids[:, None], state)
        return logits[:, -1], state

    def reorder_decoding_state(self, state: State, rows: torch.Tensor) -> State:
        return select_rows(state, rows)

    def configure_optimizers(self):
        hp = self.hparams
        if hp.optimizer == "sgd":
            optimizer = torch.optim.SGD(
                self.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay
            )
        else:
            optimizer = adamw_decaying_matrices(
                self, hp.learning_rate, hp.weight_decay, (0.9, 0.999)
            )
        # threshold 0: any validation loss not below the best so far counts as a stall, as in
        # pytorch/examples (`if val_loss < best_val_loss: ... else: lr /= 4`).
        schedule = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=hp.lr_factor, patience=hp.lr_patience, threshold=0.0
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": schedule, "monitor": "val/loss", "interval": "epoch"},
        }


def _rows(state: State) -> int:
    return _as_tuple(state)[0].size(1)


def _as_tuple(state: State) -> tuple[torch.Tensor, ...]:
    return state if isinstance(state, tuple) else (state,)


def _map_state(fn, state: State) -> State:
    """`fn` applied to the state's tensor, or to each of an LSTM's (h, c)."""
    return tuple(fn(t) for t in state) if isinstance(state, tuple) else fn(state)
