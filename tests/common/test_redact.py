"""sft_common.redact: credentials never reach status, Events or logs.

Fixtures are built at run time from obviously fake parts (``FAKE`` repeated), so no file in the
repository holds anything shaped like a live credential, and secret scanners stay quiet.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from sft_common.redact import REDACTED, install_log_redaction, redact, redact_value
from sft_common.result import report_failure, run_main


def fake(prefix: str, length: int, alphabet: str = "FAKE0") -> str:
    """``prefix`` + ``length`` characters of an obviously fake pattern."""
    return prefix + (alphabet * length)[:length]


PASSWORD = fake("pw-", 12, "notreal")
AWS_KEY_ID = fake("AKIA", 16, "TESTONLY")
AWS_SECRET = fake("", 40, "fakeSecret")
HF_TOKEN = fake("hf_", 34, "fakeToken")
GH_TOKEN = fake("ghp_", 36, "fakeGit")
WANDB_KEY = fake("", 40, "0123456789abcdef")
BEARER = fake("", 24, "fake.bearer-")
JWT = "eyJ" + "fakeHeader" + ".eyJ" + "fakePayload" + "." + "fakeSignature"
SECRETS = (PASSWORD, AWS_KEY_ID, AWS_SECRET, HF_TOKEN, GH_TOKEN, WANDB_KEY, BEARER, JWT, "fakeHeader")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            f"ClientError: could not connect to http://alice:{PASSWORD}@minio.local:9000/bucket",
            f"ClientError: could not connect to http://{REDACTED}@minio.local:9000/bucket",
        ),
        (f"git clone https://{GH_TOKEN}@github.com/o/r", f"git clone https://{REDACTED}@github.com/o/r"),
        (f"access key {AWS_KEY_ID} is not valid", f"access key {REDACTED} is not valid"),
        (f"AWS_SECRET_ACCESS_KEY={AWS_SECRET} python x", f"AWS_SECRET_ACCESS_KEY={REDACTED} python x"),
        (f'{{"aws_secret_access_key": "{AWS_SECRET}"}}', f'{{"aws_secret_access_key": "{REDACTED}"}}'),
        (f"401 for token {HF_TOKEN}", f"401 for token {REDACTED}"),
        (f"HF_TOKEN: {HF_TOKEN}", f"HF_TOKEN: {REDACTED}"),
        (f"Authorization: Bearer {BEARER}", f"Authorization: Bearer {REDACTED}"),
        (
            f"headers={{'Authorization': 'Basic {BEARER}'}}",
            f"headers={{'Authorization': 'Basic {REDACTED}'}}",
        ),
        (f"wandb: ERROR API key {WANDB_KEY} rejected", f"wandb: ERROR API key {REDACTED} rejected"),
        (f"WANDB_API_KEY={WANDB_KEY}", f"WANDB_API_KEY={REDACTED}"),
        (
            f"s3://b/k?X-Amz-Signature={WANDB_KEY}&X-Amz-Date=2026",
            f"s3://b/k?X-Amz-Signature={REDACTED}&X-Amz-Date=2026",
        ),
        (f"token {JWT} expired", f"token {REDACTED} expired"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nfakefakefake\n-----END RSA PRIVATE KEY----- after",
            f"{REDACTED} after",
        ),
        (f"db password={PASSWORD}; retry", f"db password={REDACTED}; retry"),
    ],
)
def test_credentials_are_redacted(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert redact(expected) == expected, "redaction must be idempotent"


@pytest.mark.parametrize(
    "text",
    [
        "packed 1200 sequences, num_tokens=4096 max_tokens: 8192 total_tokens=1.2M",
        "tokenizer has no pad_token: set tokenizer.padToken; eos_token: <|im_end|>",
        "use valueFrom.secretKeyRef: the Secret hf-token holds HF_TOKEN",
        "s3://bucket/path@v2 and hf://org/model and ghcr.io/sft-operator/sft-prep@sha256:" + "ab" * 32,
        "spec hash 3f2a9c01d4e5, dataset fingerprint " + "0f" * 32,
        "password: None (not set)",
        "outputDir: use an s3:// URI",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_redact_value_walks_json_like_data() -> None:
    status = {
        "phase": "Failed",
        "observedGeneration": 3,
        "failure": {"message": f"http://u:{PASSWORD}@h/x", "logTail": f"HF_TOKEN={HF_TOKEN}\nbye"},
        "conditions": [{"type": "Ready", "message": f"Bearer {BEARER}"}],
    }
    out = redact_value(status)
    assert out["observedGeneration"] == 3 and out["phase"] == "Failed"
    assert not any(secret in json.dumps(out) for secret in SECRETS)
    assert status["failure"]["message"].endswith("@h/x") and PASSWORD in json.dumps(status), "input kept"


@pytest.fixture
def log_factory() -> Iterator[None]:
    previous = logging.getLogRecordFactory()
    try:
        yield
    finally:
        logging.setLogRecordFactory(previous)


def test_log_records_are_redacted_for_every_handler(
    log_factory: None, caplog: pytest.LogCaptureFixture
) -> None:
    install_log_redaction()
    install_log_redaction()  # idempotent: one wrapper
    log = logging.getLogger("sft_test.redact")
    with caplog.at_level(logging.INFO, logger="sft_test.redact"):
        log.warning("no log for %s: %s", "pod-1", f"GET http://bob:{PASSWORD}@api/x")
        try:
            raise RuntimeError(f"boom {HF_TOKEN}")
        except RuntimeError:
            log.exception("failed")
    text = caplog.text
    assert "pod-1" in text and "boom" in text and "RuntimeError" in text
    assert PASSWORD not in text and HF_TOKEN not in text
    assert caplog.records[0].getMessage() == f"no log for pod-1: GET http://{REDACTED}@api/x"


def test_the_termination_message_and_stderr_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    def main(argv: list[str]) -> int:
        raise ConnectionError(f"could not reach http://alice:{PASSWORD}@minio:9000 with {AWS_KEY_ID}")

    assert run_main(main, []) == 1
    captured = capsys.readouterr()
    termination = Path(os.environ["SFT_TERMINATION_LOG"]).read_text()
    for text in (captured.err, captured.out, termination):
        assert PASSWORD not in text and AWS_KEY_ID not in text
    assert json.loads(termination)["message"] == (
        f"could not reach http://{REDACTED}@minio:9000 with {REDACTED}"
    )
    report_failure("X", "ok", examples=[f"line with {HF_TOKEN}"])
    assert HF_TOKEN not in Path(os.environ["SFT_TERMINATION_LOG"]).read_text()
