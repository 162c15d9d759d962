"""Loading the base model for the hf engine, and LoRA with the recipe's Megatron module names."""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from sft_common import storage
from sft_train.config import LoraSpec
from sft_train.errors import CheckpointNotFound, TrainInputError

# Megatron module name → the names the same layer has in Hugging Face models (Llama/Qwen/Mistral-style
# attention and MLP, fused variants, and Mamba mixers, whose in_proj/out_proj keep their names).
MEGATRON_TO_HF: dict[str, tuple[str, ...]] = {
    "linear_qkv": ("q_proj", "k_proj", "v_proj", "qkv_proj", "query_key_value", "c_attn"),
    "linear_proj": ("o_proj", "dense", "c_proj"),
    "linear_fc1": ("gate_proj", "up_proj", "gate_up_proj", "fc1", "dense_h_to_4h", "c_fc"),
    "linear_fc2": ("down_proj", "fc2", "dense_4h_to_h"),
    "in_proj": ("in_proj",),
    "out_proj": ("out_proj",),
}


def localize_checkpoint(uri: str, what: str, scratch: Path) -> Path:
    """A local directory holding the checkpoint at ``uri`` (downloaded when remote)."""
    if not storage.exists(uri):
        raise CheckpointNotFound(f"{what} {uri} does not exist")
    if storage.is_remote(uri):
        return storage.download_tree(uri, Path(tempfile.mkdtemp(prefix="ckpt-", dir=scratch)))
    path = Path(uri.removeprefix("file://"))
    if not path.is_dir():
        raise CheckpointNotFound(f"{what} {uri} is not a directory")
    return path


def attention_implementation(device_type: str, precision: str, flash_installed: bool | None = None) -> str:
    """``flash_attention_2`` on a GPU when flash-attn is installed and the run computes in bf16, else
    ``sdpa``.

    flash-attention's varlen kernel takes a packed row's sub-sequences from its position ids and
    computes only their own causal triangles (``hf_batch`` then packs every row); its kernels take
    16-bit inputs only, so an fp32 run stays on SDPA, and so does the CPU (flash-attn is CUDA-only)."""
    if device_type != "cuda" or precision != "bf16":
        return "sdpa"
    if flash_installed is None:
        from transformers.utils import is_flash_attn_2_available

        flash_installed = bool(is_flash_attn_2_available())
    return "flash_attention_2" if flash_installed else "sdpa"


def load_base_model(path: Path, what: str, attn_implementation: str = "sdpa") -> torch.nn.Module:
    """A transformers causal LM from a Hugging Face checkpoint dir, in float32 master weights."""
    from transformers import AutoModelForCausalLM

    if not (path / "config.json").exists():
        raise CheckpointNotFound(f"{what} {path} is not a Hugging Face checkpoint (no config.json)")
    model = AutoModelForCausalLM.from_pretrained(
        str(path), dtype=torch.float32, attn_implementation=attn_implementation
    )
    model.config.use_cache = False
    return model


def eos_token_id(model_dir: Path | None, model: torch.nn.Module) -> int | None:
    """The eos id Megatron-Bridge's collate would use: the tokenizer's next to the weights (as MB reads
    its tokenizer), else the model config's (first one when it lists several)."""
    if model_dir is not None and any((model_dir / n).exists() for n in ("tokenizer.json", "tokenizer.model")):
        from transformers import AutoTokenizer

        try:
            eos = AutoTokenizer.from_pretrained(str(model_dir)).eos_token_id
        except (OSError, ValueError):
            eos = None
        if isinstance(eos, int):
            return eos
    eos = getattr(model.config, "eos_token_id", None)
    if isinstance(eos, list | tuple):
        eos = eos[0] if eos else None
    return eos if isinstance(eos, int) else None


def hf_lora_targets(module_names: Iterable[str], targets: Sequence[str]) -> list[str]:
    """Leaf module names of this model that correspond to the Megatron ``targets``."""
    wanted: set[str] = set()
    for target in targets:
        wanted.update(MEGATRON_TO_HF.get(target, (target,)))
    present = {name.rsplit(".", 1)[-1] for name in module_names}
    found = sorted(wanted & present)
    if not found:
        raise TrainInputError(
            f"peft.target_modules {list(targets)} match no linear layer of this model "
            f"(looked for {sorted(wanted)}); name the model's own modules, e.g. {sorted(present)[:8]}"
        )
    return found


def apply_lora(model: torch.nn.Module, spec: LoraSpec) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    linear = [name for name, mod in model.named_modules() if isinstance(mod, torch.nn.Linear)]
    lm_head = {n for n in linear if n.endswith("lm_head")}
    targets = hf_lora_targets([n for n in linear if n not in lm_head], spec.target_modules)
    config = LoraConfig(
        r=spec.dim,
        lora_alpha=spec.alpha,
        lora_dropout=spec.dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def load_adapter(base: torch.nn.Module, adapter_dir: Path) -> torch.nn.Module:
    from peft import PeftModel

    return PeftModel.from_pretrained(base, str(adapter_dir), is_trainable=True)


def trainable_parameters(model: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on matrices only: biases and norm weights are not decayed (as Megatron does)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for _, param in trainable_parameters(model):
        (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups
