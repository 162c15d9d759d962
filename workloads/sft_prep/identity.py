"""Which run is this? The config hash over every data-defining input, and the run id.

``config_hash`` covers what changes the bytes of the output: dataset specs and their listed files
(URI and size, so replacing an input file changes the hash), the tokenizer (its serialized vocabulary
and rules, not just its name), the chat template text, packing and Parquet settings, seed, shard
count, split ratios and ``sample``. It leaves out ``output_dir``, ``force`` and W&B settings.

Runs and what happens to old outputs:

* same hash, no ``--force``: receipts of any earlier run with that hash count, so a rerun resumes
  or, when ``metadata.json`` already carries the hash, is a no-op;
* changed hash: a new run in the same ``output_dir``. Before any shard is written, the old
  ``metadata.json`` (the commit marker) is moved to ``history/`` and ``blend.json`` removed, so no
  reader ever sees a mix of two configs as finished data; shards are replaced in place and files the
  new plan does not produce are deleted when the new run commits;
* ``--force``: run id = hash(config hash, force token); only receipts with that run id count. The
  token is ``$SFT_RUN_ID`` when set (all workers of one distributed run must share it: the operator
  sets it per Job), else a fresh random id for a single-process run.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sft_common.config import ConfigError
from sft_prep.config import DatasetSpec, PrepConfig
from sft_prep.readers import SourceFile

#: Bump when the meaning of the output changes (so old receipts stop counting).
OUTPUT_FORMAT = 1


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Identity:
    config_hash: str
    run_id: str
    forced: bool
    tokenizer: dict[str, Any]
    chat_template: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "config_hash": self.config_hash,
            "run_id": self.run_id,
            "forced": self.forced,
            "tokenizer": self.tokenizer,
            "chat_template": self.chat_template,
        }


def data_fingerprint(
    cfg: PrepConfig,
    datasets: Sequence[tuple[DatasetSpec, Sequence[SourceFile]]],
    tokenizer: Mapping[str, Any],
    chat_template: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "output_format": OUTPUT_FORMAT,
        "datasets": [
            {
                **spec.model_dump(mode="json"),
                "files": [[f.uri, f.size] for f in files],
            }
            for spec, files in datasets
        ],
        "tokenizer": dict(tokenizer),
        "chat_template": dict(chat_template),
        "pack_size": cfg.pack_size,
        "doc_limit": cfg.doc_limit,
        "algorithm": cfg.algorithm,
        "seed": cfg.seed,
        "num_shards": cfg.num_shards,
        "valid_ratio": cfg.valid_ratio,
        "test_ratio": cfg.test_ratio,
        "parquet_row_group_size": cfg.parquet_row_group_size,
        "parquet_compression": cfg.parquet_compression,
        "sample": cfg.sample,
        "max_row_bytes": cfg.max_row_bytes,
        # Only when set, so that the hash (and resumption) of unpadded runs is what it was before.
        **({"pad_seq_to_mult": cfg.pad_seq_to_mult} if cfg.pad_seq_to_mult > 1 else {}),
    }


def make_identity(
    cfg: PrepConfig,
    datasets: Sequence[tuple[DatasetSpec, Sequence[SourceFile]]],
    tokenizer: Mapping[str, Any],
    chat_template: Mapping[str, Any],
    num_workers: int,
    env: Mapping[str, str] | None = None,
) -> Identity:
    env = os.environ if env is None else env
    config_hash = _digest(data_fingerprint(cfg, datasets, tokenizer, chat_template))[:16]
    run_id = config_hash
    if cfg.force:
        token = env.get("SFT_RUN_ID")
        if not token:
            if num_workers > 1:
                raise ConfigError(
                    "force: with --num-workers > 1 every worker must agree on the new run; set the same "
                    "SFT_RUN_ID environment variable on all workers (e.g. the Job's uid)"
                )
            token = uuid.uuid4().hex
        run_id = _digest([config_hash, token])[:16]
    return Identity(config_hash, run_id, cfg.force, dict(tokenizer), dict(chat_template))
