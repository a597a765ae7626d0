"""FSDP2 for the runner (`training.fsdp: true` under torchrun): shard the student, save and load its
sharded state, gather it whole for evaluation and export.

    shard_student      fully_shard on each decoder layer (the model's `_no_split_modules`), then on
                       the `StudentTerms` root, which keeps the embeddings, final norm and output layer
    save_sharded       model + optimiser as a torch.distributed.checkpoint (DCP) folder, one file per rank
    load_sharded       the same folder back into the sharded model and optimiser, in place
    full_state         the whole student's state dict, gathered on rank 0 (on the CPU), for `save_pretrained`
    gathered_root      the root's parameters unsharded, so the student can be called outside the root's
                       forward (evaluation, `generate`): every rank must run the same calls

Every function here is collective: all ranks call it. Left out: when to save (runner.py), the rest of
a checkpoint (scheduler, learned W, RNG: checkpoints.py), the gradient-sync switch (training_step.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch.distributed.checkpoint as dcp
from torch import Tensor, nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)
from torch.distributed.fsdp import FSDPModule, fully_shard

from xtoken_align.distill.student_terms import StudentTerms
from xtoken_align.errors import XTokenError


def shard_student(terms: StudentTerms) -> StudentTerms:
    """Shard `terms` in place (its class becomes an `FSDPModule` too) and return it. Build the
    optimiser after this: sharding replaces the parameters with DTensors."""
    model = terms.model
    names = set(model._no_split_modules or ())
    layers = [m for m in model.modules() if type(m).__name__ in names]
    if not layers:
        raise XTokenError(f"{type(model).__name__} names no decoder layers (_no_split_modules) to shard")
    for layer in layers:
        fully_shard(layer)
    fully_shard(terms)  # the root: its parameters stay gathered from forward to backward
    return terms


def save_sharded(folder: Path, model: nn.Module, optimizer) -> None:
    """`model`: a module holding the sharded `StudentTerms` and every other module the optimiser
    updates (a learned W), so that each optimiser entry has a name."""
    model_state, optimizer_state = get_state_dict(model, optimizer)
    dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=folder)


def load_sharded(folder: Path, model: nn.Module, optimizer) -> None:
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    dcp.load(state, checkpoint_id=folder)  # in place, each rank its own shards
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def full_state(terms: FSDPModule) -> dict[str, Tensor]:
    """The student's full state dict on rank 0 (keys as in the student, without `model.`); {} elsewhere."""
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    state = get_model_state_dict(terms, options=options)
    # Gathered, tied weights are copies that save_pretrained would keep twice: keep each one's first name
    tied = {name for name, _ in terms.named_parameters(remove_duplicate=False)} - dict(terms.named_parameters()).keys()
    return {key.removeprefix("model."): value for key, value in state.items() if key not in tied}


@contextmanager
def gathered_root(terms: FSDPModule) -> Iterator[None]:
    """Within: the root's parameters (embeddings, norm, output layer) are whole tensors; the decoder
    layers gather theirs as each runs, so every rank must make the same calls, in the same order."""
    terms.unshard()
    try:
        yield
    finally:
        terms.reshard()
