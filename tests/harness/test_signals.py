"""A run killed (SIGKILL) or stopped by Ctrl-C at a moment of the OS's choosing resumes to exactly
the run that was never stopped: same weights bit for bit, same log."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from alwa_det import cli
from alwa_det.checkpoint import load_checkpoint

from helpers.harness import error_line, single_thread, tiny_argv  # noqa: F401
from helpers.child import child_options

OPTIONS = dict(iterations=24, log_interval=3, checkpoint_interval=4, synthetic_train_images=8)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = tmp_path_factory.mktemp("signals") / "straight"
    assert cli.main(tiny_argv(out, **OPTIONS)) == 0
    return out


def _start(out, **options):
    """The CLI in a process of its own session (so a signal to its group reaches its workers too, as
    Ctrl-C in a terminal does), once its first checkpoint is on disk."""
    process = subprocess.Popen([sys.executable, "-m", "alwa_det", *tiny_argv(out, **{**OPTIONS, **options})],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
                               **child_options(out.parent))
    deadline = time.monotonic() + 120
    while not os.path.exists(out / "checkpoints" / "last.pt"):
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    return process


def _untimed_log(out):
    with open(out / "log.csv") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle)]


def _assert_same_run(out, uninterrupted):
    a, b = torch.load(uninterrupted / "model_final.pt"), torch.load(out / "model_final.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)
    assert _untimed_log(out) == _untimed_log(uninterrupted)
    assert sorted(os.listdir(out / "checkpoints")) == ["last.pt"]  # no temporary left behind


def test_sigkill_then_resume_is_the_uninterrupted_run(tmp_path, uninterrupted):
    out = tmp_path / "killed"
    process = _start(out)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(timeout=60) == -signal.SIGKILL
    killed_at = load_checkpoint(str(out))["iteration"]
    assert killed_at < OPTIONS["iterations"]
    assert cli.main(["train", "--resume", str(out)]) == 0  # the dead run's lock went with it
    _assert_same_run(out, uninterrupted)


def test_ctrl_c_with_a_loader_worker_stops_at_once_and_resumes_exactly(tmp_path, uninterrupted):
    out = tmp_path / "stopped"
    process = _start(out, workers=1)
    os.killpg(process.pid, signal.SIGINT)
    assert process.wait(timeout=60) == 130
    message = error_line(process.stderr.read())
    assert "interrupted after iteration" in message and f"--resume {out}" in message
    assert cli.main(["train", "--resume", str(out), "--workers", "1"]) == 0
    _assert_same_run(out, uninterrupted)
