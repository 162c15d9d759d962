"""What a training run reports back, whichever engine ran it."""

from __future__ import annotations

from dataclasses import dataclass, field

from sft_common import result


class Preempted(Exception):
    """SIGTERM: every rank finished its step and a checkpoint of that iteration is saved (exit 143)."""

    def __init__(self, iteration: int, checkpoint: str | None, info: result.CheckpointInfo | None) -> None:
        where = f"checkpoint {checkpoint} saved, a rerun resumes there" if checkpoint else "nothing saved"
        super().__init__(f"preempted (SIGTERM) at iteration {iteration}; {where}")
        self.iteration = iteration
        self.checkpoint = checkpoint
        self.info = info


@dataclass
class TrainResult:
    checkpoint: str | None
    last_iteration: int
    final_loss: float | None
    losses: list[tuple[int, float]] = field(default_factory=list)
    hf_export: str | None = None
    finished: bool = True
    validation_loss: float | None = None
    start_iteration: int | None = None
    """Where this process started (resumed from a checkpoint), when the engine knows it."""
    checkpoints: result.CheckpointInfo | None = None
    """The newest complete checkpoint (the ledger's view), when the engine knows it."""

    def summary(self) -> result.TrainResult:
        """The trainer's termination message (the operator copies it into status.outputs)."""
        return result.TrainResult(
            checkpoint=self.checkpoint,
            last_iteration=self.last_iteration,
            final_loss=self.final_loss,
            hf_export=self.hf_export,
            finished=self.finished,
            checkpoints=self.checkpoints,
        )
