"""The typed status seam: who owns which status key is read from the status models (WORKLOAD
markers), a stored status is read into its model without failing on a part the model refuses, and
the patch is taken against what is stored."""

from __future__ import annotations

from sftrun_objects import T1, cr, pod, ptj

from sft_operator.api.dataprep import PrepProgress, SFTDataPrepStatus
from sft_operator.api.sftrun import SFTRunStatus
from sft_operator.backends.pytorchjob import BACKEND as pytorchjob
from sft_operator.status import patch
from sft_operator.status import sftrun as status
from sft_operator.status.pods import pod_state

NOW = "2026-11-25T11:00:00Z"
CREATED = ("Created", "True", "PyTorchJobCreated")
RUNNING = ("Running", "True", "PyTorchJobRunning")


def test_ownership_comes_from_the_models() -> None:
    """The operator owns only the printer-column keys of an SFTRun's progress (the trainer's rank 0
    patches the rest), and every progress key of an SFTDataPrep but the workers' own entries."""
    assert patch.shared(SFTRunStatus) == {"progress": frozenset({"iterations", "tokensText", "etaText"})}
    every = {f.alias or n for n, f in PrepProgress.model_fields.items()}
    assert patch.shared(SFTDataPrepStatus) == {"progress": frozenset(every - {"workers"})}


def test_a_bad_stored_part_is_dropped_not_fatal() -> None:
    """A progress.checkpoint the model refuses (written by another client) is ignored: the run keeps
    its recorded checkpoint and its other progress, as before the status was typed."""
    recorded = {"latestIteration": 10, "uri": "s3://bucket/ckpt/iter_0000010", "time": T1}
    stored = {
        "phase": "Running",
        "checkpoints": recorded,
        "progress": {"completed": 12, "total": 100, "checkpoint": {"latestIteration": "twelve"}},
    }
    parsed = patch.parse_status(SFTRunStatus, stored)
    assert (
        parsed.progress is not None and parsed.progress.completed == 12 and parsed.progress.checkpoint is None
    )
    assert stored["progress"]["checkpoint"] == {"latestIteration": "twelve"}  # the caller's dict is untouched
    owner = cr(status=stored)
    job = ptj(owner, [CREATED, RUNNING])
    pods = [pod_state(pod("Master", 0, "Running"), pytorchjob.container, pytorchjob.role)]
    new = status.derive(owner, job, pods, now=NOW)
    assert new.checkpoints is not None and new.checkpoints.latest_iteration == 10
    assert new.progress is not None and new.progress.iterations == "12/100"


def test_the_patch_turns_what_is_stored_into_the_new_status() -> None:
    """A key the operator no longer writes is deleted from the stored status even when the model would
    not have read it back (the diff is against the stored JSON)."""
    stored = {"phase": "Running", "iteration": 7}  # a key an older operator wrote, unknown to the model
    assert patch.parse_status(SFTRunStatus, stored).phase == "Running"
    assert patch.status_patch(stored, SFTRunStatus(phase="Running")) == {"iteration": None}
