"""``sft_common.config.dump_yaml``: libyaml's speed, PyYAML's very text (issue 23).

The operator renders a ``config.yaml`` per CR into a ConfigMap; its text must not depend on whether
PyYAML was built with libyaml. Facts about the peer these tests pin (PyYAML 6, ``yaml/emitter.py``
vs libyaml's ``emitter.c``): the two emitters fold long double-quoted scalars at different places
and write some mapping keys in the explicit ``? key`` form at different lengths; plain and
single-quoted scalars of one line come out the same.
"""

from __future__ import annotations

import random
import string
from typing import Any

import pytest
import yaml

from sft_common.config import _libyaml_safe, dump_yaml, to_yaml

needs_libyaml = pytest.mark.skipif(not yaml.__with_libyaml__, reason="PyYAML built without libyaml")

WORDS = ["a", "bb", "- x", ": y", "#z", "true", "null", "1e-4", "0x1f", "~", "yes", "on", "'q'", '"d"']
WORDS += ["{{ x }}", "{%- if %}", " ", "---", "...", "|", "> ", "-", "?", ":", "''", "&a", "*b", "!t", "%"]
KEYS = ["a", "b_c", "name", "x.y", "chat_template", "-", "1", "true", "null", "-a", "on", "0x1f", "1e-4"]
SCALARS = [None, True, False, 0, -7, 10**12, 1e-4, 0.1, -0.0, float("inf"), float("nan"), 3.0e300]


def one_line(rng: random.Random) -> str:
    size = rng.choice([0, 1, 2, 5, 20, 79, 80, 81, 127, 128, 129, 300, 1000])
    if rng.random() < 0.5:
        return "".join(rng.choice(string.printable[:94] + " ") for _ in range(size))
    return "".join(rng.choice(WORDS) + rng.choice(["", " ", "  "]) for _ in range(max(1, size // 3)))[:size]


def value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.5:
        return rng.choice([one_line(rng), rng.random() * 10 ** rng.randint(-10, 10), *SCALARS])
    if roll < 0.75:
        return [value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(KEYS): value(rng, depth + 1) for _ in range(rng.randint(0, 4))}


@needs_libyaml
def test_libyaml_and_pyyaml_write_the_same_text_for_what_goes_to_libyaml() -> None:
    rng = random.Random(23)
    checked = 0
    for _ in range(1500):
        data = {"k": value(rng), "l": [value(rng) for _ in range(3)]}
        assert _libyaml_safe(data)
        expected = yaml.safe_dump(data, sort_keys=False)
        assert yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False) == expected
        assert dump_yaml(data) == expected
        checked += 1
    assert checked == 1500


OTHERS = {
    "a multi-line chat template": "{% for m in messages %}\n  <|im_start|>{{ m.role }} \n{% endfor %}" * 5,
    "tabs": "\t".join("x" * 10 for _ in range(30)),
    "non-ASCII": " ".join("é中😀" for _ in range(60)),
    "a control character": "\x01abc " * 40,
}


@needs_libyaml
@pytest.mark.parametrize("text", OTHERS.values(), ids=OTHERS.keys())
def test_what_libyaml_would_write_differently_goes_to_pyyaml(text: str) -> None:
    for data in ({"chat_template": text}, {text[:60]: 1}, {"": 1}, {"k" * 200: [text]}):
        assert not _libyaml_safe(data)
        assert dump_yaml(data) == yaml.safe_dump(data, sort_keys=False)


@needs_libyaml
def test_libyaml_does_write_differently_there() -> None:
    """Why the fallback exists (if libyaml ever emits the same, the guard may widen)."""
    data = {"chat_template": OTHERS["tabs"]}
    assert yaml.dump(data, Dumper=yaml.CSafeDumper, sort_keys=False) != yaml.safe_dump(data, sort_keys=False)


def test_a_rendered_prep_config_takes_the_fast_path() -> None:
    from sft_operator.api.dataprep import SFTDataPrepSpec

    spec = SFTDataPrepSpec.model_validate(
        {
            "datasets": [{"name": "chats", "path": "s3://bucket/chats.jsonl"}],
            "tokenizer": {"model": "s3://bucket/tokenizer"},
            "outputDir": "s3://bucket/out",
        }
    )
    config = spec.prep_config()
    data = config.model_dump(mode="json", by_alias=False)
    assert _libyaml_safe(data)
    assert to_yaml(config) == yaml.safe_dump(data, sort_keys=False)
    assert yaml.safe_load(to_yaml(config)) == data
