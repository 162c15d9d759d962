"""``SFTRun``: the spec is the ``sft_train`` config (camelCase) plus the Kubernetes part.

The spec model *inherits* :class:`sft_train.config.TrainConfig` (as ``SFTDataPrepSpec`` inherits the
prep config), so every trainer setting appears in the CRD at the next ``make crds``. Only ``data``
differs: in a CR the data is either a reference to an ``SFTDataPrep`` in the same namespace (the
operator waits for it and takes the data URI and pack size from its status) or a URI the user already
prepared. The operator resolves it into the trainer's own ``data.path`` when it renders the ConfigMap.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from sft_common.config import ConfigModel
from sft_common.result import CheckpointInfo
from sft_operator.api.podspec import DNS_LABEL_RE, QUANTITY_RE, BatchFields, PodFields, check_uri
from sft_operator.api.status import WORKLOAD, ChildRef, Condition, Failure
from sft_train import parallel
from sft_train.config import TrainConfig, pad_multiple

SHM_VOLUME = "sft-shm"
SHM_DIR = "/dev/shm"
GPU_RESOURCE = "nvidia.com/gpu"

SMALL_SAVE_GRACE_SECONDS = 120
"""Grace for a save of LoRA adapters or an hf-engine model (seconds of writing at most)."""
STEP_GRACE_SECONDS = 60
"""Time to finish the current step and agree on stopping across ranks."""
GPU_STATE_GIB = 80
"""What one GPU's share of a checkpoint can be at most: its memory (H100: 80 GiB)."""
SAVE_GIB_PER_SECOND = 1
"""Assumed per-node write rate of checkpoint storage (shared filesystem or object-store staging)."""
DEFAULT_GPUS_PER_NODE = {"megatron": 8, "hf": 0}
"""gpusPerNode when the spec leaves it out, by engine: megatron runs on a DGX/HGX node's 8 GPUs; hf is
the CPU demo/test engine, one process per pod (it was 8 for both until issue 21: an hf run on CPU then
asked for 8 processes)."""
LEGACY_GPUS_PER_NODE = 8
"""The single default gpusPerNode had before it depended on the engine; spec hashes leave it out as a
default still (:func:`sft_operator.render.sftrun.training_spec_hash`)."""
DURATION_RE = r"^(0|([0-9]+h)?([0-9]+m)?([0-9]+s)?)$"
"""A Kubernetes-style duration: 1h30m, 45m, 90s, or 0."""


def parse_duration(text: str) -> float:
    """Seconds of a :data:`DURATION_RE` duration ("" and "0" are 0)."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text.strip() or "0s")
    if text.strip() == "0" or match is None:
        return 0.0
    hours, minutes, seconds = (int(g or 0) for g in match.groups())
    return float(hours * 3600 + minutes * 60 + seconds)


#: Kubernetes fields that define the training besides the trainer config: the code (image) and the
#: world shape (nodes × GPUs per node), which fixes data parallelism and the checkpoint layout.
KUBE_TRAINING_FIELDS = ("image", "nodes", "gpusPerNode")


class DataPrepRef(ConfigModel):
    """An SFTDataPrep in the same namespace."""

    name: str = Field(min_length=1, max_length=253)
    """Name of the SFTDataPrep; the run waits until it is Succeeded."""


class RunData(ConfigModel):
    """Where the packed training data comes from: exactly one of dataPrepRef or uri."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.dataPrepRef) != has(self.uri)",
                    "message": "set exactly one of dataPrepRef (an SFTDataPrep) or uri (prepared data)",
                },
                {
                    "rule": "!has(self.packSize) || has(self.uri)",
                    "message": "packSize goes with uri; with dataPrepRef it comes from the SFTDataPrep",
                },
            ]
        }
    )

    data_prep_ref: DataPrepRef | None = None
    """Train on the output of this SFTDataPrep (same namespace): the run waits for it, and takes the
    data URI and pack size from its status.outputs."""
    uri: str | None = Field(default=None, min_length=1, max_length=4096)
    """Or: an sft-prep output directory that already exists (s3://, file:// or an absolute path on a
    mounted volume) holding splits/ and metadata.json."""
    pack_size: int | None = Field(default=None, ge=16)
    """With uri: the pack size the data was prepared with (becomes model.seqLength); default: read
    from its metadata.json by the trainer."""
    use_validation: bool = True
    """Evaluate on splits/valid when it holds shards."""
    allow_full_loss_mask: bool = False
    """Train on data whose loss mask trains (nearly) every token, prompts included. Off: the trainer
    refuses such data before training (DataError), as the sign of a chat template that marks every token."""

    @model_validator(mode="after")
    def _one_source(self) -> RunData:
        if (self.data_prep_ref is None) == (self.uri is None):
            raise ValueError("data: set exactly one of dataPrepRef (an SFTDataPrep) or uri (prepared data)")
        if self.pack_size is not None and self.uri is None:
            raise ValueError(
                "data.packSize goes with data.uri; with dataPrepRef it comes from the SFTDataPrep"
            )
        if self.uri is not None:
            check_uri("data.uri", self.uri, allow_hf=False)
        return self


