from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field

from sft_common.config import ConfigError, ConfigModel, apply_overrides, load_config, parse_override, to_yaml


class Inner(ConfigModel):
    model: str
    """The model."""
    revision: str | None = None


class Item(ConfigModel):
    name: str
    weight: float = 1.0


class Cfg(ConfigModel):
    pack_size: int = Field(default=4096, ge=16)
    mode: str = "a"
    inner: Inner
    items: list[Item] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)


def test_parse_override_reads_yaml_scalars() -> None:
    assert parse_override("a.b=1e-4") == (["a", "b"], 1e-4)
    assert parse_override("x=true") == (["x"], True)
    assert parse_override("x=null") == (["x"], None)
    assert parse_override("x=[a, b]") == (["x"], ["a", "b"])
    assert parse_override("x=") == (["x"], "")
    assert parse_override("x=a=b") == (["x"], "a=b")


def test_parse_override_rejects_missing_equals() -> None:
    with pytest.raises(ConfigError, match=r"dotted\.key=value"):
        parse_override("pack_size")


def test_overrides_create_sections_and_list_items() -> None:
    data = apply_overrides({}, ["inner.model=m", "items.0.name=a", "items.1.name=b", "items.0.weight=2"])
    assert data == {"inner": {"model": "m"}, "items": [{"name": "a", "weight": 2}, {"name": "b"}]}


def test_overrides_do_not_mutate_input() -> None:
    base = {"inner": {"model": "m"}}
    apply_overrides(base, ["inner.model=n"])
    assert base == {"inner": {"model": "m"}}


def test_override_index_out_of_range_is_clear() -> None:
    with pytest.raises(ConfigError, match="out of range"):
        apply_overrides({"items": []}, ["items.3.name=a"])


def test_override_below_a_value_is_clear() -> None:
    with pytest.raises(ConfigError, match="is a value, not a section"):
        apply_overrides({"mode": "a"}, ["mode.x=1"])


def test_file_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("pack_size: 128\ninner:\n  model: tok\n")
    cfg = load_config(Cfg, path, ["pack_size=256"])
    assert cfg.pack_size == 256
    assert cfg.inner.model == "tok"


def test_camel_case_keys_are_accepted() -> None:
    cfg = load_config(Cfg, None, ["packSize=64", "inner.model=x"])
    assert cfg.pack_size == 64


def test_unknown_key_names_key_hint_and_choices() -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(Cfg, None, ["inner.modle=x"])
    text = str(exc.value)
    assert "unknown key 'inner.modle'" in text
    assert "did you mean 'inner.model'" in text
    assert "valid keys here: model, revision" in text


def test_unknown_key_inside_list_item() -> None:
    with pytest.raises(ConfigError, match=r"unknown key 'items.0.wieght'.*valid keys here: name, weight"):
        load_config(Cfg, None, ["inner.model=x", "items.0.name=a", "items.0.wieght=2"])


def test_ill_typed_value_names_key_and_input() -> None:
    with pytest.raises(ConfigError, match=r"pack_size: .*greater than or equal to 16 \(got 3\)"):
        load_config(Cfg, None, ["inner.model=x", "pack_size=3"])


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(Cfg, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(Cfg, bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("- 1\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_config(Cfg, scalar)


def test_to_yaml_round_trips() -> None:
    cfg = load_config(Cfg, None, ["inner.model=x", "items.0.name=a"])
    again = load_config(Cfg, None, [], base=__import__("yaml").safe_load(to_yaml(cfg)))
    assert again == cfg
    assert "pack_size" in to_yaml(cfg)


def test_field_docstrings_become_descriptions() -> None:
    assert Inner.model_fields["model"].description == "The model."
