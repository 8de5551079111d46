"""Multi-process tests without races: ranks meet through a file, not a port, and leave together.

Choosing a free port and binding it later races with every other process on the machine, and
rank 0 hosting the TCP store can exit while rank 1 still talks to it (seen as SIGABRT,
"terminate called without an active exception"). A FileStore in the test's own folder has
neither problem; a barrier before the group is destroyed keeps either rank from tearing down
gloo while the other is still using it; a timeout turns a lost rank into an error, not a hang.
"""
from __future__ import annotations

import datetime
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

TIMEOUT = datetime.timedelta(seconds=120)


def init_gloo(rank: int, world_size: int, rendezvous: str) -> None:
    """Join a gloo group of `world_size` ranks that meet through the file `rendezvous`."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world_size, timeout=TIMEOUT)


def leave_group() -> None:
    """Wait for every rank, then destroy the group (call it on the way out of a worker)."""
    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def run_ranks(worker, world_size: int, folder: str, *args) -> None:
    """Runs worker(rank, world_size, rendezvous, *args) in `world_size` fresh processes.

    The worker calls init_gloo(rank, world_size, rendezvous) first and leave_group() last.
    """
    os.makedirs(folder, exist_ok=True)
    rendezvous = os.path.join(folder, "rendezvous")
    if os.path.exists(rendezvous):
        os.remove(rendezvous)  # a FileStore file must not outlive its group
    mp.spawn(worker, args=(world_size, rendezvous) + tuple(args), nprocs=world_size, join=True)
