"""Stand-ins for the Nemotron 3 Super recipe functions, for building a real ConfigContainer on a CPU.

The real ``nemotron_3_super_*_config`` functions start with ``AutoBridge.from_hf_pretrained`` (a model
hub download plus every model bridge); everything after that is Megatron-Bridge's common SFT/PEFT
recipe (``recipes/common.py``: ``_sft_common`` / ``_peft_common``). These call those for real and
put a small ``HybridModelProvider`` (the Mamba/attention hybrid class Nemotron-H providers are) in
place of the downloaded model, with the recipe's own parallelism and MTP settings.
"""

from __future__ import annotations

from typing import Any

import mb_shim


def _model(tp: int) -> Any:
    ns = mb_shim.load()
    model = ns.hybrid.HybridModelProvider(num_layers=2, hidden_size=64, num_attention_heads=4)
    model.tensor_model_parallel_size = tp
    model.context_parallel_size = 1
    model.sequence_parallel = True
    model.mtp_loss_scaling_factor = 0.3
    model.calculate_per_token_loss = True
    return model


def tiny_sft_config() -> Any:
    cfg = mb_shim.load().recipes_common._sft_common()
    cfg.model = _model(tp=8)
    return cfg


def tiny_peft_config(peft_scheme: str = "lora") -> Any:
    assert peft_scheme == "lora"
    cfg = mb_shim.load().recipes_common._peft_common()
    cfg.model = _model(tp=1)
    return cfg
