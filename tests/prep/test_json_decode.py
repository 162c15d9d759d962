"""The JSONL fast path (orjson) decodes every line exactly as the ``json`` path did: same rows, same
counted bad rows with the same reason and message.

orjson differs from ``json`` on some inputs (it refuses NaN, a UTF-8 BOM, lone surrogates, nesting
over 1024 levels, and turns integers beyond 64 bits into floats: see orjson's README, "Deserialize");
``readers.decode_line`` must hide every difference.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sft_prep import chat
from sft_prep.chat import RowError, parse_json_row
from sft_prep.readers import decode_line


def reference(line: bytes) -> Any:
    """What sft-prep decoded before orjson: ``json`` via parse_json_row."""
    try:
        return parse_json_row(line)
    except RowError as err:
        return err


def same(line: bytes) -> None:
    got, want = decode_line(line), reference(line)
    if isinstance(want, RowError):
        assert isinstance(got, RowError), (line, got)
        assert (got.reason, got.detail) == (want.reason, want.detail)
    else:
        # repr tells int from float, -0.0 from 0.0, and compares NaN
        assert repr(got) == repr(want), line


TRICKY = [
    b'{"messages": [{"role": "user", "content": "hi"}]}',
    b'{"id": 123456789012345678901234567890}',  # orjson: 1.2345678901234568e+29
    b'{"id": -9223372036854775809}',  # below int64
    b'{"id": 18446744073709551616}',  # above uint64
    b'{"id": 18446744073709551615}',
    b'{"id": 9223372036854775807}',
    b'{"x": 12345678901234567890.5}',
    b'{"x": 1e400}',  # json: inf; orjson refuses
    b'{"x": -1e400}',
    b'{"x": NaN}',
    b'{"x": Infinity}',
    b'{"x": -0.0}',
    b'{"x": 1.5e-400}',
    b'{"x": 0.1, "y": 1E2, "z": 2e0}',
    b'{"a": 1, "a": 2}',
    b'\xef\xbb\xbf{"a": 1}',  # a BOM inside a line: json drops it, orjson refuses
    b'{"a": "\\ud800"}',  # lone high surrogate escape: bad_text
    b'{"a": "\\udc00"}',
    b'{"\\ud800": 1}',
    b'{"a": "\\ud800\\u0041"}',
    b'{"a": "\\ud83d\\ude00"}',  # a valid pair
    b'{"a": "\\\\ud800"}',  # an escaped backslash, not a surrogate
    b'{"a": "\xed\xa0\x80"}',  # a surrogate as UTF-8 bytes
    b'{"a": "\xc3"}',  # truncated UTF-8
    b'{"a": "\xff"}',
    b'{"a": "\t"}',  # raw control character
    b'{"a": "\\u0000"}',
    b'\x0c{"a": 1}',
    b'{"a": 1}\x0b',
    b'{"a": 1}\x00',
    b' \t{"a": 1}\r ',
    b'{"a": 01}',
    b'{"a": 1,}',
    b'{"a": [1, 2,]}',
    b"{'a': 1}",
    b'{"a": tru}',
    b"[1, 2]",
    b'"text"',
    b"42",
    b"null",
    b"{}",
    b'{"a": 1} {"b": 2}',
    b'{"a": ' + b"[" * 1100 + b"]" * 1100 + b"}",  # beyond orjson's and json's depth
    b'{"a": ' + b"[" * 1030 + b"]" * 1030 + b"}",  # beyond orjson's 1024, within json's
    b'{"a": ' + b"[" * 600 + b"]" * 600 + b"}",
    b'{"a": "' + "é€😀".encode() * 50 + b'"}',
]


@pytest.mark.parametrize("line", TRICKY, ids=range(len(TRICKY)))
def test_tricky_lines_decode_as_with_json(line: bytes) -> None:
    same(line)


def test_the_tricky_lines_do_differ_between_the_parsers() -> None:
    """Control: orjson alone would change values or reasons on these, so the test above checks the
    fallback, not two parsers that happen to agree."""
    differ = 0
    for line in TRICKY:
        try:
            fast: Any = orjson.loads(line)
        except orjson.JSONDecodeError:
            fast = "error"
        try:
            slow: Any = json.loads(line)
        except (ValueError, RecursionError):
            slow = "error"
        differ += repr(fast) != repr(slow)
    assert differ >= 10


def test_a_plain_row_does_not_go_through_json(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("json.loads used on a row orjson decodes")

    monkeypatch.setattr(chat.json, "loads", refuse)
    assert decode_line(b'{"messages": [{"role": "user", "content": "hi"}], "n": 5}') == {
        "messages": [{"role": "user", "content": "hi"}],
        "n": 5,
    }


_text = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["\ud800", "\udfff", "a\ud83dz", "\\ud800", "😀", "\u2028", "\x00", '"\\']
)
_number = (
    st.integers()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
)
_value = st.recursive(
    st.none() | st.booleans() | _number | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(row=st.dictionaries(_text, _value, max_size=5), ascii_only=st.booleans())
def test_any_row_decodes_as_with_json(row: dict[str, Any], ascii_only: bool) -> None:
    text = json.dumps(row, ensure_ascii=ascii_only)
    same(text.encode("utf-8", "surrogatepass"))
