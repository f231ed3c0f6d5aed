"""Word2vec (Mikolov et al. 2013a, "Efficient Estimation of Word Representations in Vector
Space"; 2013b, "Distributed Representations of Words and Phrases and their Compositionality").

Two tables of vectors: the input vectors v_w (the word vectors one keeps) and output vectors
u. Two architectures:

- skip-gram: each centre word's v predicts each word of its context window;
- CBOW: the mean of the context words' v predicts the centre word.

Two ways to make the prediction cheap instead of a softmax over the whole vocabulary:

- negative sampling: log sigma(u_o . h) + sum over k noise words n of log sigma(-u_n . h),
  the noise drawn (by the datamodule) from the unigram distribution to the power 3/4;
- hierarchical softmax: the words are the leaves of a Huffman tree built from their counts;
  p(w | h) is the product, over the inner nodes n on w's path, of sigma(+-u_n . h), the sign
  given by the turn taken at n. The inner nodes carry the output vectors (V - 1 of them).

As in word2vec.c the input vectors start uniform in [-0.5/d, 0.5/d] and the output vectors at
zero, and plain SGD runs with a learning rate decaying linearly to `min_lr_ratio` of its
start. The SGD update is word2vec.c's, written out for a batch (no autograd, which would
build sparse gradients and sort them): every example gets the update it would get alone.
The alternative, SparseAdam, differentiates the mean loss through sparse embeddings. The
loss is logged as the mean per example.
"""

from __future__ import annotations

from typing import Literal

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from core.checks import require_in_range, require_non_negative, require_positive
from core.errors import UserError
from lit_models.modules.huffman import padded_paths

Architecture = Literal["skipgram", "cbow"]
Optimizer = Literal["sgd", "sparse_adam"]


