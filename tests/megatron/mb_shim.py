"""Import Megatron-Bridge 0.6.2's data, builder, collate and config modules on a CPU.

Megatron-Bridge's package ``__init__`` files import everything — every model bridge, ``AutoBridge``
and, through its LoRA layers, ``transformer_engine`` (CUDA only). The modules the conformance tests
exercise do not need any of that, so :func:`load` keeps those ``__init__`` files from running and
imports the real submodules directly. The shims, all of them:

1. **bare packages** — ``megatron.bridge``, ``.data``, ``.data.datasets``, ``.data.builders``,
   ``.training``, ``.training.tokenizers``, ``.utils``, ``.models``, ``.models.conversion``,
   ``.peft`` and ``.recipes`` are registered as empty packages over their real directories, so their
   submodules import from the installed files but the ``__init__`` code (AutoBridge, every model
   bridge) does not run;
2. **re-exports those ``__init__`` files would provide** — ``megatron.bridge.models.GPTModelProvider``
   / ``T5ModelProvider`` and the dataset config names of ``megatron.bridge.data.builders``, taken from
   the real submodules that define them (``training/config.py`` and ``recipes/common.py`` import them
   from the package);
3. **transformer_engine placeholder, while ``megatron.bridge.peft.lora`` is imported only** —
   ``peft/lora_layers.py`` does ``import transformer_engine.pytorch as te`` and names ``te.ops.*`` in
   signatures; a placeholder module answers those names during that one import and is removed right
   after, so ``megatron.core`` keeps seeing no transformer_engine. Nothing here calls a LoRA layer.

Everything else — the packed-Parquet dataset, the builder, the collate, ``PackedSequenceSpecs``,
``ConfigContainer``, the OmegaConf/Hydra override helpers, the tokenizer — is Megatron-Bridge's own
code, unmodified.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import sys
import types
from pathlib import Path
from typing import Any

BARE = (
    "megatron.bridge",
    "megatron.bridge.data",
    "megatron.bridge.data.datasets",
    "megatron.bridge.data.builders",
    "megatron.bridge.training",
    "megatron.bridge.training.tokenizers",
    "megatron.bridge.utils",
    "megatron.bridge.models",
    "megatron.bridge.models.conversion",
    "megatron.bridge.peft",
    "megatron.bridge.recipes",
)


def installed() -> bool:
    try:
        return importlib.util.find_spec("megatron.bridge") is not None
    except (ImportError, ValueError):
        return False


def _bare(name: str) -> None:
    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name.rpartition(".")[0]) if "." in name else None
    roots = list(spec.submodule_search_locations or []) if spec else sys.path
    directory = next(
        (Path(r, name.rpartition(".")[2]) for r in roots if Path(r, name.rpartition(".")[2]).is_dir()), None
    )
    if directory is None:
        raise ImportError(f"no package directory for {name}")
    module = types.ModuleType(name)
    module.__path__ = [str(directory)]
    module.__package__ = name
    module.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
    module.__spec__.submodule_search_locations = [str(directory)]
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent in sys.modules:
        setattr(sys.modules[parent], child, module)


def _reexport(package: str, *modules: str) -> None:
    target = sys.modules[package]
    for name in modules:
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", [a for a in dir(module) if not a.startswith("_")]):
            setattr(target, attr, getattr(module, attr))


class _Placeholder(type):
    def __getattr__(cls, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {})


def _import_lora() -> None:
    te = types.ModuleType("transformer_engine")
    pytorch = types.ModuleType("transformer_engine.pytorch")

    def _attr(name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {})

    pytorch.__getattr__ = _attr  # type: ignore[method-assign]
    te.pytorch = pytorch  # type: ignore[attr-defined]
    sys.modules["transformer_engine"] = te
    sys.modules["transformer_engine.pytorch"] = pytorch
    try:
        importlib.import_module("megatron.bridge.peft.lora")
    finally:
        del sys.modules["transformer_engine"], sys.modules["transformer_engine.pytorch"]


_loaded: types.SimpleNamespace | None = None


def load() -> types.SimpleNamespace:
    """The real Megatron-Bridge modules the tests use (imported once)."""
    global _loaded
    if _loaded is not None:
        return _loaded
    for name in BARE:
        _bare(name)
    _reexport(
        "megatron.bridge.models", "megatron.bridge.models.gpt_provider", "megatron.bridge.models.t5_provider"
    )
    _reexport(
        "megatron.bridge.data.builders",
        "megatron.bridge.data.builders.gpt_sft",
        "megatron.bridge.data.builders.direct_hf_sft",
        "megatron.bridge.data.sft_processing",
        "megatron.bridge.data.sources.hf",
    )
    _import_lora()
    ns = types.SimpleNamespace(
        builders=importlib.import_module("megatron.bridge.data.builders.gpt_sft"),
        packing=importlib.import_module("megatron.bridge.data.packing"),
        parquet=importlib.import_module("megatron.bridge.data.packing.parquet"),
        config=importlib.import_module("megatron.bridge.training.config"),
        omegaconf_utils=importlib.import_module("megatron.bridge.training.utils.omegaconf_utils"),
        tokenizer=importlib.import_module("megatron.bridge.training.tokenizers.tokenizer"),
        tokenizer_config=importlib.import_module("megatron.bridge.training.tokenizers.config"),
        recipes_common=importlib.import_module("megatron.bridge.recipes.common"),
        hybrid=importlib.import_module("megatron.bridge.models.hybrid.hybrid_provider"),
    )
    # the engine imports these by their package names: point them at the real modules
    sys.modules["megatron.bridge.data.builders"].GPTSFTDatasetConfig = ns.builders.GPTSFTDatasetConfig
    _loaded = ns
    return ns
