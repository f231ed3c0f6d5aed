"""LoRA: low-rank adaptation of a pretrained GPT (Hu et al. 2021), through HF `peft`.

Each adapted projection W (d_out x d_in) of the frozen base keeps W and learns a low-rank
update, scaled by alpha / r:

    h = W x + (alpha / r) * B A x,    A: r x d_in (random),  B: d_out x r (zeros)

B starts at zero, so the adapted model starts as the base model exactly. Only A and B train:
a few percent of the parameters, and the optimizer holds state for those only.

The base is a suite GPT checkpoint (a .ckpt of `fit`) or a Hugging Face model (a folder or a
hub id, GPT-2 or LLaMA/Qwen2 family, read as `GPT(init_from=...)` reads it). The targets are
the GPT's projections by name (in_proj, out_proj, fc, proj) or by role (q, k, v, o, gate, up,
down; lit_models/lora_targets.py says how roles among stacked rows are adapted).

QLoRA (Dettmers et al. 2023): with `quantize: 4bit` the frozen base's linear layers are
stored in 4-bit NormalFloat with double quantization through bitsandbytes (CUDA only), and
computed in bf16, while A and B stay in full precision.

Checkpoints of a LoRA run hold the adapter (A and B) and a reference to the base (as given,
its path, the hub revision when known, and a SHA-256: of the .ckpt file, or of a Hugging
Face model's settings and tensors); loading one rebuilds the base and refuses a base that
has changed since. `merged_gpt()` folds B A into W and returns a plain GPT.
"""

from __future__ import annotations

import copy
import hashlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from core.checks import require_positive, require_positive_number, require_probability
from core.errors import UserError
from core.hub import tokenizer_name_in
from lit_models import hf_convert
from lit_models.gpt import GPT, DecodingWindow
from lit_models.language_model import LanguageModel, check_data_tokenizer
from lit_models.lora_targets import Target, check_targets, peft_targets, restack, split_stacked
from lit_models.optim import adamw_warmup_cosine, check_warmup_cosine

Quantize = Literal["none", "4bit"]
ADAPTER_MARK = "lora_"  # in the name of every adapter tensor (peft's lora_A, lora_B)
GPT_CLASS_PATHS = ("lit_models.GPT", "lit_models.gpt.GPT")