def _backend_schema(schema: dict[str, Any]) -> None:
    """spec.backend's enum and description, from the registry (imported here, when the schema is made:
    the backends import this module)."""
    from sft_operator import backends

    schema["enum"] = list(backends.NAMES)
    schema["description"] = (
        f"What runs the pods: {backends.listing()}. auto: the operator's default (Helm value "
        "sftRun.backend), which when auto itself picks, when the run starts, the first whose CRD the "
        "cluster serves in that order. The choice is recorded in status.backend and never changes for "
        "a started run."
    )


def backend_problem(name: str) -> str | None:
    """Why ``name`` is no spec.backend value, or None."""
    from sft_operator import backends

    if name in backends.NAMES:
        return None
    return f"backend {name!r} does not exist: spec.backend is one of {', '.join(backends.NAMES)}"


class SFTRunSpec(TrainConfig, PodFields, BatchFields):
    """Desired fine-tuning run: Megatron-Bridge (or Hugging Face on CPU) on packed Parquet, run with
    `nodes` pods of `gpusPerNode` GPUs by one of the backends (spec.backend). The training-defining
    fields (the trainer config, image, nodes, gpusPerNode) are immutable once that child exists;
    suspend and the scheduling fields stay mutable."""

    data: RunData  # type: ignore[assignment]
    """The packed training data: an SFTDataPrep to wait for, or a URI."""
    backend: str = Field(default="auto", json_schema_extra=lambda schema: _backend_schema(schema))
    """What runs the pods: auto or one of the backends in sft_operator.backends (the CRD's enum and
    description list them). auto: the operator's default (Helm value sftRun.backend), which when auto
    itself picks, when the run starts, the first whose CRD the cluster serves in that order. The
    choice is recorded in status.backend and never changes for a started run."""
    training_runtime: str | None = Field(default=None, max_length=253, pattern=DNS_LABEL_RE)
    """backend trainjob: the ClusterTrainingRuntime to run on (a torch-distributed one whose trainer
    container is named node); default: the one the chart ships (sft-torch-distributed)."""
    nodes: int = Field(default=1, ge=1, le=1024)
    """Pods (nodes), one per node rank."""
    gpus_per_node: int | None = Field(default=None, ge=0, le=16)
    """GPUs per pod (nvidia.com/gpu limit) and torchrun processes per node; 0 runs one CPU process per
    pod (engine hf only). Default by engine: megatron 8 (a DGX/HGX node), hf 0 (CPU, the demo's
    engine)."""
    shm_size: str = Field(default="64Gi", max_length=64)
    """Size of the memory-backed /dev/shm (NCCL and data loader workers need far more than the
    container runtime's 64Mi default); counts against the pod's memory."""
    max_restarts: int = Field(default=0, ge=0, le=100)
    """A backend that restarts the whole group of pods after a failure: how many such restarts (the
    trainer resumes from its newest checkpoint; disruptions and preemptions do not count). A backend
    that retries failed replicas one by one (pytorchjob): restarts of the training processes by
    torchrun inside a pod (--max-restarts; with the static rendezvous keep 0 for multi-node runs and
    let backoffLimit retry failed pods). backend trainjob: set by the runtime (must be 0 here)."""

    termination_grace_period_seconds: int | None = Field(default=None, ge=1, le=86400)
    """Seconds a pod has, after SIGTERM (preemption, eviction, drain), to finish its step, save a
    checkpoint and exit 143 before the kubelet kills it. Default (see :meth:`grace_seconds`): 120 for
    engine hf and LoRA runs (a small save); for a full megatron run 60 s to finish the step plus
    gpusPerNode × 80 s: a node saves at most what its GPUs hold (weights and optimizer state fit in
    80 GiB of H100 memory per GPU) at an assumed ≥ 1 GiB/s per node (700 s for 8 GPUs). Raise it for
    slower storage; Kubernetes' own 30 s default would cut every large save."""
    hang_timeout: str = Field(default="30m", max_length=32, pattern=DURATION_RE)
    """A Running run whose progress (status.progress.updatedAt, written by the trainer's rank 0) has
    not moved for this long gets the condition Hung and a Warning Event (a rank stuck in a
    collective keeps every pod Running). A duration: 30m, 1h30m, 90s; 0 turns it off. Keep it above
    the longest checkpoint save plus evaluation."""
    restart_on_hang: bool = False
    """When Hung, restart the training group through the backend (its pods are replaced; the trainer
    resumes from its newest checkpoint). Counted in status.restartCount, not against maxRestarts or
    backoffLimit."""

    @field_validator("backend")
    @classmethod
    def _check_backend(cls, value: str) -> str:
        problem = backend_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _check_run(self) -> SFTRunSpec:
        if not QUANTITY_RE.match(self.shm_size):
            raise ValueError(f"shmSize: '{self.shm_size}' is not a Kubernetes quantity (e.g. 64Gi, 512Mi)")
        if self.engine == "megatron" and self.gpus() == 0:
            raise ValueError(
                "gpusPerNode is 0 but engine megatron needs GPUs: set gpusPerNode (8 on a DGX/HGX node) "
                "or use engine hf for a CPU run"
            )
        self._check_parallelism()
        self._check_gpu_resources()
        if not self.checkpoint.save:
            raise ValueError(
                "checkpoint.save is not set: the trained model would vanish with the pods; set it to an "
                "s3:// URI or a path on a mounted volume"
            )
        self.check_location("checkpoint.save", self.checkpoint.save)
        if not self.model.pretrained_checkpoint and not self.checkpoint.load:
            raise ValueError(
                "model.pretrainedCheckpoint is not set and checkpoint.load names no checkpoint to continue "
                "from: the trainer would have no weights to start with; set model.pretrainedCheckpoint to "
                "the base model (an s3:// URI or a path on a mounted volume)"
            )
        for key, value in (
            ("checkpoint.load", self.checkpoint.load),
            ("checkpoint.hfExport", self.checkpoint.hf_export),
            ("model.pretrainedCheckpoint", self.model.pretrained_checkpoint),
        ):
            if value:
                self.check_location(key, value)
        if self.data.uri and "://" not in self.data.uri:
            self.check_location("data.uri", self.data.uri)
        for mount in self.volume_mounts:
            if mount.mount_path.rstrip("/") == SHM_DIR:
                raise ValueError(
                    f"volumeMounts: {SHM_DIR} is the operator's shared-memory volume; use shmSize"
                )
        if any(v.name == SHM_VOLUME for v in self.volumes):
            raise ValueError(f"volumes: {SHM_VOLUME} is reserved for the operator; rename it")
        return self

    def _check_parallelism(self) -> None:
        """The parallel sizes must tile the world (nodes × GPUs) and the global batch must split
        evenly into micro batches over the data-parallel ranks; Megatron (or the hf engine) would
        fail only after the pods started and loaded the model. Unset sizes are the recipe's, as the
        trainer resolves them (:func:`sft_train.parallel.run_parallelism`)."""
        world = self.nodes * (self.gpus() or 1)
        gbs, mbs = self.train.global_batch_size, self.train.micro_batch_size
        if self.engine != "megatron":
            if gbs % (mbs * world):
                cpu = (
                    "; for a CPU run leave gpusPerNode out (or 0: one process per pod)" if self.gpus() else ""
                )
                raise ValueError(
                    f"train.globalBatchSize {gbs} is not a multiple of microBatchSize ({mbs}) × the {world} "
                    f"processes (nodes {self.nodes} × {self.gpus() or 1} per node); set "
                    f"globalBatchSize to a multiple of {mbs * world} or change the process count{cpu}"
                )
            return
        sizes = parallel.run_parallelism(self)  # the trainer's sizes: set, else the recipe's
        gpus = self.gpus() or 1
        problem = parallel.world_problem(
            sizes, self.nodes, gpus, gbs, mbs, where="nodes × gpusPerNode", names=parallel.SPEC_NAMES
        )
        if problem:
            raise ValueError(problem)

    def grace_seconds(self) -> int:
        """terminationGracePeriodSeconds of the training pods (the field's docstring says why)."""
        if self.termination_grace_period_seconds is not None:
            return self.termination_grace_period_seconds
        if self.engine != "megatron" or self.peft is not None or not self.gpus():
            return SMALL_SAVE_GRACE_SECONDS
        return STEP_GRACE_SECONDS + self.gpus() * GPU_STATE_GIB // SAVE_GIB_PER_SECOND

    def gpus(self) -> int:
        """GPUs per pod: gpusPerNode, else the engine's default (:data:`DEFAULT_GPUS_PER_NODE`)."""
        if self.gpus_per_node is not None:
            return self.gpus_per_node
        return DEFAULT_GPUS_PER_NODE[self.engine]

    def hang_seconds(self) -> float:
        """spec.hangTimeout in seconds (0: off)."""
        return parse_duration(self.hang_timeout)

    def seq_multiple(self) -> int:
        """What every packed sub-sequence must be padded to for this run's parallelism: the trainer's
        own rule (:func:`sft_train.config.pad_multiple`) on the sizes it resolves (set, else the
        recipe's)."""
        if self.engine != "megatron":
            return 1
        par = parallel.run_parallelism(self)
        return pad_multiple(par.tp, par.cp, par.sp)

    def _check_gpu_resources(self) -> None:
        for section in ("requests", "limits"):
            values = getattr(self.resources, section) or {}
            if GPU_RESOURCE in values and str(values[GPU_RESOURCE]) != str(self.gpus()):
                raise ValueError(
                    f"resources.{section} sets {GPU_RESOURCE} to {values[GPU_RESOURCE]} but gpusPerNode is "
                    f"{self.gpus()}; leave {GPU_RESOURCE} out (the operator sets it from gpusPerNode)"
                )

    def train_config(self, data_path: str, pack_size: int | None) -> TrainConfig:
        """The trainer config this spec carries, with the data resolved (what goes into the ConfigMap)."""
        dumped = self.model_dump(include=set(TrainConfig.model_fields) - {"data"})
        dumped["data"] = {
            "path": data_path,
            "use_validation": self.data.use_validation,
            "allow_full_loss_mask": self.data.allow_full_loss_mask,
        }
        if pack_size is not None:
            dumped["model"]["seq_length"] = pack_size
        return TrainConfig.model_validate(dumped)


