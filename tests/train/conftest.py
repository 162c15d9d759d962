"""Fixtures for the trainer tests (helpers live in trainfixtures.py)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from trainfixtures import PACK, build_tiny_llama, pack, random_conversation, write_prep_output

from s3server import S3Server

# Tiny models gain nothing from intra-op threads, and `pytest -n 2` on two cores would oversubscribe.
torch.set_num_threads(1)


@pytest.fixture
def make_data(tmp_path: Path) -> Callable[..., Path]:
    def make(
        name: str = "prep", n_conversations: int = 40, seed: int = 0, pack_size: int = PACK, valid: int = 0
    ) -> Path:
        rng = np.random.default_rng(seed)
        convs = [random_conversation(rng) for _ in range(n_conversations)]
        rows = pack(convs, pack_size)
        valid_rows = pack([random_conversation(rng) for _ in range(valid)], pack_size) if valid else []
        return write_prep_output(tmp_path / name, rows, valid_rows, pack_size)

    return make


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama saved as a Hugging Face checkpoint (read-only for tests)."""
    return build_tiny_llama(tmp_path_factory.mktemp("tiny-llama") / "model")


@pytest.fixture
def s3(s3_server: S3Server) -> str:
    """Bucket ``bkt`` on the suite's local S3 (tests/conftest.py); ``s3://bkt``."""
    return s3_server.create_bucket("bkt")
