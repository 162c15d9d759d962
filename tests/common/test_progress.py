from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sft_common.progress import OwnerStatusPatcher, Progress, format_duration, format_number, human_duration


def test_formatting() -> None:
    assert format_number(1_234_567) == "1.23M"
    assert format_number(12) == "12"
    assert format_duration(3725) == "1:02:05"
    assert format_duration(None) == "--:--"
    # a loss reads as the trainer's log line prints it (4 decimals); a learning rate as 1.234e-03
    assert format_number(4.73712) == "4.7371" and format_number(0.0012345) == "1.234e-03"
    assert format_number(349.61) == "349.6"


def test_the_bar_shows_a_loss_as_the_log_line_does() -> None:
    out = io.StringIO()
    progress = Progress("train", total=10, unit="iterations", stream=out, mode="bar", interval=0, owner=False)
    progress.update(completed=5, loss=4.7371, learning_rate=0.0029876)
    progress.close()
    assert "loss 4.7371" in out.getvalue() and "learning_rate 2.988e-03" in out.getvalue()


def test_json_lines_when_not_a_tty() -> None:
    out = io.StringIO()
    progress = Progress("prep", total=10, unit="rows", rates=("tokens",), stream=out, interval=0, owner=False)
    progress.update(advance=4, tokens=400)
    progress.close(tokens=1000)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert lines[0]["event"] == "progress" and lines[0]["completed"] == 4 and lines[0]["total"] == 10
    assert lines[0]["percent"] == 40.0
    assert "tokensPerSecond" in lines[0]
    assert lines[-1]["event"] == "progress_done" and lines[-1]["tokens"] == 1000


def test_json_lines_are_rate_limited() -> None:
    out = io.StringIO()
    progress = Progress("p", total=1000, stream=out, interval=3600, owner=False)
    for _ in range(1000):
        progress.update(advance=1)
    progress.close()
    # the first update emits (last emit at t=0 is an hour before), then only the final line
    assert len(out.getvalue().splitlines()) == 2


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_on_a_tty() -> None:
    out = _Tty()
    progress = Progress("train", total=100, unit="it", stream=out, interval=0, owner=False)
    progress.update(50, loss=1.5)
    progress.close()
    text = out.getvalue()
    assert "\r" in text and "50.0%" in text and "loss 1.5" in text and text.endswith("\n")


def test_snapshot_is_camel_case() -> None:
    progress = Progress("t", total=4, stream=io.StringIO(), owner=False)
    progress.update(1, learning_rate=1e-4)
    snap = progress.snapshot()
    assert snap["learningRate"] == 1e-4 and snap["completed"] == 1 and "updatedAt" in snap


@pytest.fixture
def api() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(
                {
                    "path": self.path,
                    "type": self.headers["Content-Type"],
                    "auth": self.headers.get("Authorization"),
                    "body": json.loads(body),
                }
            )
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_owner_patch_from_env(api: tuple[str, list[dict[str, Any]]], tmp_path: Path) -> None:
    url, seen = api
    token = tmp_path / "token"
    token.write_text("tok123\n")
    env = {
        "SFT_OWNER_API": url,
        "SFT_OWNER_PLURAL": "sftdatapreps",
        "SFT_OWNER_NAMESPACE": "ml",
        "SFT_OWNER_NAME": "demo",
        "SFT_OWNER_TOKEN_FILE": str(token),
        "SFT_PROGRESS_INTERVAL": "3600",
    }
    patcher = OwnerStatusPatcher.from_env(env, subkey="2")
    assert patcher is not None
    progress = Progress("prep", total=8, unit="shards", stream=io.StringIO(), owner=patcher)
    for i in range(1, 9):
        progress.update(i)
    progress.close()
    # rate-limited: the first update, then the forced final one
    assert len(seen) in (1, 2)
    last = seen[-1]
    assert last["path"] == "/apis/sft.dev/v1alpha1/namespaces/ml/sftdatapreps/demo/status"
    assert last["type"] == "application/merge-patch+json"
    assert last["auth"] == "Bearer tok123"
    assert last["body"]["status"]["progress"]["workers"]["2"]["completed"] == 8


def test_no_owner_without_env() -> None:
    assert OwnerStatusPatcher.from_env({}) is None


def test_owner_patch_failure_is_not_fatal(capsys: pytest.CaptureFixture[str]) -> None:
    patcher = OwnerStatusPatcher("http://127.0.0.1:9/apis/x/status", None, None, interval=0)
    progress = Progress("p", total=2, stream=io.StringIO(), owner=patcher)
    progress.update(1)
    progress.close()
    assert patcher.errors >= 1 and patcher.sent == 0
    assert "could not patch owner status" in capsys.readouterr().err


def test_eta_of_a_resumed_run_counts_only_this_processes_work(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([100.0])  # the start; every later read of the clock is 10 s on
    monkeypatch.setattr("sft_common.progress.time.monotonic", lambda: next(clock, 110.0))
    progress = Progress("train", total=100, initial=50, stream=io.StringIO(), owner=False)
    progress.completed = 60  # 10 iterations in 10 s here; 40 left -> 40 s, not 40 * 10/60
    assert progress.eta() == pytest.approx(40.0)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        # the thresholds of Kubernetes' HumanDuration (k8s.io/apimachinery/pkg/util/duration), as kubectl
        # prints ages: seconds below 2m, m+s below 10m, m below 3h, h+m below 8h, h below 2d, ...
        (0, "0s"),
        (119, "119s"),
        (120, "2m"),
        (200, "3m20s"),
        (600, "10m"),
        (7500, "125m"),
        (3 * 3600 + 300, "3h5m"),
        (8 * 3600 + 59, "8h"),
        (2 * 86400 + 3 * 3600, "2d3h"),
        (30 * 86400, "30d"),
        (3 * 365 * 86400 + 86400, "3y1d"),
        (None, ""),
        (float("inf"), ""),
        (-5, "0s"),
    ],
)
def test_human_duration_reads_like_kubectl(seconds: float | None, text: str) -> None:
    assert human_duration(seconds) == text


def test_format_number_gives_tokens_a_unit() -> None:
    assert format_number(1_180_000_000) == "1.18G" and format_number(512) == "512"
