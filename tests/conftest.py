"""Suite-wide settings (tests never write a real termination log or patch a real API server) and
the fixtures several test folders share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from s3server import S3Server


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    for var in list(__import__("os").environ):
        if var.startswith("SFT_OWNER_") or var.startswith("WANDB_"):
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SFT_TERMINATION_LOG", str(tmp_path_factory.mktemp("term") / "termination-log"))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def s3_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A fresh moto S3 server on a free port, with the AWS env vars pointing at it (fake credentials)
    and ``sft_common.storage`` clients reset before and after, so no test sees another's client."""
    from moto.server import ThreadedMotoServer

    from sft_common import storage

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    storage.reset_clients()
    try:
        yield S3Server(endpoint)
    finally:
        storage.reset_clients()
        server.stop()
