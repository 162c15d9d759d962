"""Optional W&B artifact (type ``SFTDataArtifact``) describing the prepared data, as the reference logs.

``wandb`` is imported only when ``wandb.project`` is set, and nothing here can fail the run: prepared
data is the product, the artifact is a convenience. Offline (``WANDB_MODE=offline``) the run is
recorded locally for a later ``wandb sync``. Credentials come from ``WANDB_API_KEY`` in the environment.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from sft_common import storage
from sft_prep.config import PrepConfig
from sft_prep.receipts import Layout

ARTIFACT_TYPE = "SFTDataArtifact"


def artifact_metadata(meta: Mapping[str, Any], layout: Layout) -> dict[str, Any]:
    """The small, searchable part of metadata.json that goes on the artifact."""
    return {
        "output_dir": layout.output_dir,
        "blend": layout.blend,
        "run_id": meta["run_id"],
        "config_hash": meta["config_hash"],
        "pack_size": meta["pack_size"],
        "tokenizer": meta["tokenizer"].get("model"),
        "chat_template": meta["chat_template"].get("name"),
        "totals": meta["totals"],
        "packing_efficiency": meta["packing_efficiency"],
        "packing_factor": meta["packing_factor"],
        "dropped": meta["dropped"],
    }


def log_artifact(cfg: PrepConfig, meta: Mapping[str, Any], layout: Layout) -> bool:
    """Log the artifact; True when logged. Any problem is a warning on stderr."""
    if not cfg.wandb.project:
        return False
    try:
        import wandb
    except ImportError:
        print(
            "warning: wandb.project is set but the wandb package is not installed; skipping the artifact",
            file=sys.stderr,
        )
        return False
    try:
        run = wandb.init(
            project=cfg.wandb.project,
            entity=cfg.wandb.entity,
            job_type="data-prep",
            config={"run_id": meta["run_id"], "config_hash": meta["config_hash"]},
            reinit=True,
        )
        artifact = wandb.Artifact(
            cfg.wandb.artifact_name, type=ARTIFACT_TYPE, metadata=artifact_metadata(meta, layout)
        )
        if storage.is_remote(layout.output_dir):
            artifact.add_reference(layout.output_dir.rstrip("/") + "/", checksum=False)
        else:
            for uri in (layout.blend, layout.metadata):
                artifact.add_file(uri[len("file://") :] if uri.startswith("file://") else uri)
        run.log_artifact(artifact)
        run.finish()
        return True
    except Exception as exc:  # never fatal, see module docstring
        print(f"warning: could not log the W&B artifact: {type(exc).__name__}: {exc}", file=sys.stderr)
        return False
