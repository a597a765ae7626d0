"""The loss registry (losses/registry.py) is the one list of losses: config validation, make_loss,
build_loss and the teachers' checks all read it, and a new loss class is all a new loss takes."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from conftest import vocab
from loss_fixtures import FAKE_STUDENT, FAKE_TEACHER, V_S, loss_kwargs

from xtoken_align.distill.config import DistillConfig, LossSpec
from xtoken_align.distill.losses import (
    LossSetup,
    PKLLoss,
    TeacherLoss,
    ULDLoss,
    build_loss,
    loss_class,
    loss_names,
    make_loss,
    register_loss,
    unregister_loss,
)
from xtoken_align.distill.sparse_w import ProjectionW
from xtoken_align.distill.teachers import prepare_teachers
from xtoken_align.errors import XTokenError


def run_config(loss: str, tokenizer: str = "demo:llama3", projection: str | None = None, **teacher) -> DistillConfig:
    spec = {"model": "teacher", "tokenizer": tokenizer, "loss": loss, "projection": projection, **teacher}
    student = {"model": "student", "tokenizer": "demo:llama3"}
    return DistillConfig.from_dict({"student": student, "teachers": [spec], "data": {"train": ["t.jsonl"]}})


def test_make_loss_names(projection):
    w = ProjectionW.from_projection(projection)
    assert isinstance(make_loss("p_kl", w=w, topk=16, aggregation="first"), PKLLoss)
    assert isinstance(make_loss("uld", tail=8), ULDLoss)
    with pytest.raises(ValueError, match="p_kl, h_kl, gold, uld, kd"):
        make_loss("gkd")


def test_every_registered_loss_is_configured_and_built_from_the_registry(projection):
    assert loss_names() == ("p_kl", "h_kl", "gold", "uld", "kd")
    assert loss_names(needs_projection=True) == ("p_kl", "h_kl")
    assert loss_names(same_tokenizer_only=True) == ("kd",) and loss_names(learns_w=True) == ("p_kl",)
    student, teacher = (SimpleNamespace(pieces=v.pieces, size=len(v.pieces)) for v in (FAKE_STUDENT, FAKE_TEACHER))
    for name in loss_names():
        cls = loss_class(name)
        assert cls.name == name and issubclass(cls, TeacherLoss)
        spec = run_config(name, projection="W.safetensors" if cls.needs_projection else None).teachers[0]
        assert spec.loss == name
        assert type(make_loss(name, **loss_kwargs(name, projection))) is cls
        setup = LossSetup(spec, LossSpec(tail=8), projection, student, student if cls.same_tokenizer_only else teacher)
        built = build_loss(setup)
        assert type(built) is cls and built.stats == {}
        assert getattr(built, "tail", 8) == 8  # the run's options reach the module


def test_an_unknown_loss_is_refused_naming_the_registered_ones():
    with pytest.raises(XTokenError, match="teachers.0.loss") as refused:
        run_config("magic")
    assert "unknown loss 'magic'; choose one of p_kl, h_kl, gold, uld, kd" in str(refused.value)
    with pytest.raises(XTokenError, match="learn_w is for p_kl only"):
        run_config("h_kl", projection="W.safetensors", learn_w=True)


def test_a_new_loss_class_is_all_a_new_loss_takes():
    """Registered, a test-only class is configurable, built for a teacher and checked by its traits."""

    @register_loss
    class SquaredError(TeacherLoss):
        name = "test_squared_error"
        same_tokenizer_only = True

        def __init__(self, size: int) -> None:
            super().__init__()
            self.size = size

        @classmethod
        def from_teacher(cls, setup: LossSetup) -> SquaredError:
            return cls(setup.student_vocab.size)

        def forward(self, student_logits, teacher_logits, *chunks_and_labels) -> torch.Tensor:
            return ((student_logits - teacher_logits.detach()) ** 2).mean()

    try:
        assert loss_names()[-1] == "test_squared_error"
        config = run_config("test_squared_error")
        (plan,) = prepare_teachers(config, vocab("llama3"))
        assert isinstance(plan.loss, SquaredError) and plan.loss.size == vocab("llama3").size
        z = torch.zeros(1, 2, V_S, requires_grad=True)
        assert float(make_loss("test_squared_error", size=V_S)(z, torch.ones(1, 2, V_S)).detach()) == 1.0
        with pytest.raises(XTokenError, match="loss test_squared_error needs the student's tokenizer.*use p_kl, h_kl"):
            prepare_teachers(run_config("test_squared_error", tokenizer="demo:qwen3"), vocab("llama3"))
        with pytest.raises(XTokenError, match="learn_w is for p_kl only"):
            run_config("test_squared_error", learn_w=True)
        with pytest.raises(ValueError, match="already registered by SquaredError"):
            register_loss(SquaredError)
    finally:
        unregister_loss("test_squared_error")
    assert "test_squared_error" not in loss_names()
    with pytest.raises(XTokenError, match="choose one of p_kl, h_kl, gold, uld, kd"):
        run_config("test_squared_error")


def test_a_loss_class_must_declare_its_name():
    class Nameless(TeacherLoss):
        pass

    with pytest.raises(TypeError, match="Nameless must declare its config name"):
        register_loss(Nameless)