class LoRAGPT(LanguageModel):
    def __init__(
        self,
        base: str | None = None,
        rank: int = 8,
        alpha: float = 16.0,
        dropout: float = 0.05,
        target_modules: list[Target] | None = None,
        quantize: Quantize = "none",
        learning_rate: float = 1e-3,
        min_learning_rate: float = 1e-4,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.99),
        warmup_steps: int = 20,
        lr_decay_steps: int | None = None,
        vocab_size: int | None = None,
        block_size: int | None = None,
        base_sha256: str | None = None,
    ):
        """
        Args:
            base: the model to adapt: a GPT checkpoint written by `python main.py fit` (its
                .ckpt, e.g. the run folder's checkpoints/last.ckpt of
                configs/gpt_chat_pretrain.yaml), or a Hugging Face model, a folder or a hub
                id (GPT-2, LLaMA or Qwen2 family, as model.init_args.init_from of lit_models.GPT).
            rank, alpha, dropout: LoRA's r, scaling numerator (update scaled by alpha / r)
                and the dropout on the adapter's input.
            target_modules: what to adapt: projections by name, in_proj, out_proj
                (attention), fc and proj (feed-forward), or by role, q, k, v, o, gate, up,
                down (one adapter each); default: in_proj and out_proj.
            quantize: `4bit` keeps the frozen base in 4-bit NF4 (QLoRA; CUDA + bitsandbytes).
            vocab_size, block_size: set by the datamodule (linked by the CLI); checked against
                the base, which must have been trained on the same token ids (and the data's
                `tokenizer_name`, when it has one, against a .ckpt base's record at setup).
            base_sha256: set automatically (the base's hash when the run started); a
                checkpoint of this run then loads only with that same base.
        """
        super().__init__()
        targets = list(dict.fromkeys(target_modules or ["in_proj", "out_proj"]))
        # The settings first: a bad one is named before the base is even read.
        require_positive("model", rank=rank)
        require_positive_number("model", alpha=alpha)
        require_probability("model", dropout=dropout)
        check_warmup_cosine(
            learning_rate, min_learning_rate, weight_decay, betas, warmup_steps, lr_decay_steps
        )
        if quantize == "4bit":
            require_qlora()
        adapted = read_base(base, vocab_size, block_size)
        if base_sha256 and base_sha256 != adapted.sha256:
            raise UserError(
                f"model.init_args.base {base} has changed since the adapter was trained (sha256 "
                f"{adapted.sha256[:12]}, expected {base_sha256[:12]}). Use the base it was "
                "trained on."
            )
        self.save_hyperparameters()
        self.hparams.target_modules = targets
        self.hparams.base_sha256 = adapted.sha256  # saved with the run: a later load checks it
        self.base_reference = adapted.reference
        self.base_tokenizer = adapted.tokenizer
        gpt = adapted.gpt
        self.block_size = gpt.block_size
        check_targets(targets, gpt)
        split_stacked(gpt, targets)
        if quantize == "4bit":
            quantize_linear_layers_4bit(gpt)
        from peft import LoraConfig, get_peft_model  # imported here: ~2 s that only LoRA runs pay

        config = LoraConfig(
            r=rank,
            lora_alpha=alpha,
            lora_dropout=dropout,
            target_modules=peft_targets(targets, gpt),
            bias="none",
        )
        self.model = get_peft_model(gpt, config)  # freezes the base, adds A and B

    # --- what the model computes -------------------------------------------------------------
    @property
    def gpt(self) -> GPT:
        """The base GPT with the adapters inside its projections."""
        return self.model.base_model.model

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids)

    # decoding (lit_models.modules.decoding) goes through the adapted GPT; decoding_mode is
    # TextModel's, on this module, which holds the GPT
    def start_decoding(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, DecodingWindow]:
        return self.gpt.start_decoding(input_ids, attention_mask)

    def continue_decoding(
        self, state: DecodingWindow, next_ids: torch.Tensor
    ) -> tuple[torch.Tensor, DecodingWindow]:
        return self.gpt.continue_decoding(state, next_ids)

    def reorder_decoding_state(self, state: DecodingWindow, rows: torch.Tensor) -> DecodingWindow:
        return self.gpt.reorder_decoding_state(state, rows)

    def parameter_counts(self) -> tuple[int, int]:
        """(trainable, total) parameters; the tied embedding counts once."""
        return self.model.get_nb_trainable_parameters()

    def adapter_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if ADAPTER_MARK in k}

    def merged_gpt(self) -> GPT:
        """A plain GPT with each adapter folded into its weight (W + alpha/r B A); this model
        is left as it is."""
        if self.hparams.quantize != "none":
            raise UserError(
                "merge a QLoRA adapter from an unquantized copy: `merge_lora` rebuilds one."
            )
        merged = copy.deepcopy(self.model).merge_and_unload()
        restack(merged)  # roles' parts stacked again: the GPT's own layout
        merged.eval()
        return merged

    # --- training ---------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        # The base's run recorded its datamodule's tokenizer (ChatDataModule.state_dict), a
        # Hugging Face base has its own beside its weights.
        fix = (
            "Tokenize the data with the model's own tokenizer (data.init_args.tokenizer: pretrained, "
            "data.init_args.pretrained_tokenizer: the base's folder)."
            if self.base_tokenizer and self.base_tokenizer.startswith("pretrained:")
            else "Use the data (and tokenizer) the base was trained on."
        )
        check_data_tokenizer(
            self, self.base_tokenizer, f"model.init_args.base {self.hparams.base}", fix
        )

    def on_fit_start(self) -> None:
        trainable, total = self.parameter_counts()
        print(
            f"LoRA r={self.hparams.rank} on {', '.join(self.hparams.target_modules)}: "
            f"{trainable:,} trainable parameters of {total:,} ({100 * trainable / total:.2f}%)"
        )
        for logger in self.loggers:
            logger.log_hyperparams({"params/trainable": trainable, "params/total": total})

    def configure_optimizers(self):
        return adamw_warmup_cosine(self)

    # --- checkpoints: the adapter and a reference to the base --------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {
            k: v for k, v in checkpoint["state_dict"].items() if ADAPTER_MARK in k
        }
        checkpoint["lora_base"] = {**self.base_reference, "sha256": self.hparams.base_sha256}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        reference = checkpoint.get("lora_base", {})
        if reference.get("sha256") not in (None, self.hparams.base_sha256):
            raise UserError(
                f"this adapter was trained on {reference.get('path')} (sha256 "
                f"{reference['sha256'][:12]}), but model.init_args.base now is "
                f"{self.hparams.base} (sha256 {self.hparams.base_sha256[:12]}): "
                f"the base has changed. Use the base it was trained on."
            )

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """An adapter-only state dict (a LoRA checkpoint) completes itself with the base
        weights already in place, so that Lightning's strict loading works unchanged."""
        if state_dict and all(ADAPTER_MARK in k for k in state_dict):
            state_dict = {**self.state_dict(), **state_dict}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


