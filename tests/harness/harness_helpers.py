"""What the harness tests share. Imported first by each of them: it makes ``alwa_det`` importable
from a checkout and runs the tests on one thread. (Not a conftest.py: tests/ has one already, and
the main suite imports names from it as ``conftest``.)"""
import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The harness lives in python/ until setup.py installs it.
if os.path.join(ROOT, "python") not in sys.path:
    sys.path.insert(0, os.path.join(ROOT, "python"))


@pytest.fixture(autouse=True)
def single_thread():
    """The machine is shared; one thread keeps the smoke runs fast and deterministic."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_config(out, **overrides):
    """A run configuration that trains in seconds."""
    from alwa_det.config import make_config

    values = dict(
        out=str(out), image_size=64, width=8, fpn_channels=16, head_convs=1, batch_size=2, iterations=4,
        lr_steps=(1000,), warmup_iterations=2, interval=2, log_interval=2, checkpoint_interval=2,
        synthetic_train_images=16, synthetic_eval_images=4, eval_batch_size=4, workers=0, threads=1,
        roi_samples=16, roi_hidden=32, rpn_pre_nms=50, rpn_post_nms=30,
    )
    values.update(overrides)
    return make_config(values)