def training_fields() -> tuple[str, ...]:
    """camelCase spec keys that define the training (the CEL immutability rule compares exactly these)."""
    names = [*TrainConfig.model_fields, *(_snake(k) for k in KUBE_TRAINING_FIELDS)]
    return tuple(SFTRunSpec.model_fields[n].alias or n for n in names)


def _snake(camel: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", camel).lower()


class RunOutputs(ConfigModel):
    """What the run produced, from the trainer's result (rank 0's termination message)."""

    checkpoint: str | None = None
    """URI of the checkpoint directory (checkpoint.save)."""
    last_iteration: int | None = None
    """Iteration of the last saved checkpoint."""
    final_loss: float | None = None
    """Training loss at the last iteration."""
    hf_export: str | None = None
    """URI of the Hugging Face export, when checkpoint.hfExport was set."""
    data: str | None = None
    """URI of the training data the run used (resolved from dataPrepRef or data.uri)."""
    pack_size: int | None = None
    """Pack size (sequence length) of that data, when known."""


class RunProgress(ConfigModel):
    """Training progress. Rank 0 of the trainer patches its keys itself (marked WORKLOAD, and any key
    it adds beyond these); the operator writes only `iterations` and the printer columns' texts."""

    model_config = ConfigDict(extra="allow")

    task: Annotated[str | None, WORKLOAD] = None
    """What is being counted (train)."""
    unit: Annotated[str | None, WORKLOAD] = None
    """Unit of completed/total (iterations)."""
    completed: Annotated[float | None, WORKLOAD] = None
    """Iterations done."""
    total: Annotated[float | None, WORKLOAD] = None
    """Iterations in total (train.trainIters)."""
    percent: Annotated[float | None, WORKLOAD] = None
    """Share done, 0-100."""
    loss: Annotated[float | None, WORKLOAD] = None
    """Latest training loss."""
    learning_rate: Annotated[float | None, WORKLOAD] = None
    """Current learning rate."""
    tokens: Annotated[float | None, WORKLOAD] = None
    """Tokens trained on so far."""
    tokens_per_second: Annotated[float | None, WORKLOAD] = None
    """Current throughput."""
    eta_seconds: Annotated[int | None, WORKLOAD] = None
    """Estimated seconds to the end."""
    updated_at: Annotated[str | None, WORKLOAD] = None
    """When the trainer last reported (what hang detection, spec.hangTimeout, measures from)."""
    checkpoint: Annotated[CheckpointInfo | None, WORKLOAD] = None
    """The newest complete checkpoint, written by the trainer on each save (shown as
    status.checkpoints)."""
    iterations: str | None = None
    """"done/total", for the printer column (written by the operator)."""
    tokens_text: str | None = None
    """tokens with a unit (e.g. 1.18G), for the printer column (written by the operator)."""
    eta_text: str | None = None
    """etaSeconds as kubectl prints durations (e.g. 2h5m) while Running, for the printer column
    (written by the operator)."""


class RunFailure(Failure):
    """Why the run failed: the replica, its pod, exit code and last lines (or the prep's failure)."""

    replica: str | None = None
    """The replica that failed, e.g. "Master 0" / "Worker 2" (PyTorchJob) or "Node 1" (JobSet, TrainJob)."""


class TrainerStatusMirror(ConfigModel):
    """Kubeflow Trainer's TrainJob status.trainerStatus (alpha, feature gate TrainJobStatus)."""

    progress_percentage: int | None = None
    """Trainer's estimate of how complete the TrainJob is, 0-100."""
    estimated_remaining_seconds: int | None = None
    """Trainer's estimate of the remaining training time."""
    last_updated_time: str | None = None
    """When Trainer observed it."""


RunPhase = Literal["Pending", "Waiting", "Running", "Succeeded", "Failed", "Suspended"]


class SFTRunStatus(ConfigModel):
    """Observed state, written by the operator (and progress by the trainer's rank 0)."""

    phase: RunPhase | None = None
    """Pending, Waiting (for the data), Running, Succeeded, Failed or Suspended."""
    observed_generation: int | None = None
    """metadata.generation the status was computed for."""
    message: str | None = None
    """One-line summary of the current state."""
    conditions: list[Condition] = Field(default_factory=list)
    """Ready, Reconciling, Stalled (kstatus) and DataReady, JobCreated."""
    backend: str | None = None
    """The backend the run was started on (trainjob, jobset or pytorchjob); never changes."""
    job_ref: ChildRef | None = None
    """The child running the training (TrainJob, JobSet or PyTorchJob); once set, the
    training-defining spec is immutable."""
    config_map_ref: ChildRef | None = None
    """The ConfigMap holding config.yaml."""
    data_prep_ref: ChildRef | None = None
    """The SFTDataPrep the data came from (with its uid at the time the run started)."""
    start_time: str | None = None
    """When the child started."""
    completion_time: str | None = None
    """When the child finished (succeeded or failed)."""
    restart_count: int | None = None
    """How often the run restarted: failed replicas retried (PyTorchJob backoffLimit) or the whole
    group restarted (JobSet/TrainJob failurePolicy.maxRestarts)."""
    last_restart_time: str | None = None
    """When the latest restart was observed."""
    progress: RunProgress | None = None
    """Iteration, loss, learning rate, throughput and ETA."""
    trainer_status: TrainerStatusMirror | None = None
    """backend trainjob: Kubeflow Trainer's alpha trainerStatus, mirrored when it reports one."""
    outputs: RunOutputs | None = None
    """Where the checkpoint is (set when Succeeded)."""
    failure: RunFailure | None = None
    """Why it failed (set when Failed)."""
    checkpoints: CheckpointInfo | None = None
    """The newest complete checkpoint (latestIteration, uri, time, resumedFrom): from the trainer's
    progress while it runs, from its result once it ended."""