# --- the base: a suite checkpoint or a Hugging Face model ----------------------------------


@dataclass
class Base:
    gpt: GPT  # built, with its weights
    sha256: str  # the .ckpt file's, or the Hugging Face model's settings and tensors
    reference: dict  # how an adapter checkpoint names it: as given, its path, hub revision
    tokenizer: str | None  # the tokenizer a .ckpt base's data recorded, or an HF base's own


def read_base(base: str | None, vocab_size: int | None, block_size: int | None) -> Base:
    """The GPT named by model.init_args.base, checked against the data; a clear UserError otherwise."""
    if not base:
        raise UserError(f"model.init_args.base is not set. {PRETRAIN_FIRST}.")
    path = Path(base).expanduser()
    if path.is_file() or path.suffix == ".ckpt":
        checkpoint = read_base_checkpoint(base)
        check_base_fits(checkpoint, vocab_size, block_size)
        reference = {"base": base, "path": str(path.resolve()), "revision": None}
        gpt = build_gpt(checkpoint["hparams"], checkpoint["state_dict"])
        return Base(gpt, checkpoint["sha256"], reference, checkpoint["tokenizer"])
    pretrained = hf_convert.read_pretrained(base, key="model.init_args.base")
    # dropout 0: the imported models train without it (LLaMA's attention_dropout is 0)
    hparams = {**hf_convert.fit_to_data(pretrained, vocab_size, block_size), "dropout": 0.0}
    gpt = build_gpt(hparams, state_dict=None)
    hf_convert.load_into(gpt, pretrained)
    gpt.hf_source = pretrained.folder  # export_hf (merge_lora --format hf) copies its tokenizer
    reference = {
        "base": base,
        "path": pretrained.folder,
        "revision": hf_convert.hub_revision(pretrained.folder),
    }
    tokenizer = tokenizer_name_in(Path(pretrained.folder))
    return Base(gpt, hf_convert.weights_sha256(pretrained), reference, tokenizer)


def build_gpt(hparams: dict, state_dict: dict | None) -> GPT:
    """The base GPT with its weights. Its hyperparameters are set again after construction:
    Lightning's save_hyperparameters reads the arguments of the enclosing __init__ frames (and,
    under the CLI, the hyperparameters it is instantiating), so a GPT built while LoRAGPT is
    being built would record LoRAGPT's arguments as its own (and then miss e.g. kv_cache)."""
    gpt = GPT(**hparams)
    defaults = {
        name: arg.default
        for name, arg in inspect.signature(GPT.__init__).parameters.items()
        if arg.default is not inspect.Parameter.empty
    }
    gpt.hparams.clear()
    gpt.hparams.update({**defaults, **hparams})  # decoding reads e.g. kv_cache
    if state_dict is not None:
        gpt.load_state_dict(state_dict)
    return gpt


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


PRETRAIN_FIRST = (
    "Give a Hugging Face model (--model.init_args.base HuggingFaceTB/SmolLM2-135M, or its "
    "folder), or pretrain a GPT first (python main.py fit --config "
    "configs/gpt_chat_pretrain.yaml) and give its checkpoint: --model.init_args.base "
    "seqmodels/<run-id>/checkpoints/last.ckpt"
)


