"""The example run configs (examples/*.yaml): each is a valid distillation config, names the paper's
setup it says it is, and the cached one reads the cache the live one writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from xtoken_align.distill.config import DistillConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_a_valid_config(path: Path) -> None:
    config = DistillConfig.load(path)
    assert config.student.model.endswith("Llama-3.2-1B")
    assert all(t.projection for t in config.teachers)  # cross-tokenizer teachers need their W
    assert path.name in (EXAMPLES / "README.md").read_text()  # listed in the examples' README


def test_the_examples_are_the_papers_setups() -> None:
    load = lambda name: DistillConfig.load(EXAMPLES / name)  # noqa: E731
    assert [(t.name, t.loss) for t in load("llama3-qwen3-pkl.yaml").teachers] == [("qwen3", "p_kl")]
    assert [(t.name, t.loss) for t in load("llama3-phi4-hkl.yaml").teachers] == [("phi4", "h_kl")]
    two = load("llama3-two-teachers.yaml")
    assert [(t.loss, t.weight) for t in two.teachers] == [("p_kl", 0.2), ("h_kl", 0.8)]
    assert two.loss.teacher_weighting == "static"
    live, cached = load("llama3-qwen3-pkl.yaml"), load("llama3-qwen3-cached.yaml")
    (teacher,) = cached.teachers
    assert teacher.model is None and teacher.cache == f"cache/{live.teachers[0].name}"
    assert (cached.data.train, cached.data.max_length) == (live.data.train, live.data.max_length)
