"""Where a run's process sits: rank, world size and device, from torchrun's environment.

One process (no WORLD_SIZE) runs on cuda when there is one, else the CPU; under `torchrun` the process
group starts here (nccl on GPUs, gloo on CPUs). Left out: how the model is wrapped (DDP, FSDP:
runner.py) and which micro-batches a rank takes (runner.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torch.distributed as dist


@dataclass
class Distributed:
    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def from_env(cls) -> Distributed:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend)
        rank = dist.get_rank()
        device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if backend == "nccl" else "cpu")
        if backend == "nccl":  # FSDP2's default device mesh takes the current GPU
            torch.cuda.set_device(device)
        return cls(rank, world, device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return float(tensor.item()) / self.world
