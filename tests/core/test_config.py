"""The strict config loader: unknown keys and wrong types are named with their file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from sopforge.config import ConfigError, load_config, parse_override


@dataclass(frozen=True)
class Inner:
    r: int = 8
    names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Cfg:
    lr: float = 1e-4
    name: str = "x"
    mode: Literal["a", "b"] = "a"
    flag: bool = False
    inner: Inner = field(default_factory=Inner)
    passthrough: dict[str, Any] = field(default_factory=dict)
    maybe: int | None = None


def write(tmp_path, text: str):
    p = tmp_path / "cfg.yaml"
    p.write_text(text)
    return p


def test_loads_nested_and_overrides(tmp_path):
    p = write(tmp_path, "lr: 0.001\ninner:\n  r: 4\npassthrough:\n  anything: [1, 2]\n")
    cfg = load_config(Cfg, p, ["inner.r=16", "mode=b", "flag=true", "passthrough.new=3", "maybe=2"])
    assert cfg.lr == 0.001 and cfg.inner.r == 16 and cfg.mode == "b" and cfg.flag is True
    assert cfg.passthrough == {"anything": [1, 2], "new": 3} and cfg.maybe == 2


@pytest.mark.parametrize(
    "text, needle",
    [
        ("lrr: 1", "lrr"),
        ("inner:\n  rank: 3", "inner.rank"),
        ("lr: fast", "lr must be a number"),
        ("inner:\n  r: 1.5", "inner.r must be an integer"),
        ("mode: c", "mode must be one of"),
        ("flag: 1", "flag must be true or false"),
        ("inner: 3", "inner must be a mapping"),
        ("inner:\n  names: abc", "inner.names must be a list"),
        ("- 1\n- 2", "top level must be a mapping"),
        ("lr: [unclosed", "invalid YAML"),
    ],
)
def test_errors_name_key_and_file(tmp_path, text, needle):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        load_config(Cfg, p)
    assert needle in str(e.value) and str(p) in str(e.value)


def test_bad_override_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("nonsense")
    with pytest.raises(ConfigError, match="not found"):
        load_config(Cfg, tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="lr"):
        load_config(Cfg, None, ["lr.x=1"])
    with pytest.raises(ConfigError, match="not a section"):
        load_config(Cfg, None, ["lr=1", "lr.x=1"])


def test_non_utf8_config(tmp_path):
    p = tmp_path / "cfg.yaml"
    p.write_bytes(b"name: \xff\xfe\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(Cfg, p)


def test_every_shipped_config_loads():
    """Like litgpt's test_config_hub: shipped YAML can't rot against the dataclasses."""
    from pathlib import Path

    from sopforge.ingest.pipeline import IngestConfig

    root = Path(__file__).resolve().parents[2] / "configs"
    for p in sorted((root / "ingest").glob("*.yaml")):
        load_config(IngestConfig, p)
