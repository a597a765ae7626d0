"""The one list of distillation losses: every loss class registers itself here under its config name.

    @register_loss
    class MyLoss(ChunkLoss):
        name = "my_loss"  # what `teachers[].loss` says
        ...

is all it takes for a loss to be configurable (`DistillConfig` validates names against this registry),
built for a teacher (`build_loss`, called by `prepare_teachers`) and made by name (`make_loss`).
Classes are kept in registration order, which is the order error messages list them in. Left out:
the losses themselves (imported, and so registered, by `xtoken_align.distill.losses`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from xtoken_align.distill.losses.base import LossSetup, TeacherLoss

_REGISTRY: dict[str, type[TeacherLoss]] = {}
_REFERENCE: dict[str, type[TeacherLoss]] = {}  # `loss.semantics: reference` variants (reference.py)


def register_loss(cls: type[TeacherLoss]) -> type[TeacherLoss]:
    """Class decorator: make `cls` the loss called `cls.name`. A name is registered once."""
    name = cls.__dict__.get("name")
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__name__} must declare its config name: name = '...'")
    if name in _REGISTRY:
        raise ValueError(f"loss {name!r} is already registered by {_REGISTRY[name].__name__}")
    _REGISTRY[name] = cls
    return cls


def register_reference(cls: type[TeacherLoss]) -> type[TeacherLoss]:
    """Class decorator: make `cls` (a subclass of a registered loss) what `loss.semantics: reference`
    builds for its name."""
    if cls.name not in _REGISTRY or not issubclass(cls, _REGISTRY[cls.name]):
        raise TypeError(f"{cls.__name__} must subclass the loss registered as {cls.name!r}")
    _REFERENCE[cls.name] = cls
    return cls


def unregister_loss(name: str) -> None:
    """Forget the loss called `name` (for tests that register one of their own)."""
    del _REGISTRY[name]


def loss_names(**traits: bool) -> tuple[str, ...]:
    """Registered names in registration order, those whose class has every given trait:
    `loss_names()` -> ("p_kl", "h_kl", "gold", "uld", "kd"); `loss_names(needs_projection=True)` ->
    ("p_kl", "h_kl")."""
    return tuple(n for n, cls in _REGISTRY.items() if all(getattr(cls, k) == v for k, v in traits.items()))


def loss_class(name: str) -> type[TeacherLoss]:
    """The class registered as `name`; ValueError naming every registered loss when there is none."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown loss {name!r}; choose one of {', '.join(loss_names())}")
    return _REGISTRY[name]


def make_loss(name: str, **kwargs) -> TeacherLoss:
    """The loss module called `name`, from its constructor's arguments: p_kl (w=, topk=, student=),
    h_kl (w=, threshold=, tail=), gold (student_vocab=, teacher_vocab=, tail=), uld (tail=,
    student_size=, teacher_size=), kd (size=); aggregation=, tau=, reduction= for all but kd (tau=,
    reduction=)."""
    return loss_class(name)(**kwargs)


def build_loss(setup: LossSetup) -> TeacherLoss:
    """The loss module of one teacher of a run, built by its class from the teacher and the run's options
    (`loss.semantics: reference`: its reference variant, where it has one)."""
    cls = loss_class(setup.teacher.loss)
    if setup.options.semantics == "reference":
        cls = _REFERENCE.get(cls.name, cls)
    return cls.from_teacher(setup)