class Word2Vec(L.LightningModule):
    def __init__(
        self,
        vocab_size: int,
        word_counts: list[int] | None = None,
        n_embd: int = 100,
        architecture: Architecture = "skipgram",
        negative: int = 5,
        optimizer: Optimizer = "sgd",
        learning_rate: float = 0.025,
        min_lr_ratio: float = 1e-4,
    ):
        """
        Args:
            vocab_size, word_counts, architecture, negative: from the datamodule (CLI links).
                `negative` > 0 trains with negative sampling (the batches carry the noise
                words); 0 with hierarchical softmax over a Huffman tree of `word_counts`.
            n_embd: the size d of the word vectors.
            optimizer: sgd (word2vec's, loss summed over the batch; learning_rate 0.025 for
                skip-gram, 0.05 for CBOW as in word2vec.c) or sparse_adam (loss averaged over
                the batch; learning_rate about 1e-3).
            min_lr_ratio: the learning rate decays linearly to this fraction of its start by
                the last step (word2vec.c: 1e-4).
        """
        super().__init__()
        if vocab_size < 1:
            raise UserError("word2vec needs a vocabulary of at least one word.")
        require_positive("model", n_embd=n_embd)
        require_non_negative("model", negative=negative, learning_rate=learning_rate)
        require_in_range("model", 0, 1, "[]", min_lr_ratio=min_lr_ratio)  # of the first rate
        # The counts travel in the state dict (a buffer), not in the hyperparameters: a list of
        # tens of thousands of numbers there would be re-validated by the CLI on every load.
        self.save_hyperparameters(ignore=["word_counts"])
        # Updates are made in training_step: word2vec's own SGD rule, or SparseAdam.
        self.automatic_optimization = False
        self.architecture, self.negative = architecture, negative
        d = n_embd
        self.input_vectors = nn.Embedding(vocab_size, d, sparse=True)
        nn.init.uniform_(self.input_vectors.weight, -0.5 / d, 0.5 / d)
        if negative > 0:
            self.output_vectors = nn.Embedding(vocab_size, d, sparse=True)
        else:  # hierarchical softmax: one output vector per inner node of the Huffman tree
            if vocab_size < 2:
                raise UserError("hierarchical softmax needs at least two words in the vocabulary.")
            if word_counts is not None and len(word_counts) != vocab_size:
                raise UserError(
                    f"{len(word_counts)} word counts for a vocabulary of {vocab_size} words."
                )
            # Zeros when rebuilt from a checkpoint: load_state_dict fills in the real counts.
            counts = torch.zeros(vocab_size, dtype=torch.long)
            if word_counts is not None:
                counts = torch.as_tensor(word_counts, dtype=torch.long)
            self.register_buffer("word_counts", counts)
            self._tree: tuple[torch.Tensor, ...] | None = None
            self.register_load_state_dict_post_hook(lambda module, keys: module._forget_tree())
            self.output_vectors = nn.Embedding(vocab_size - 1, d, sparse=True)
        nn.init.zeros_(self.output_vectors.weight)

    def _forget_tree(self) -> None:
        self._tree = None

    @property
    def tree(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The Huffman tree of the word counts: codes, inner-node ids and mask, each (V, depth)."""
        device = self.word_counts.device
        if self._tree is None or self._tree[0].device != device:
            if not bool((self.word_counts > 0).all()):
                raise UserError(
                    "hierarchical softmax needs the word counts (link data.init_args.word_counts to the model)."
                )
            self._tree = tuple(t.to(device) for t in padded_paths(self.word_counts.tolist()))
        return self._tree

    # --- the hidden vector h that predicts a word -----------------------------------------
    def hidden(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """h for each example and the word it predicts: skip-gram, the centre's vector predicts
        the context word; CBOW, the mean of the context vectors predicts the centre."""
        if self.architecture == "skipgram":
            return self.input_vectors(batch["center"]), batch["context"]
        mask = batch["context_mask"].unsqueeze(-1).to(self.input_vectors.weight.dtype)
        summed = (self.input_vectors(batch["context"]) * mask).sum(1)
        return summed / mask.sum(1).clamp(min=1), batch["center"]

    # --- the two objectives ---------------------------------------------------------------
    def output_targets(self, batch, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Both objectives are sums of binary logistic terms sigma(+-u_n . h) over a few output
        vectors n: which ones (B, M), the label of each (1: sigma(x), 0: sigma(-x)) and a mask.

        Negative sampling: the target word (label 1) and the k noise words (label 0).
        Hierarchical softmax: the inner nodes on the target's Huffman path, label 1 - code
        (code 0 takes sigma(x), code 1 sigma(-x), word2vec.c's convention)."""
        if self.negative > 0:
            if "negatives" not in batch:
                raise UserError(
                    "negative sampling needs noise words in the batches: set data.init_args.negative > 0."
                )
            rows = torch.cat([target.unsqueeze(1), batch["negatives"]], dim=1)
            labels = torch.zeros(rows.shape, dtype=self.dtype_of_vectors, device=rows.device)
            labels[:, 0] = 1.0
            return rows, labels, torch.ones_like(labels)
        return (
            self.tree[1][target],
            1.0 - self.tree[0][target],
            self.tree[2][target].to(self.dtype_of_vectors),
        )

    @property
    def dtype_of_vectors(self) -> torch.dtype:
        return self.input_vectors.weight.dtype

    def logits(self, h: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """u_n . h for each example's output rows: (B, M)."""
        return torch.bmm(self.output_vectors(rows), h.unsqueeze(-1)).squeeze(-1)

    def loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Each example's negative log-likelihood: -log sigma(u_o . h) - sum_k log sigma(-u_k . h)
        (negative sampling) or -log p(target | h) (hierarchical softmax)."""
        h, target = self.hidden(batch)
        rows, labels, mask = self.output_targets(batch, target)
        x = self.logits(h, rows)
        return (F.binary_cross_entropy_with_logits(x, labels, reduction="none") * mask).sum(-1)

    def hierarchical_softmax_log_prob(self, h: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """log p(target | h) under hierarchical softmax: the product of the turns' probabilities."""
        codes, points, path_mask = self.tree
        rows, labels, mask = points[target], 1.0 - codes[target], path_mask[target]
        x = self.logits(h, rows)
        return -(F.binary_cross_entropy_with_logits(x, labels, reduction="none") * mask).sum(-1)

    @torch.no_grad()
    def sgd_update(self, batch: dict[str, torch.Tensor], lr: float) -> torch.Tensor:
        """word2vec.c's update, for a whole batch at once, without autograd: for each output
        row n, g = lr * (label - sigma(u_n . h)); u_n += g h and the input side gets sum_n g u_n
        (skip-gram: the centre's vector; CBOW: every context word's vector, undivided, as
        word2vec.c does). Rows repeated in a batch add up their updates (index_add_)."""
        W, U = self.input_vectors.weight, self.output_vectors.weight
        h, target = self.hidden(batch)
        rows, labels, mask = self.output_targets(batch, target)
        flat_rows = rows.reshape(-1)
        u = U.index_select(0, flat_rows).view(*rows.shape, -1)  # (B, M, d); faster than U[rows]
        x = (u * h.unsqueeze(1)).sum(-1)
        losses = (F.binary_cross_entropy_with_logits(x, labels, reduction="none") * mask).sum(-1)
        g = (labels - torch.sigmoid(x)) * mask * lr  # (B, M)
        grad_h = torch.bmm(g.unsqueeze(1), u).squeeze(1)  # (B, d), from the old u as in word2vec.c
        U.index_add_(0, flat_rows, (g.unsqueeze(-1) * h.unsqueeze(1)).view(-1, h.shape[-1]))
        if self.architecture == "skipgram":
            W.index_add_(0, batch["center"], grad_h)
        else:
            context_mask = batch["context_mask"]
            spread = grad_h.unsqueeze(1).expand(-1, context_mask.shape[1], -1)
            W.index_add_(0, batch["context"][context_mask], spread[context_mask])
        return losses

    def training_step(self, batch, batch_idx):
        optimizer = self.optimizers()
        scheduler = self.lr_schedulers()
        if self.hparams.optimizer == "sgd":
            losses = self.sgd_update(batch, optimizer.param_groups[0]["lr"])
            optimizer.step()  # no gradients, so no change: it counts the step for Lightning
        else:
            losses = self.loss(batch)
            optimizer.zero_grad()
            self.manual_backward(losses.mean())
            optimizer.step()
        scheduler.step()
        self.log("train/loss", losses.mean(), prog_bar=True, batch_size=len(losses))

    def validation_step(self, batch, batch_idx):
        losses = self.loss(batch)
        self.log("val/loss", losses.mean(), prog_bar=True, batch_size=len(losses))

    def test_step(self, batch, batch_idx):
        losses = self.loss(batch)
        self.log("test/loss", losses.mean(), batch_size=len(losses))

    # --- the word vectors -----------------------------------------------------------------
    @property
    def vectors(self) -> torch.Tensor:
        """The word vectors (the input vectors), one row per word id."""
        return self.input_vectors.weight.detach()

    def nearest(self, ids: torch.Tensor, k: int = 10) -> tuple[torch.Tensor, torch.Tensor]:
        """The k nearest words by cosine similarity to each of `ids` (itself excluded):
        (similarities, word ids), each (len(ids), k)."""
        unit = F.normalize(self.vectors.float(), dim=-1)
        sims = unit[ids] @ unit.T
        sims[torch.arange(len(ids)), ids] = -float("inf")
        return sims.topk(min(k, len(unit) - 1), dim=-1)

    # --- optimisation ---------------------------------------------------------------------
    def configure_optimizers(self):
        lr = self.hparams.learning_rate
        if self.hparams.optimizer == "sgd":
            # Holds the learning rate the schedule sets; sgd_update applies it.
            optimizer = torch.optim.SGD(self.parameters(), lr=lr)
        else:
            optimizer = torch.optim.SparseAdam(list(self.parameters()), lr=lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        floor = self.hparams.min_lr_ratio

        def linear_decay(step: int) -> float:
            return max(floor, 1.0 - step / total)

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_decay)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }
