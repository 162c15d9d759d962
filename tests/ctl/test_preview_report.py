"""``sftctl preview`` and ``sftctl report`` on data really packed by sft-prep (the bundled chats)."""

from __future__ import annotations

import json
import shutil
import subprocess
from itertools import pairwise
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from sft_operator.ctl import preview, report
from sft_operator.ctl.main import main
from sft_prep.cli import main as sft_prep
from sft_prep.tokenizer import load_tokenizer

SAMPLES = Path(__file__).resolve().parents[2] / "workloads" / "sft_prep" / "samples"
CHATML_WITHOUT_REASONING = (
    "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content or '' }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def prep(out: Path, template: str = "nano3") -> Path:
    config = {
        "datasets": [{"name": "chats", "path": str(SAMPLES / "chats.jsonl")}],
        "tokenizer": {"model": str(SAMPLES / "tokenizer")},
        "chat_template": template,
        "pack_size": 512,
        "num_shards": 4,
        "valid_ratio": 0.25,
        "output_dir": str(out),
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    assert sft_prep(["--config", str(path)]) == 0
    return out


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prep(tmp_path_factory.mktemp("prep") / "packed")


def test_preview_marks_exactly_the_trained_labels_and_every_sub_sequence(
    packed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Independently of the preview's own code: the labels Megatron-Bridge trains in a bin are
    input_ids[j+1] for every j with loss_mask[j] = 1 (never across a sub-sequence start) and
    input_ids[j] not eos (0.6.2's packed collate: ``loss_mask[tokens == eos_id] = 0``, mirrored by
    sft_train.packed_data.split_row for the hf engine); the marked text must decode to exactly those
    tokens, sub-sequence by sub-sequence."""
    shard = sorted((packed / "splits" / "train").glob("*.parquet"))[0]
    row = pq.read_table(shard).slice(2, 1).to_pylist()[0]
    assert main(["preview", str(packed), "--bin", "2", "--color", "never"]) == 0
    out = capsys.readouterr().out
    starts = row["seq_start_id"]
    assert out.count("── sub-sequence ") == len(starts) > 1
    tok = load_tokenizer(str(SAMPLES / "tokenizer"))
    eos = tok.encode_many(["<|im_end|>"])[0][0]
    ids, mask = row["input_ids"], row["loss_mask"]
    bounds = [*starts, len(ids)]
    expected = []
    for begin, end in pairwise(bounds):
        labels = [ids[j + 1] for j in range(begin, end - 1) if mask[j] and ids[j] != eos]
        expected.append(labels)
    body = out.split("── sub-sequence ")[1:]
    for part, labels in zip(body, expected, strict=True):
        marked = "".join(piece.split(preview.CLOSE)[0] for piece in part.split(preview.OPEN)[1:])
        assert marked == tok.decode(labels)
        assert f"{len(labels)} trained" in part.splitlines()[0]
    assert f"{sum(map(len, expected))} trained tokens" in out
    assert preview.OPEN in out and "\x1b[" not in out
    assert main(["preview", str(packed), "--bin", "2", "--color", "always"]) == 0
    coloured = capsys.readouterr().out
    assert preview.GREEN in coloured and preview.OPEN not in coloured.split("legend")[1].split("\n", 1)[1]


def test_preview_does_not_mark_the_newline_after_im_end_as_trained(
    packed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Both engines drop the label after eos, so the ``\\n`` closing an assistant turn is context: the
    preview marked it trained (issue 21 point 11), though sft-prep's unrolled mask covers it."""
    assert main(["preview", str(packed), "--bin", "0", "--color", "never"]) == 0
    out = capsys.readouterr().out
    assert f"<|im_end|>{preview.CLOSE}\n" in out
    assert f"<|im_end|>\n{preview.CLOSE}" not in out


def test_preview_errors_name_what_exists(packed: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["preview", str(packed), "--bin", "100000"]) == 1
    assert "has bins 0–" in capsys.readouterr().err
    assert main(["preview", str(packed), "--split", "test"]) == 1
    assert "has no test shards" in capsys.readouterr().err
    assert main(["preview", str(packed.parent)]) == 1
    assert "has no metadata.json" in capsys.readouterr().err


def test_preview_warns_when_a_custom_template_dropped_reasoning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    template = tmp_path / "plain.jinja"
    template.write_text(CHATML_WITHOUT_REASONING)
    out = prep(tmp_path / "plain", str(template))
    meta = json.loads((out / "metadata.json").read_text())
    dropped = meta["template_dropped_fields"]
    assert dropped["reasoning_content"] > 0 and dropped["tool_calls"] > 0
    assert main(["preview", str(out), "--color", "never"]) == 0
    text = capsys.readouterr().out
    assert f"dropped reasoning_content from {dropped['reasoning_content']} message(s)" in text


def run_dir(tmp_path: Path, packed: Path) -> Path:
    """A `sftctl run --local` state dir as the local runner leaves it, with the metrics the hf engine
    writes (one line per iteration, validation lines)."""
    folder = tmp_path / "sftrun" / "r"
    folder.mkdir(parents=True)
    metrics = folder / "metrics.jsonl"
    lines = []
    for i in range(1, 21):
        lines.append(
            {
                "iteration": i,
                "loss": 5.0 - i * 0.1,
                "lr": 1e-3 * min(i, 5) / 5,
                "tokens": 2000,
                "tokens_per_second": 300.0 + i,
                "elapsed_seconds": i * 6.0,
            }
        )
        if i % 10 == 0:
            lines.append({"iteration": i, "validation_loss": 4.5 - i * 0.05})
    metrics.write_text("".join(json.dumps(x) + "\n" for x in lines))
    (folder / "config.yaml").write_text(
        yaml.safe_dump(
            {"data": {"path": str(packed)}, "logging": {"log_interval": 5, "metrics_file": str(metrics)}}
        )
    )
    (folder / "status.json").write_text(
        json.dumps({"kind": "SFTRun", "metadata": {"name": "r"}, "status": {}})
    )
    return folder


def test_report_draws_the_curves_and_data_counts(
    tmp_path: Path, packed: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = run_dir(tmp_path, packed)
    assert main(["report", str(folder)]) == 0
    png, page = folder / "report.png", folder / "report.html"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    html = page.read_text()
    meta = json.loads((packed / "metadata.json").read_text())
    assert "SFTRun/r" in html and "4.7000 → 3.2000" in html  # the reported (window mean) losses
    for reason, count in meta["dropped"].items():
        assert f"<td>rows: {reason}</td><td class=num>{count:,}</td>" in html
    assert f"{meta['totals']['bins']:,}" in html
    assert reported_windows() == [(5, 4.7), (10, 4.2), (15, 3.7), (20, 3.2)]


def reported_windows() -> list[tuple[int, float]]:
    records = [{"iteration": i, "loss": 5.0 - i * 0.1} for i in range(1, 21)]
    return [(i, round(v, 4)) for i, v in report.reported_losses(records, 5)]


def test_report_says_what_it_could_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "only-metrics"
    folder.mkdir()
    (folder / "metrics.jsonl").write_text(json.dumps({"iteration": 1, "loss": 1.0}) + "\n")
    assert main(["report", str(folder)]) == 0
    assert "report.html" in capsys.readouterr().out
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["report", str(empty)]) == 1
    assert "is neither a `sftctl run --local` state dir" in capsys.readouterr().err


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_report_html_renders_in_headless_chromium_without_console_errors(
    tmp_path: Path, packed: Path
) -> None:
    """Headless Chromium, closed-network flags; console messages show as ``:CONSOLE:`` lines on
    stderr with --enable-logging=stderr. A broken page is checked too, so the check can fail."""
    folder = run_dir(tmp_path, packed)
    assert main(["report", str(folder)]) == 0

    def load(page: Path) -> tuple[str, str]:
        result = subprocess.run(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
                f"--user-data-dir={tmp_path / 'profile'}",
                "--enable-logging=stderr",
                "--v=0",
                "--dump-dom",
                page.as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout, "\n".join(line for line in result.stderr.splitlines() if ":CONSOLE" in line)

    dom, console = load(folder / "report.html")
    assert 'data-rendered="ok"' in dom, dom[-2000:]  # the chart image decoded
    assert "<table" in dom and console == ""
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>missingFunction();</script></body></html>")
    _, console = load(broken)
    assert "missingFunction" in console


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]  # PNG signature, IHDR length/type, then width and height
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_report_throughput_is_over_the_last_iterations_not_since_start(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """20 slow iterations (1 s each) then 30 fast ones (0.1 s): the since-start mean the trainer
    logs says ~2.2k tokens/s at the end, the last 20 iterations ran at 10k; after a resume
    (elapsed_seconds restarts) the window restarts with it."""
    records, elapsed = [], 0.0
    for i in range(1, 51):
        elapsed += 1.0 if i <= 20 else 0.1
        records.append(
            {
                "iteration": i,
                "loss": 1.0,
                "tokens": 1000,
                "elapsed_seconds": round(elapsed, 3),
                "tokens_per_second": round(1000 * i / elapsed, 1),
            }
        )
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    rates, windowed = report.windowed_throughput(records)
    assert windowed and rates[-1] == (50, pytest.approx(10_000))
    assert records[-1]["tokens_per_second"] < 2_200
    assert main(["report", str(folder)]) == 0
    assert (
        "<th>tokens/s (last 20 iterations)</th><td>10,000 (iteration 50)</td>"
        in (folder / "report.html").read_text()
    )
    resumed = [*records, {"iteration": 51, "loss": 1.0, "tokens": 1000, "elapsed_seconds": 2.0}]
    assert report.windowed_throughput(resumed)[0][-1] == (51, pytest.approx(500))


def test_a_prep_only_report_has_no_empty_training_panels(
    packed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report"
    assert main(["report", str(packed), "--output-dir", str(out)]) == 0
    data = report.from_dir(packed)
    assert report.panels(data) == report.DATA_PANELS
    width, height = png_size(out / "report.png")
    assert height < width / 3  # one row of three charts (two rows before: loss, lr, tokens/s empty)
    html = (out / "report.html").read_text()
    assert "train loss" not in html and "tokens/s" not in html
