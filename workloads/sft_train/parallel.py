"""Model parallelism as Megatron lays it over the GPUs: the one check of sizes against a world size.

Pure (no torch, no Megatron-Bridge, no pydantic): ``sft-train --dry-run`` checks the plan it prints
with it, and the operator checks an SFTRun's sizes with it before any pod starts.

Megatron-Core's rules (``parallel_state.initialize_model_parallel``, 0.19): the world is
``TP × PP × CP × DP``, so ``TP × PP × CP`` must divide it; the experts' layout is
``ETP × EP × expert-DP × PP`` over the same world, so ``EP × ETP`` must divide ``world / PP``; and the
training loop needs ``global_batch_size`` to be a multiple of ``micro_batch_size × DP``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Parallelism:
    """Resolved sizes (every one set)."""

    tp: int = 1
    pp: int = 1
    cp: int = 1
    ep: int = 1
    etp: int = 1
    sp: bool = False

    def as_config(self) -> dict[str, int | bool]:
        """The sizes under the config's ``parallelism`` keys."""
        return {
            "tensor_parallel_size": self.tp,
            "pipeline_parallel_size": self.pp,
            "context_parallel_size": self.cp,
            "expert_parallel_size": self.ep,
            "expert_tensor_parallel_size": self.etp,
            "sequence_parallel": self.sp,
        }

    def min_world(self) -> int:
        """The fewest GPUs that hold these sizes (every valid world size is a multiple of it)."""
        return math.lcm(self.tp * self.pp * self.cp, self.ep * self.etp * self.pp)


RECIPE_SIZES: dict[str, tuple[Parallelism, Parallelism]] = {
    # Megatron-Bridge 0.6.2 recipes/nemotronh/h100/nemotron_3_super.py: the 16-GPU full SFT function
    # sets TP 8, PP 1, CP 1, EP 16, ETP 1 with sequence parallelism; the 1-GPU PEFT one TP 1, EP 1.
    "nemotron_3_super": (
        Parallelism(tp=8, pp=1, cp=1, ep=16, etp=1, sp=True),
        Parallelism(tp=1, pp=1, cp=1, ep=1, etp=1, sp=True),
    ),
}
"""A known recipe's sizes, (full SFT, PEFT): what an unset ``parallelism`` key keeps (the recipe
functions themselves are named in :data:`sft_train.engines.megatron_plan.RECIPES`)."""


def run_parallelism(config: Any) -> Parallelism:
    """The sizes a run gets (``config``: a TrainConfig, or an SFTRun spec, which is one): each
    ``parallelism`` key set, else the named recipe's, else 1 (a dotted recipe of the user's own)."""
    par = config.parallelism
    known = RECIPE_SIZES.get(config.model.recipe)
    return resolve(
        known[1 if config.peft is not None else 0] if known else None,
        tp=par.tensor_parallel_size,
        pp=par.pipeline_parallel_size,
        cp=par.context_parallel_size,
        ep=par.expert_parallel_size,
        etp=par.expert_tensor_parallel_size,
        sp=par.sequence_parallel,
    )


def resolve(
    recipe: Parallelism | None,
    tp: int | None = None,
    pp: int | None = None,
    cp: int | None = None,
    ep: int | None = None,
    etp: int | None = None,
    sp: bool | None = None,
) -> Parallelism:
    """The sizes a run gets: each one set, else the recipe's (Megatron-Bridge keeps the recipe
    function's value for a key we do not override), else 1."""
    base = recipe or Parallelism()
    return Parallelism(
        tp=tp or base.tp,
        pp=pp or base.pp,
        cp=cp or base.cp,
        ep=ep or base.ep,
        etp=etp or base.etp,
        sp=base.sp if sp is None else sp,
    )


@dataclass(frozen=True)
class Names:
    """How the settings a message names are spelled where it is read: the trainer's config (the
    default) or the SFTRun spec (:data:`SPEC_NAMES`)."""

    global_batch: str = "train.global_batch_size"
    micro_batch: str = "micro_batch_size"
    expert: str = "expert_parallel_size"


SPEC_NAMES = Names("train.globalBatchSize", "microBatchSize", "expertParallelSize")


def min_nodes(par: Parallelism, gpus_per_node: int) -> int:
    """The fewest nodes of ``gpus_per_node`` GPUs whose world fits ``par``."""
    need = par.min_world()
    return next(n for n in range(1, need + 1) if (n * gpus_per_node) % need == 0)


def world_problem(
    par: Parallelism,
    nodes: int,
    gpus_per_node: int,
    global_batch_size: int,
    micro_batch_size: int,
    where: str = "nodes × gpusPerNode",
    names: Names = Names(),
) -> str | None:
    """Why ``par`` cannot run on ``nodes × gpus_per_node`` GPUs with this batch, or None.

    ``where`` names the settings that made the world size (the CR's fields, or the dry run's flags),
    so the message says what to change."""
    world = nodes * gpus_per_node
    model = par.tp * par.pp * par.cp
    fits = f"the smallest world these sizes fit is {par.min_world()} GPUs"
    if gpus_per_node > 0:
        fits += f" ({min_nodes(par, gpus_per_node)} nodes of {gpus_per_node})"
    if world % model:
        return (
            f"parallelism: tensor ({par.tp}) × pipeline ({par.pp}) × context ({par.cp}) = {model} does not "
            f"divide the {world} GPUs ({where}: {nodes} × {gpus_per_node}); {fits}: change the sizes or "
            "the GPU count"
        )
    if (world // par.pp) % (par.ep * par.etp):
        return (
            f"parallelism: expert ({par.ep}) × expert tensor ({par.etp}) = {par.ep * par.etp} does not "
            f"divide the {world // par.pp} GPUs of a pipeline stage ({where}: {nodes} × {gpus_per_node}); "
            f"{fits}: change {names.expert} or the GPU count"
        )
    dp = world // model
    if global_batch_size % (micro_batch_size * dp):
        return (
            f"{names.global_batch} {global_batch_size} is not a multiple of {names.micro_batch} "
            f"({micro_batch_size}) × data-parallel size {dp} (= {world} GPUs / (tensor {par.tp} × "
            f"pipeline {par.pp} × context {par.cp})); set it to a multiple of {micro_batch_size * dp}, "
            "or change the parallel sizes or the GPU count"
        )
    return None
