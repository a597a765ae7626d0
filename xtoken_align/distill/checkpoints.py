"""Checkpoints of a run, for exact resume: `checkpoints/step-NNNNNNN/` holds the student
(safetensors), `state.pt` (step, optimiser, scheduler, each teacher's loss state such as a learned W,
the Python/NumPy/torch RNG states) and the config; `checkpoints/latest` names the newest.

A checkpoint is written to `<name>.tmp` and renamed, so an interrupted save never replaces a good
one. Left out: when to save (runner.py), the data order (a function of seed and step, not state).
"""

from __future__ import annotations

import random
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xtoken_align.errors import XTokenError


def save_checkpoint(
    out: Path, step: int, student: nn.Module, optimizer, scheduler, losses: dict[str, nn.Module], config_yaml: str
) -> Path:
    """Write the checkpoint of `step` under `out/checkpoints` and point `latest` at it."""
    final = out / "checkpoints" / f"step-{step:07d}"
    temp = final.with_name(final.name + ".tmp")
    shutil.rmtree(temp, ignore_errors=True)
    temp.mkdir(parents=True)
    student.save_pretrained(temp / "student", safe_serialization=True)
    state = {
        "step": step,
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "losses": {name: loss.state_dict() for name, loss in losses.items()},
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()},
    }
    torch.save(state, temp / "state.pt")
    (temp / "config.yaml").write_text(config_yaml)
    shutil.rmtree(final, ignore_errors=True)
    temp.rename(final)
    (out / "checkpoints" / "latest").write_text(final.name)
    return final


def restore_checkpoint(
    out: Path, student: nn.Module, optimizer, scheduler, losses: dict[str, nn.Module], device: torch.device
) -> int:
    """Load the latest checkpoint under `out` into the given objects; returns its step."""
    from safetensors.torch import load_file

    pointer = out / "checkpoints" / "latest"
    if not pointer.is_file():
        raise XTokenError(f"nothing to resume: no checkpoint in {out / 'checkpoints'}")
    folder = out / "checkpoints" / pointer.read_text().strip()
    student.load_state_dict(load_file(folder / "student" / "model.safetensors"), strict=False)
    state = torch.load(folder / "state.pt", map_location=device, weights_only=False)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    for name, loss in losses.items():
        loss.load_state_dict(state["losses"][name])
    random.setstate(state["rng"]["python"])
    np.random.set_state(state["rng"]["numpy"])
    torch.set_rng_state(state["rng"]["torch"])
    return int(state["step"])
