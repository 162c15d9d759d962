"""What a training run reports back, whichever engine ran it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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

    def summary(self) -> dict[str, Any]:
        """The trainer's termination-message fields (camelCase, the operator copies them)."""
        out: dict[str, Any] = {
            "checkpoint": self.checkpoint,
            "lastIteration": self.last_iteration,
            "finalLoss": self.final_loss,
            "hfExport": self.hf_export,
        }
        if not self.finished:
            out["finished"] = False
        return out
