"""A Megatron-Bridge recipe for the GPU test: the generic SFT defaults around a tiny Hugging Face model.

Imported by dotted path (``model.recipe: train_gpu_recipe.tiny_sft_config``) inside the torchrun
ranks, so it reads the model location from ``SFT_TEST_HF_MODEL``.
"""

from __future__ import annotations

import os
from typing import Any


def tiny_sft_config() -> Any:
    from megatron.bridge import AutoBridge
    from megatron.bridge.recipes.common import _sft_common

    cfg = _sft_common()
    cfg.model = AutoBridge.from_hf_pretrained(os.environ["SFT_TEST_HF_MODEL"]).to_megatron_provider(
        load_weights=False
    )
    cfg.model.tensor_model_parallel_size = 1
    cfg.model.pipeline_model_parallel_size = 1
    cfg.model.context_parallel_size = 1
    cfg.model.sequence_parallel = False
    cfg.tokenizer.tokenizer_type = "HuggingFaceTokenizer"
    cfg.tokenizer.tokenizer_model = os.environ["SFT_TEST_HF_MODEL"]
    cfg.validation.eval_interval = 1000
    cfg.checkpoint.async_save = False
    return cfg


def tiny_peft_config(peft_scheme: str = "lora") -> Any:
    """The LoRA counterpart: Megatron-Bridge's common PEFT recipe (its LoRA) around the same model."""
    from megatron.bridge import AutoBridge
    from megatron.bridge.recipes.common import _peft_common

    cfg = _peft_common()
    cfg.model = AutoBridge.from_hf_pretrained(os.environ["SFT_TEST_HF_MODEL"]).to_megatron_provider(
        load_weights=False
    )
    cfg.model.tensor_model_parallel_size = 1
    cfg.model.pipeline_model_parallel_size = 1
    cfg.model.context_parallel_size = 1
    cfg.model.sequence_parallel = False
    cfg.tokenizer.tokenizer_type = "HuggingFaceTokenizer"
    cfg.tokenizer.tokenizer_model = os.environ["SFT_TEST_HF_MODEL"]
    cfg.validation.eval_interval = 1000
    cfg.checkpoint.async_save = False
    return cfg
