"""One process or many: the same code under `torchrun` (DDP, or FSDP for models that do not fit one GPU).

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK; without them this is a world of one and nothing is initialized.
Rank 0 alone logs and checkpoints; every rank seeds with seed + rank.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def pick_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(name)


def setup(device_name: str) -> World:
    """Join the process group torchrun prepared (gloo on CPU, NCCL on GPU), or stay alone."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local_rank = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_name, local_rank)
    if size > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return World(rank=rank, size=size, local_rank=local_rank, device=device)


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: nn.Module, world: World, strategy: str) -> nn.Module:
    """DDP (a full copy per rank, gradients averaged), or FSDP2 (every block sharded across ranks)."""
    if not world.distributed:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        from training.model import Block

        policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        for module in model.modules():
            if isinstance(module, Block):
                fully_shard(module, mp_policy=policy)
        fully_shard(model, mp_policy=policy)
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [world.device.index] if world.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model under DDP and torch.compile: what checkpoints store, so they load anywhere."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def full_state(model: nn.Module, optimizer: torch.optim.Optimizer, strategy: str) -> tuple[dict, dict]:
    """Unsharded model and optimizer state (gathered to CPU under FSDP; all ranks must call it)."""
    if strategy == "fsdp" and dist.is_initialized():
        from torch.distributed.checkpoint.state_dict import (
            StateDictOptions,
            get_model_state_dict,
            get_optimizer_state_dict,
        )

        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        return get_model_state_dict(model, options=options), get_optimizer_state_dict(
            model, optimizer, options=options
        )
    return unwrap(model).state_dict(), optimizer.state_dict()


def load_full_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, model_state: dict, optim_state: dict, strategy: str
) -> None:
    if strategy == "fsdp" and dist.is_initialized():
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_state_dict

        options = StateDictOptions(full_state_dict=True)
        set_state_dict(
            model, optimizer, model_state_dict=model_state, optim_state_dict=optim_state, options=options
        )
        return
    unwrap(model).load_state_dict(model_state)
    optimizer.load_state_dict(optim_state)


def gather_objects(obj: Any, world: World) -> list[Any]:
    """Every rank's ``obj`` on rank 0 (others get []); e.g. RNG states for the checkpoint."""
    if not world.distributed:
        return [obj]
    out: list[Any] = [None] * world.size if world.is_main else []
    dist.gather_object(obj, out if world.is_main else None, dst=0)
    return out


def all_reduce_mean(values: torch.Tensor, world: World) -> torch.Tensor:
    if world.distributed:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
        values /= world.size
    return values


def barrier(world: World) -> None:
    if world.distributed:
        dist.barrier()
