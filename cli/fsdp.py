"""FSDP for the suite's Transformers: `--trainer.strategy=fsdp`, or this class in a config.

Fully Sharded Data Parallel keeps 1/N of the weights, gradients and optimizer moments on each
of N GPUs and gathers a layer's weights just before it runs. The unit it gathers is one
Transformer block (GPT's `TransformerBlock`, which the Hugging Face models imported into GPT
and LoRAGPT share, and the translator's `TransformerDecoderBlock`): one block's weights whole
at a time is the memory plan, and each block's gather overlaps the previous one's compute.

Checkpoints are full state dicts, gathered on rank 0 into one ordinary file: it loads without
FSDP, on any number of GPUs or on a CPU (`test`, `generate`, `export_hf`). Activation
checkpointing (off by default) recomputes each block's activations in the backward pass
instead of keeping them: about a third more compute for much less memory.
"""

from __future__ import annotations

from typing import Literal

from lightning.pytorch.strategies import FSDPStrategy

from lit_models.modules import TransformerBlock, TransformerDecoderBlock

# What each GPU keeps: FULL_SHARD 1/N of everything; SHARD_GRAD_OP whole weights between
# forward and backward (faster, more memory); HYBRID_SHARD full shards within a node and
# replicas across nodes (less traffic between machines); NO_SHARD is DDP.
Sharding = Literal["FULL_SHARD", "SHARD_GRAD_OP", "HYBRID_SHARD", "NO_SHARD"]

# The wrapping unit: one FSDP unit per block.
BLOCKS = {TransformerBlock, TransformerDecoderBlock}


class TransformerFSDP(FSDPStrategy):
    def __init__(
        self,
        activation_checkpointing: bool = False,
        sharding_strategy: Sharding = "FULL_SHARD",
        cpu_offload: bool = False,
        **kwargs,
    ):
        """
        Args:
            activation_checkpointing: recompute each block's activations in the backward
                pass instead of storing them (less memory, about 1/3 more compute).
            sharding_strategy: FULL_SHARD (1/N of weights, gradients and optimizer state
                per GPU), SHARD_GRAD_OP, HYBRID_SHARD (shard within a node, replicate
                across nodes) or NO_SHARD.
            cpu_offload: keep the sharded weights in CPU memory between uses (slow; for
                models that do not fit otherwise).
        """
        super().__init__(
            auto_wrap_policy=BLOCKS,
            activation_checkpointing_policy=BLOCKS if activation_checkpointing else None,
            sharding_strategy=sharding_strategy,
            state_dict_type="full",  # one file that loads anywhere, not one shard per rank
            cpu_offload=cpu_offload,
            use_orig_params=True,  # parameters keep their names: torch.compile, LoRA's freezing
            **kwargs,
        )
