"""Where this process runs: its rank in a torchrun group (or alone), its device, and actions taken
on the main process on behalf of all of them."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from .config import TrainConfig
from .run_folder import RunFolderError


@dataclass
class Process:
    """Where this process stands in a (possibly single-process) distributed run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # init_process joined the group (else the caller did, and leaves it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_process(config: TrainConfig) -> Process:
    """Join the process group when started by torchrun (WORLD_SIZE > 1): NCCL on CUDA, gloo on CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Process()
    process = Process(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        on_cuda = config.device.startswith("cuda")
        if on_cuda and torch.cuda.is_available():
            torch.cuda.set_device(process.local_rank)  # before NCCL starts, so it binds the right GPU
        dist.init_process_group(backend="nccl" if on_cuda else "gloo")
        process.owns_group = True
    return process


def leave_process(process: Process, cleanly: bool) -> None:
    """Leave the group that :func:`init_process` joined, before the process exits: after a barrier
    when the run ended normally, so no rank tears gloo down while another still talks to it (a rank
    exiting with a live group can die of SIGABRT, 'terminate called without an active exception');
    at once after an error, which the ranks raise together (see :func:`on_main`)."""
    if not process.owns_group or not dist.is_initialized():
        return
    try:
        if cleanly:
            dist.barrier()
    finally:
        dist.destroy_process_group()


def resolve_device(name: str, process: Optional[Process] = None) -> torch.device:
    """The torch device of a config's ``cpu`` / ``cuda`` / ``cuda:N``; under torchrun, the local rank's GPU."""
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {name!r} requested but CUDA is not available")
        if process is not None and process.distributed:
            device = torch.device("cuda", process.local_rank)  # torchrun: one GPU per local rank
        if (device.index or 0) >= torch.cuda.device_count():
            raise ValueError(f"device: {name!r} requested but there are {torch.cuda.device_count()} CUDA device(s)")
        torch.cuda.set_device(device)
    return device


def on_main(process: Process, action, share: bool = False):
    """``action()`` on the main process; an error there is raised on every process, so none is left
    waiting for the main one at the next collective. Returns the main process's result, on every
    process when ``share`` (else None elsewhere)."""
    failure, result = None, None
    if process.is_main:
        try:
            result = action()
        except (ValueError, OSError) as error:
            failure = error
    if process.distributed:
        outcome = [None if failure is None else str(failure), result if share else None]
        dist.broadcast_object_list(outcome, src=0)
        if failure is None and outcome[0] is not None:
            raise RunFolderError(outcome[0])
        if share:
            result = outcome[1]
    if failure is not None:
        raise failure
    return result
