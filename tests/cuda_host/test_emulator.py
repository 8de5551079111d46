"""The emulator that runs the CUDA kernels on the host, checked on kernels of its own
(library/selftest.cpp): CUDA's numbering and shuffle results, and every fault it must report
rather than hide (what a GPU would hang on, fault on or leave undefined)."""
from __future__ import annotations

import pytest
import torch

from helpers.cuda_host import LIBRARIES, ops, requires_cuda_host, schedule

pytestmark = [pytest.mark.cuda_host, requires_cuda_host]


@pytest.fixture(params=LIBRARIES)
def library(request):
    return request.param


def test_numbering_follows_cuda(library):
    out = ops(library).selftest("numbering")  # grid (3, 2, 2), block (8, 4, 2)
    for block in range(12):
        bx, by, bz = block % 3, block // 3 % 2, block // 6
        for thread in range(64):
            tx, ty, tz = thread % 8, thread // 8 % 4, thread // 32
            assert out[block, thread].tolist() == [bx, by, bz, tx, ty, tz, thread % 32, thread // 32]


def test_shuffles_and_ballot_give_cudas_results(library):
    out = ops(library).selftest("shuffles")
    ballot = sum(1 << lane for lane in range(32) if lane % 3 == 0)
    for lane in range(32):
        segment = lane - lane % 8
        assert out[lane].tolist() == [
            lane + 3 if lane + 3 < 32 else lane,  # down: past the warp, the lane's own value
            lane - 2 if lane >= 2 else lane,  # up
            lane ^ 5,  # xor
            7,  # broadcast
            lane + 3 if lane % 8 + 3 < 8 else lane,  # down within groups of 8
            segment + 1,  # source lane 9 of a group of 8 is its lane 1
            ballot - (1 << 32) if ballot >= 1 << 31 else ballot,  # returned as a 32-bit int
            1,  # doubles move whole
        ], lane


def test_a_barrier_waits_only_for_threads_that_have_not_returned(library):
    out = ops(library).selftest("barrier_after_return")
    assert out[:100].tolist() == [10 * (99 - t) for t in range(100)]
    assert (out[100:] == -1).all()


@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_staged_tiles_need_their_barriers(library, order):
    correct = [3 * sum(range(64)) + 100 * 64 * (0 + 1 + 2)] * 64
    with schedule(order, library):
        assert ops(library).selftest("staging").tolist() == correct
        # Without the barrier, threads read tiles their neighbours have not written (forward) or
        # have already overwritten (reverse): a missing barrier shows in the results.
        assert ops(library).selftest("staging_without_barrier").tolist() != correct


@pytest.mark.parametrize("case, message", [
    ("divergent_barrier", "a barrier in divergent code"),
    ("partial_warp", "names lane 8, which this block does not have"),
    ("outside_mask", "reads lane 16, outside its mask"),
    ("returned_lane", "names lane 31, which has returned"),
    ("deadlock", "can make no progress"),
    ("misaligned_load", "misaligned address: __ldg of 16 bytes"),
    ("assert", r"thread \(5, 0, 0\): device-side assert triggered .*value in range"),
    ("block_too_large", "invalid configuration argument"),
    ("empty_grid", "invalid configuration argument"),
])
def test_faults_fail_the_launch(library, case, message):
    with pytest.raises(RuntimeError, match=message):
        ops(library).selftest(case)
    # ... and leave the emulator usable.
    assert ops(library).selftest("barrier_after_return")[0].item() == 990


def test_fresh_tensors_are_poisoned_inside_on_host_cuda():
    from helpers.cuda_host import on_host_cuda

    with on_host_cuda():
        assert torch.isnan(torch.empty(5)).all()
        assert (torch.empty(3, dtype=torch.long) == torch.iinfo(torch.long).max).all()