def read_base_checkpoint(path: str) -> dict:
    """The GPT's hyperparameters and weights from a checkpoint of `fit`, with the file's hash
    and the tokenizer its datamodule recorded (if any); a clear UserError otherwise."""
    file = Path(path).expanduser()
    if not file.is_file():
        raise UserError(f"model.init_args.base {file}: no such file. {PRETRAIN_FIRST}.")
    try:
        ckpt = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated file, not a checkpoint at all, ...
        raise UserError(
            f"model.init_args.base {file}: not a readable checkpoint ({type(err).__name__})."
        ) from None
    hparams = dict(ckpt.get("hyper_parameters") or {}) if isinstance(ckpt, dict) else {}
    class_path = hparams.pop("_class_path", None)
    hparams.pop("_instantiator", None)
    if class_path not in GPT_CLASS_PATHS or "state_dict" not in ckpt:
        what = class_path or "no model class recorded"
        hint = " (an adapter: merge it with `merge_lora` first)" if "LoRA" in str(what) else ""
        raise UserError(
            f"model.init_args.base {file}: not a GPT checkpoint ({what}){hint}. Give a "
            f"checkpoint written by `python main.py fit` with lit_models.GPT, or a Hugging "
            f"Face model's folder."
        )
    # The CLI's record can hold keys that GPT takes no argument for (facts of the data that
    # other models receive through the CLI's links): keep GPT's own.
    accepted = inspect.signature(GPT.__init__).parameters
    hparams = {k: v for k, v in hparams.items() if k in accepted}
    # The datamodule's state (under its class name), not its arguments: the chat data's
    # `tokenizer` argument (byte, pretrained) names a kind, not the token ids.
    tokenizer = next(
        (
            v["tokenizer"]
            for k, v in ckpt.items()
            if isinstance(v, dict)
            and isinstance(v.get("tokenizer"), str)
            and not k.endswith("hyper_parameters")
        ),
        None,
    )
    return {
        "path": str(file),
        "hparams": hparams,
        "state_dict": ckpt["state_dict"],
        "sha256": file_sha256(file),
        "tokenizer": tokenizer,
    }


def check_base_fits(base: dict, vocab_size: int | None, block_size: int | None) -> None:
    """The data must speak the base's token ids and fit its context."""
    hp, where = base["hparams"], f"model.init_args.base {base['path']}"
    if vocab_size is not None and vocab_size != hp.get("vocab_size"):
        raise UserError(
            f"{where} has a vocabulary of {hp.get('vocab_size')} tokens, the data {vocab_size}: "
            f"the base must be pretrained with the data's tokenizer (see configs/gpt_chat_pretrain.yaml)."
        )
    if block_size is not None and block_size > hp.get("block_size", 0):
        raise UserError(
            f"{where} has a context of {hp.get('block_size')} tokens, shorter than "
            f"data.init_args.block_size={block_size}: lower data.init_args.block_size to {hp.get('block_size')} or less."
        )


# --- QLoRA ---------------------------------------------------------------------------------


def require_qlora() -> None:
    """4-bit base weights need a CUDA GPU and bitsandbytes; say so, and how to fix, up front."""
    if not torch.cuda.is_available():
        raise UserError(
            "model.init_args.quantize=4bit (QLoRA) needs a CUDA GPU: bitsandbytes' 4-bit kernels do not run "
            "on this machine. Set model.init_args.quantize=none for plain LoRA, or run on a GPU."
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise UserError(
            'model.init_args.quantize=4bit (QLoRA) needs bitsandbytes: pip install -e ".[qlora]" '
            "(or pip install bitsandbytes), or set model.init_args.quantize=none."
        ) from None


def quantize_linear_layers_4bit(gpt: GPT) -> None:
    """Replace the transformer blocks' nn.Linear layers by bitsandbytes' 4-bit NF4 layers with
    double quantization (the blocks' scales quantized too: ~0.4 bit per weight saved), computed
    in bf16 (fp16 on GPUs without native bf16, such as the T4). The weights are quantized when
    moved to the GPU, done here. The embedding and the output layer tied to it stay in full
    precision."""
    import bitsandbytes as bnb

    native_bf16 = torch.cuda.is_bf16_supported(including_emulation=False)
    compute_dtype = torch.bfloat16 if native_bf16 else torch.float16
    for parent in list(gpt.blocks.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.Linear):
                continue
            layer = bnb.nn.Linear4bit(
                child.in_features,
                child.out_features,
                bias=child.bias is not None,
                compute_dtype=compute_dtype,
                compress_statistics=True,  # double quantization
                quant_type="nf4",
            )
            layer.weight = bnb.nn.Params4bit(
                child.weight.data, requires_grad=False, compress_statistics=True, quant_type="nf4"
            )
            if child.bias is not None:
                layer.bias = nn.Parameter(child.bias.data, requires_grad=False)
            setattr(parent, name, layer)
    gpt.cuda()
