"""Status types shared by both kinds: kstatus conditions, child references, failure details.

Status models are output-only (the operator writes them); they exist so the CRD's status schema,
``kubectl explain`` and the operator's status derivation agree on one shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import Field

from sft_common.config import ConfigModel


@dataclass(frozen=True)
class WrittenBy:
    """Field metadata (``Annotated[T, WORKLOAD]``): who writes a status field. A field without it is
    the operator's; a field marked :data:`WORKLOAD` is patched by the workload itself (the trainer's
    rank 0, the prep workers), so the operator's status patch never writes or deletes it
    (:mod:`sft_operator.status.patch`). Not part of the CRD schema."""

    writer: str


WORKLOAD = WrittenBy("workload")


class Condition(ConfigModel):
    """A kstatus-style condition (Ready, Reconciling, Stalled) or a domain one (JobCreated, DataReady)."""

    type: str = Field(max_length=316)
    """Condition type."""
    status: Literal["True", "False", "Unknown"]
    """True, False or Unknown."""
    reason: str = Field(max_length=1024)
    """CamelCase reason."""
    message: str = Field(default="", max_length=32768)
    """What happened and, when something is wrong, what to do about it."""
    last_transition_time: str | None = None
    """When status last changed (RFC 3339)."""
    observed_generation: int | None = None
    """metadata.generation this condition was computed for."""


class ChildRef(ConfigModel):
    """A child object the operator created for this resource."""

    api_version: str
    """apiVersion of the child."""
    kind: str
    """Kind of the child."""
    name: str
    """Name of the child (same namespace)."""
    uid: str | None = None
    """UID of the child."""


FailureCategory = Literal[
    "Preempted",
    "NodeLost",
    "OOMKilled",
    "CUDAOutOfMemory",
    "NCCLTimeout",
    "NCCLError",
    "NoSpace",
    "StorageUnavailable",
    "DataError",
    "ConfigError",
    "ImagePull",
    "Unknown",
]
"""status.failure.category: the classifier's answer (sft_operator.status.failure)."""


class Failure(ConfigModel):
    """Why the run failed: the pod, its exit code and the last lines it wrote."""

    reason: str
    """CamelCase reason (the workload's own, or BackoffLimitExceeded, DeadlineExceeded, OOMKilled, ...)."""
    message: str = ""
    """Human-readable explanation."""
    pod: str | None = None
    """Name of the pod that failed (when one did)."""
    exit_code: int | None = None
    """Exit code of its main container."""
    log_tail: str | None = Field(default=None, max_length=8192)
    """Last lines of its log (or of its termination message)."""
    category: FailureCategory | None = None
    """What kind of failure it was (sft_operator.status.failure): Preempted, NodeLost, OOMKilled,
    CUDAOutOfMemory, NCCLTimeout, NCCLError, NoSpace, StorageUnavailable, DataError, ConfigError,
    ImagePull or Unknown."""
    advice: str | None = Field(default=None, max_length=1024)
    """One line on what to do about it."""
    retryable: bool | None = None
    """Whether running the same spec again can pass (the backends retry these without a change)."""


Phase = Literal["Pending", "Running", "Succeeded", "Failed", "Suspended"]
