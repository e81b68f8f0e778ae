"""Data-parallel trial stages under torchrun: one process per GPU (or per CPU share), each on its part of every batch.

torchrun (and the Kubeflow jobs that start torchrun-style workers) runs WORLD_SIZE copies of the trainer and tells
each its RANK, LOCAL_RANK, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT. Every rank reads the same config and data,
plans the same steps and computes the same seeded order of rows; each then trains on its shard of every micro-batch
(`shard`), and the gradients are summed across ranks once per optimizer step, each rank's loss weighted by its share
of the micro-batch's loss tokens. The global batch, the step plan and the gradient are those of one process (up to
the order floats are added in). Evaluations score each rank's shard of the validation rows and gather the
predictions and loss sums, so every rank computes the scores one process would. Rank 0 alone writes (checkpoint,
adapter, result file, termination message) and prints progress.

With WORLD_SIZE unset or 1 none of the collectives here runs: no process group, the one-process path as before.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used: the entrypoint reads the world before it reads the config
    import torch

TIMEOUT_ENV = "SWEETSPOT_DISTRIBUTED_TIMEOUT"
DEFAULT_TIMEOUT_SECONDS = 1800
"""How long a rank waits for the others at a collective before failing. It must cover the longest time ranks can
drift apart between two collectives: one node downloading or converting a model the others have cached."""


class WorldError(Exception):
    """The stage cannot be split across the processes torchrun started (bad input, exit code 2)."""


@dataclass(frozen=True)
class World:
    """This process's place among the ranks torchrun started (one process: rank 0 of 1)."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1
    local_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """The rank that writes and reports."""
        return self.rank == 0


def _number(env: Mapping[str, str], name: str, default: int) -> int:
    value = env.get(name, "")
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name}={value!r}: expected an integer (torchrun sets it)") from None


def world_from_env(env: Mapping[str, str]) -> World:
    """The world torchrun describes in `env`; one process when WORLD_SIZE is unset."""
    size = _number(env, "WORLD_SIZE", 1)
    rank = _number(env, "RANK", 0)
    if size < 1 or not 0 <= rank < size:
        raise ValueError(f"RANK={rank} WORLD_SIZE={size}: expected 0 <= RANK < WORLD_SIZE")
    return World(rank, _number(env, "LOCAL_RANK", 0), size, max(1, _number(env, "LOCAL_WORLD_SIZE", 1)))


def timeout(env: Mapping[str, str]) -> timedelta:
    seconds = _number(env, TIMEOUT_ENV, DEFAULT_TIMEOUT_SECONDS)
    if seconds < 1:
        raise ValueError(f"{TIMEOUT_ENV}={seconds}: expected at least 1 second")
    return timedelta(seconds=seconds)


def check_batch_size(batch_size: int, world: World) -> None:
    """Each rank takes an equal share of every full micro-batch, so its memory use is batch_size / WORLD_SIZE rows."""
    if batch_size % world.size:
        raise WorldError(
            f"hyperparameters.batchSize {batch_size} is not a multiple of the {world.size} data-parallel processes "
            f"(WORLD_SIZE): each takes an equal share of every batch; use a multiple of {world.size}"
        )


def shard(count: int, rank: int, size: int) -> range:
    """The positions rank `rank` of `size` takes of `count` rows: contiguous blocks in rank order that cover every
    row once, their sizes differing by at most one (a short last micro-batch can leave a rank none)."""
    return range(rank * count // size, (rank + 1) * count // size)


def share(tokens: Sequence[int], part: range) -> float:
    """The weight of a shard's mean loss: its share of the micro-batch's loss tokens, so that the shards' weighted
    losses add up to the whole micro-batch's mean loss, whatever the lengths of the rows each rank got."""
    total = sum(tokens)
    return sum(tokens[i] for i in part) / total if total else 0.0


def step_seed(seed: int, step: int, rank: int) -> int:
    """The torch seed of one rank's optimizer step (its dropout masks): different on every rank, and a function of
    (seed, step, rank) only, so a stage resumed at any step draws what one uninterrupted run would."""
    import numpy as np

    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0])


@contextlib.contextmanager
def process_group(world: World, wait: timedelta) -> Iterator[None]:
    """The process group for `world` (nccl on GPUs, gloo on CPUs) from torchrun's environment, destroyed on the way
    out, also when the stage fails; nothing at all for one process. `wait` bounds every collective, so a rank that
    dies or hangs fails the others instead of stopping them forever."""
    if not world.distributed:
        yield
        return
    import torch
    import torch.distributed as dist

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group("nccl" if cuda else "gloo", timeout=wait)
    try:
        yield
    finally:
        dist.destroy_process_group()


def broadcast_parameters(parameters: Sequence[torch.Tensor]) -> None:
    """Rank 0's values everywhere: ranks start from identical weights even if initialisation differed."""
    import torch
    import torch.distributed as dist

    with torch.no_grad():
        for parameter in parameters:
            dist.broadcast(parameter.data, src=0)


def sum_gradients(parameters: Sequence[torch.Tensor], loss: torch.Tensor) -> torch.Tensor:
    """Sum the gradients of `parameters` and the step's `loss` over the ranks, in one all-reduce; the summed loss,
    left on the device.

    An explicit all-reduce rather than DistributedDataParallel: the generative loss calls the decoder and the output
    layer directly (`generative.answer_loss`), around the model's forward, which DDP must see to synchronise; the
    trainable LoRA weights are small, so overlapping their all-reduce with the backward pass (what DDP adds) saves
    little; and one all-reduce per optimizer step needs no `no_sync()` for gradient accumulation and no unwrapping
    of the model to save or evaluate it. Every trainable weight takes part in every forward pass, so a rank without
    a gradient (its shards of the step were empty) adds zeros."""
    import torch
    import torch.distributed as dist

    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in parameters]
    flat = torch.cat([*(g.detach().float().flatten() for g in grads), loss.detach().float().reshape(1)])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    summed = flat[:-1].split([g.numel() for g in grads])
    for parameter, grad, values in zip(parameters, grads, summed, strict=True):
        grad.copy_(values.view_as(grad))
        parameter.grad = grad
    return flat[-1].to(loss.dtype)


def gather(value: Any) -> list[Any]:
    """Every rank's `value` (picklable), in rank order, on every rank."""
    import torch.distributed as dist

    values: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value)
    return values


def checksum(parameters: Sequence[torch.Tensor]) -> float:
    """A fingerprint of the weights: equal on every rank while the gradients are synchronised."""
    import torch

    with torch.no_grad():
        return float(sum(p.detach().double().sum() for p in parameters))


def same_weights(checksums: Sequence[float]) -> bool:
    """Ranks apply the same summed gradients, so their weights agree bit for bit on identical hardware; the
    tolerance only spares mixed hardware. Training without synchronisation drifts far past it within a step."""
    return all(math.isclose(c, checksums[0], rel_tol=1e-6, abs_tol=1e-6) for c in checksums)


def any_rank(flag: bool, device: torch.device) -> bool:
    """Whether `flag` holds on any rank, on every rank (one tiny all-reduce): ranks that stop, stop at one step."""
    import torch
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def barrier() -> None:
    import torch.distributed as dist

    dist.barrier()
