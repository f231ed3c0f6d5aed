"""Read what the model writes while it trains: every validation, continue a few fixed prompts
with each decoding strategy, print them and log them to W&B as a table."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from core.errors import UserError
from lit_models.modules.decoding import NonFiniteProbabilities, Strategy, generate_text

COLUMNS = ["step", "prompt", "strategy", "text"]


class TextSamples(L.Callback):
    def __init__(
        self,
        prompts: list[str] | None = None,
        strategies: list[Strategy] | None = None,
        max_new_tokens: int = 100,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = 0.95,
        num_beams: int = 4,
        seed: int = 1337,
    ):
        """
        Args:
            prompts: texts to continue (default: one newline).
            strategies: any of greedy, sample, beam (default: greedy and sample).
            temperature, top_k, top_p, seed: for `sample`; num_beams: for `beam`.
        """
        self.prompts = prompts or ["\n"]
        self.strategies = strategies or ["greedy", "sample"]
        self.max_new_tokens = max_new_tokens
        self.sampling = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed}
        self.num_beams = num_beams
        self.rows: list[list] = []
        self.sharded = False  # every sample so far: W&B shows the table as it grows

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # A prompt the vocabulary cannot express should stop the run now, not at the first
        # validation hours later.
        for prompt in self.prompts:
            try:
                trainer.datamodule.encode(prompt)
            except ValueError as err:
                raise UserError(f"TextSamples prompt {prompt!r}: {err}") from None

        # Under FSDP every rank must run each forward together (each holds a shard of every
        # block), and only rank 0 decodes: it would wait for the others for ever.
        self.sharded = isinstance(trainer.strategy, FSDPStrategy)
        if self.sharded:
            rank_zero_warn(
                "TextSamples is off under FSDP (decoding on rank 0 alone would hang the other "
                "ranks); sample from a checkpoint instead: `python main.py generate --ckpt_path ...`."
            )

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.sharded:
            return
        codec = trainer.datamodule  # encode / decode / eos_id of the run's tokenizer
        new_rows = []
        for strategy in self.strategies:
            options = self.sampling if strategy == "sample" else {}
            try:
                texts = generate_text(
                    pl_module,
                    self.prompts,
                    codec,
                    self.max_new_tokens,
                    strategy,
                    num_beams=self.num_beams,
                    **options,
                )
            except NonFiniteProbabilities as err:  # StopOnNonFinite ends the run after this
                rank_zero_warn(f"TextSamples skipped at step {trainer.global_step}: {err}")
                return
            new_rows += [
                [trainer.global_step, p, strategy, t]
                for p, t in zip(self.prompts, texts, strict=True)
            ]
        for step, prompt, strategy, text in new_rows:
            rank_zero_info(f"[step {step}, {strategy}] {prompt}{text}")
        self.rows += new_rows
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_text(
                    key="samples", columns=COLUMNS, data=self.rows, step=trainer.global_step
                )
