"""Errors the user can fix, each with the reason the operator shows in the SFTRun status."""

from __future__ import annotations

from sft_common.config import ConfigError
from sft_common.result import Reason


class TrainInputError(ConfigError):
    """Bad input to the trainer (data, checkpoint, override): exit 2 with a specific reason."""

    reason = "InvalidConfig"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class DataError(TrainInputError):
    reason = "DataNotFound"


class PackSizeMismatch(TrainInputError):
    reason = "PackSizeMismatch"


class CheckpointNotFound(TrainInputError):
    reason = "CheckpointNotFound"


class InvalidOverride(TrainInputError):
    reason = "InvalidOverride"


class CheckpointMismatch(TrainInputError):
    """A checkpoint that is not this run's to resume: written by a run of another identity (the ledger's
    drift guard) or of another kind (LoRA adapters vs full weights, the pre-checks)."""

    reason = Reason.CHECKPOINT_MISMATCH


class PadMultipleMismatch(TrainInputError):
    """The data's per-sub-sequence padding does not fit the parallelism (context parallelism)."""

    reason = "PadMultipleMismatch"
