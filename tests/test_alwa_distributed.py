"""ALWA across ranks: two gloo processes on the CPU (torch.multiprocessing spawn).

Each rank feeds its own loss sequence. With sync (the default) every `interval` calls the
ranks pool their windows, so both hold the same weights, equal to the NumPy reference run
on the concatenated windows; with sync=False each rank follows the single-process algorithm
on its own losses and the ranks drift apart, as in the published code. The references are
tests/helpers/reference.py.alwa_pooled and alwa_published.
"""
from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from helpers.reference import alwa_pooled, alwa_published
from helpers.alwa import loss_sequences
from helpers.distributed import init_gloo, leave_group, run_ranks

WORLD = 2
CALLS = 60
INTERVAL = 7


def rank_losses():
    """(WORLD, CALLS) cls and reg losses, different per rank, with a few non-finite ones."""
    cls, reg = [], []
    for rank in range(WORLD):
        c, r = loss_sequences("decaying", CALLS, seed=100 + rank)
        cls.append(c)
        reg.append(r)
    cls, reg = np.stack(cls), np.stack(reg)
    cls[1, 9] = np.nan  # rank 1 records one value fewer in its second window
    reg[0, 30] = np.inf
    return cls, reg


def worker(rank, world_size, rendezvous, out_dir, configs):
    init_gloo(rank, world_size, rendezvous)
    try:
        import alwa_ext

        cls, reg = rank_losses()
        results = {}
        for name, kwargs in configs.items():
            alwa = alwa_ext.ALWA(interval=INTERVAL, **kwargs)
            after, returned = [], []
            for call in range(CALLS):
                weighted = alwa(torch.tensor(cls[rank, call], dtype=torch.float64), torch.tensor(reg[rank, call], dtype=torch.float64))
                returned.append([w.item() for w in weighted])
                after.append(alwa.weights.numpy().copy())
            results[name] = dict(after=np.array(after), returned=np.array(returned), skipped=alwa.skipped.item(), num_updates=alwa.num_updates.item())
        np.save(os.path.join(out_dir, f"rank{rank}.npy"), results, allow_pickle=True)
    finally:
        leave_group()


CONFIGS = {
    "alwa1_paper": dict(mode="alwa1", update="paper"),
    "alwa2_paper": dict(mode="alwa2", update="paper"),
    "alwa2_stable": dict(mode="alwa2", update="stable"),
    "alwa1_unsynced": dict(mode="alwa1", update="paper", sync=False),
}


@pytest.fixture(scope="module")
def rank_results(tmp_path_factory):
    out_dir = str(tmp_path_factory.mktemp("alwa_dist"))
    run_ranks(worker, WORLD, out_dir, out_dir, CONFIGS)
    return [np.load(os.path.join(out_dir, f"rank{rank}.npy"), allow_pickle=True).item() for rank in range(WORLD)]


@pytest.mark.parametrize("name", ["alwa1_paper", "alwa2_paper", "alwa2_stable"])
def test_synced_ranks_hold_the_weights_of_the_pooled_windows(rank_results, name):
    kwargs = CONFIGS[name]
    cls, reg = rank_losses()
    expected = alwa_pooled(cls, reg, interval=INTERVAL, **kwargs)
    first, second = rank_results[0][name], rank_results[1][name]
    np.testing.assert_array_equal(first["after"], second["after"])  # bitwise the same on both ranks
    np.testing.assert_allclose(first["after"], expected, rtol=1e-9, atol=0)
    assert len(np.unique(expected[:, 0])) > 2, "the rule must fire"
    assert first["num_updates"] == second["num_updates"] == CALLS // INTERVAL
    assert first["skipped"] == 1 and second["skipped"] == 1
    # The pooled weights differ from what either rank alone would compute.
    alone = alwa_published(cls[0], reg[0], interval=INTERVAL, **kwargs)[1]
    assert not np.allclose(alone, expected)


def test_unsynced_ranks_follow_their_own_losses(rank_results):
    cls, reg = rank_losses()
    for rank in range(WORLD):
        _, expected = alwa_published(cls[rank], reg[rank], mode="alwa1", interval=INTERVAL)
        np.testing.assert_allclose(rank_results[rank]["alwa1_unsynced"]["after"], expected, rtol=1e-9, atol=0)
    assert not np.array_equal(rank_results[0]["alwa1_unsynced"]["after"], rank_results[1]["alwa1_unsynced"]["after"])
