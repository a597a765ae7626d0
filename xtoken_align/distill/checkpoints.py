"""Checkpoints of a run, for exact resume: `checkpoints/step-NNNNNNN/` holds the student
(safetensors), `state.pt` (step, optimiser, scheduler, each teacher's loss state such as a learned W,
the Python/NumPy/torch RNG states) and the config; `checkpoints/latest` names the newest.

Under FSDP (`sharded` given, every rank calls these) the student's and optimiser's state is in
`sharded/` instead (torch.distributed.checkpoint, one file per rank: no rank ever holds it whole),
`state.pt` keeps the rest, and `student/` is written only when asked (`export`: the run's last
checkpoint), gathered on rank 0, so a finished run's student is a Hugging Face folder either way.

A checkpoint is written to `<name>.tmp` and renamed, so an interrupted save never replaces a good
one. Left out: when to save (runner.py), the data order (a function of seed and step, not state).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from xtoken_align.errors import XTokenError


def save_checkpoint(
    out: Path,
    step: int,
    student: nn.Module,
    optimizer,
    scheduler,
    losses: dict[str, nn.Module],
    config_yaml: str,
    sharded: nn.Module | None = None,
    export: bool = True,
) -> Path:
    """Write the checkpoint of `step` under `out/checkpoints` and point `latest` at it. `sharded`: the
    module holding the FSDP `StudentTerms` as `student` and the losses (sharding.save_sharded)."""
    from xtoken_align.distill.sharding import full_state, save_sharded

    main = sharded is None or dist.get_rank() == 0
    final = out / "checkpoints" / f"step-{step:07d}"
    temp = final.with_name(final.name + ".tmp")
    if main:
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir(parents=True)
    student_state = None
    if sharded is not None:
        dist.barrier()  # the folder exists, empty, before any rank writes into it
        save_sharded(temp / "sharded", sharded, optimizer)
        student_state = full_state(sharded["student"]) if export else None
    if main:
        if sharded is None or export:
            student.save_pretrained(temp / "student", state_dict=student_state, safe_serialization=True)
        state = {
            "step": step,
            "optimizer": optimizer.state_dict() if sharded is None else None,  # None: in sharded/
            "scheduler": scheduler.state_dict(),
            "losses": {name: loss.state_dict() for name, loss in losses.items()},
            "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
        }
        torch.save(state, temp / "state.pt")
        (temp / "config.yaml").write_text(config_yaml)
        shutil.rmtree(final, ignore_errors=True)
        temp.rename(final)
        (out / "checkpoints" / "latest").write_text(final.name)
    if sharded is not None:
        dist.barrier()  # no rank reads `latest` before it names this checkpoint
    return final


def restore_checkpoint(
    out: Path,
    student: nn.Module,
    optimizer,
    scheduler,
    losses: dict[str, nn.Module],
    device: torch.device,
    sharded: nn.Module | None = None,
) -> int:
    """Load the latest checkpoint under `out` into the given objects; returns its step."""
    from safetensors.torch import load_file

    from xtoken_align.distill.sharding import load_sharded

    pointer = out / "checkpoints" / "latest"
    if not pointer.is_file():
        raise XTokenError(f"nothing to resume: no checkpoint in {out / 'checkpoints'}")
    folder = out / "checkpoints" / pointer.read_text().strip()
    state = torch.load(folder / "state.pt", map_location=device, weights_only=False)
    if sharded is None and state["optimizer"] is None:
        raise XTokenError(f"{folder} was saved with training.fsdp: resume it with training.fsdp under torchrun")
    if sharded is None:
        student.load_state_dict(load_file(folder / "student" / "model.safetensors"), strict=False)
        optimizer.load_state_dict(state["optimizer"])
    elif not (folder / "sharded").is_dir():
        raise XTokenError(f"{folder} holds no sharded state: it was not saved with training.fsdp")
    else:
        load_sharded(folder / "sharded", sharded, optimizer)
    scheduler.load_state_dict(state["scheduler"])
    for name, loss in losses.items():
        loss.load_state_dict(state["losses"][name])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])
    return int(state["step"])
