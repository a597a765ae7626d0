"""Build configs load from YAML/JSON, validate, and say what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from xtoken_align.config import BuildConfig
from xtoken_align.errors import XTokenError


def test_default_is_the_papers_rules() -> None:
    config = BuildConfig()
    assert config.top_k == 4
    assert [r.name for r in config.rules] == ["special", "exact", "digits", "bytes", "multitoken"]
    assert (config.rule("digits").beta, config.rule("digits").gamma) == (0.9, 0.1)
    assert config.rule("fuzzy") is None  # off by default


def test_yaml_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        "top_k: 6\nrules:\n  - {name: exact}\n  - {name: digits, gamma: 0.2}\n  - {name: fuzzy, weight: 0.1}\n"
    )
    config = BuildConfig.from_file(path)
    assert config.top_k == 6 and config.rule("digits").gamma == 0.2 and config.rule("fuzzy").weight == 0.1
    assert BuildConfig.from_dict(config.model_dump()) == config  # what sidecars store reloads identically


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules:\n  - {name: telepathy}\n", "rules.0"),
        ("top_k: 0\n", "top_k"),
        ("rules:\n  - {name: digits, beta: 1.5}\n", "beta"),
        ("rules:\n  - {name: exact}\n  - {name: exact}\n", "more than once"),
        ("rules:\n  - {name: fuzzy}\n", "needed to fill rows"),
        ("colour: blue\n", "colour"),
        ("rules: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_configs_are_refused_with_the_field_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(XTokenError, match=message):
        BuildConfig.from_file(path)


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(XTokenError, match="no such config file"):
        BuildConfig.from_file(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"top_k: 4\nrules:\n  - {name: exact\n", r"rules\.yaml:4:1: not valid YAML \(expected ',' or '}', but got"),
        (b"top_k: 4\n  rules: x\n", r"rules\.yaml:2:8: not valid YAML \(mapping values are not allowed here\)$"),
        (b"\x00\x01\x02", "looks binary"),
        (b"\xff\xfe", "not UTF-8 text"),
    ],
)
def test_unreadable_config_is_one_line_with_its_place(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(content)
    with pytest.raises(XTokenError, match=message) as caught:
        BuildConfig.from_file(path)
    assert "\n" not in str(caught.value)


def test_config_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(XTokenError, match="is a folder, not a file"):
        BuildConfig.from_file(tmp_path)
