"""A local S3 (moto) for tests; the ``s3_server`` fixture in tests/conftest.py starts one per test.

The class lives here, importable as ``s3server`` (tests/ is on pytest's pythonpath), so fixtures in
any test folder can annotate ``s3_server: S3Server``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class S3Server:
    """A local S3 endpoint that ``sft_common.storage`` reaches through the standard AWS env vars."""

    endpoint: str
    """``http://127.0.0.1:<free port>``."""

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name``; returns ``s3://name``."""
        from sft_common import storage

        storage._s3_client().create_bucket(Bucket=name)
        return f"s3://{name}"
