"""``SFTDataPrep``: the spec is the ``sft_prep`` config (camelCase) plus the Kubernetes part.

The spec model *inherits* :class:`sft_prep.config.PrepConfig`, so every field the prep workload gains
appears in the CRD at the next ``make crds`` (and the stale-CRD test fails until it is regenerated),
and the workload's own cross-field checks run in the operator, which turns them into ``Stalled``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, model_validator

from sft_common.config import ConfigModel
from sft_common.result import PrepTotals
from sft_operator.api.podspec import BatchFields, PodFields, check_uri
from sft_operator.api.status import WORKLOAD, ChildRef, Condition, Failure, Phase
from sft_prep.config import PrepConfig

#: Fields that define the data: immutable once the Job exists (CEL rule + the operator's drift check).
#: Everything of PrepConfig, plus the image (the code) and parallelism (the worker/shard assignment).
KUBE_DATA_FIELDS = ("image", "parallelism")


class SFTDataPrepSpec(PrepConfig, PodFields, BatchFields):
    """Desired data preparation: OpenAI chat datasets → chat template → tokens → loss mask → packed
    Parquet splits, run as an Indexed Job with `parallelism` workers. Every field except `suspend` and
    the scheduling fields is immutable once the Job exists."""

    parallelism: int = Field(default=1, ge=1, le=1000)
    """Number of prep workers (Indexed Job completions); worker i processes shards i, i+N, ... Must not
    exceed numShards."""

    @model_validator(mode="after")
    def _check_kubernetes(self) -> SFTDataPrepSpec:
        if self.parallelism > self.num_shards:
            raise ValueError(
                f"parallelism ({self.parallelism}) exceeds numShards ({self.num_shards}): workers beyond "
                f"the shard count would have nothing to do; lower parallelism or raise numShards"
            )
        self.check_location("outputDir", self.output_dir)
        for i, dataset in enumerate(self.datasets):
            check_uri(f"datasets.{i}.path", dataset.path, allow_hf=True)
        if self.blend_path:
            check_uri("blendPath", self.blend_path, allow_hf=False)
        return self

    def prep_config(self) -> PrepConfig:
        """The workload config this spec carries (what goes into the ConfigMap)."""
        return PrepConfig.model_validate(self.model_dump(include=set(PrepConfig.model_fields)))


def data_fields() -> tuple[str, ...]:
    """camelCase spec keys that define the data (the CEL immutability rule compares exactly these)."""
    names = [*PrepConfig.model_fields, *KUBE_DATA_FIELDS]
    return tuple(SFTDataPrepSpec.model_fields[n].alias or n for n in names)


Totals = PrepTotals
"""Counts over all splits: the same model the prep workers report (sft_common.result)."""


class PrepOutputs(ConfigModel):
    """Where the prepared data is and what it holds: what an SFTRun reads."""

    output_dir: str | None = None
    """URI of the output directory (splits/, blend.json, metadata.json)."""
    blend: str | None = None
    """URI of blend.json (the training data blend)."""
    metadata: str | None = None
    """URI of metadata.json (statistics)."""
    pack_size: int | None = None
    """Tokens per packed bin; the SFTRun's sequence length."""
    pad_seq_to_mult: int | None = None
    """Every packed sequence was padded to a multiple of this (spec padSeqToMult); an SFTRun whose
    context/sequence parallelism needs a larger multiple refuses the data."""
    totals: Totals | None = None
    """Counts over all splits."""
    packing_efficiency: float | None = None
    """tokens / (bins * packSize)."""


class PrepProgress(ConfigModel):
    """Aggregated progress; the workers write their own entries under workers.<index>."""

    shards_done: int | None = None
    """Shards finished by all workers."""
    shards_total: int | None = None
    """Shards in total (numShards)."""
    shards: str | None = None
    """"done/total", for the printer column."""
    percent: float | None = None
    """Share of shards done, 0-100."""
    percent_text: str | None = None
    """percent as text, for the printer column."""
    tokens: int | None = None
    """Tokens written so far (the final total once Succeeded)."""
    tokens_text: str | None = None
    """tokens with a unit (e.g. 1.18G), for the printer column."""
    tokens_per_second: float | None = None
    """Current throughput summed over running workers."""
    eta_seconds: int | None = None
    """Estimated seconds until the slowest running worker is done."""
    eta_text: str | None = None
    """etaSeconds as kubectl prints durations (e.g. 3m20s), for the printer column."""
    workers_done: int | None = None
    """Workers (Job indexes) that completed."""
    workers_total: int | None = None
    """Workers in total (parallelism)."""
    updated_at: str | None = None
    """When a worker last reported."""
    workers: Annotated[dict[str, dict[str, Any]] | None, WORKLOAD] = None
    """Per-worker progress, patched by the workers themselves (key: worker index)."""


class SFTDataPrepStatus(ConfigModel):
    """Observed state, written by the operator (and progress.workers.* by the prep workers)."""

    phase: Phase | None = None
    """Pending, Running, Succeeded, Failed or Suspended."""
    observed_generation: int | None = None
    """metadata.generation the status was computed for."""
    message: str | None = None
    """One-line summary of the current state."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready, Reconciling, Stalled (kstatus) and JobCreated, DataReady."""
    job_ref: ChildRef | None = None
    """The Job running the workers; once set, the data-defining spec is immutable."""
    config_map_ref: ChildRef | None = None
    """The ConfigMap holding config.yaml."""
    start_time: str | None = None
    """When the Job started."""
    completion_time: str | None = None
    """When the Job finished (succeeded or failed)."""
    progress: PrepProgress | None = None
    """Shards done/total, tokens and throughput."""
    outputs: PrepOutputs | None = None
    """Where the data is and its statistics (set when Succeeded)."""
    failure: Failure | None = None
    """Why it failed (set when Failed)."""
