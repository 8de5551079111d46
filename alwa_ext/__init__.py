"""alwa_ext: fused box-regression, focal and distribution focal losses, the task-aligned assigner,
and ALWA adaptive loss weighting for PyTorch.

Importing the package loads the compiled library (alwa_ext._C), which registers the
torch.ops.alwa operators.
"""
import torch  # noqa: F401  (loads libc10/libtorch, which _C links against)

try:
    from . import _C  # noqa: F401
except ImportError as error:  # pragma: no cover - only without a build
    raise ImportError(
        "alwa_ext._C is not built: run `pip install --no-build-isolation -e .` (or `make test`) "
        f"in the source tree first ({error})"
    ) from error

from . import ops  # noqa: F401  (fake kernels and autograd)
from . import cpu, kinds, nn  # noqa: F401
from .assign import task_aligned_assign
from .deltas import decode_deltas, encode_deltas
from .functional import box_iou, box_loss, distribution_expectation, distribution_focal_loss, sigmoid_focal_loss
from .weighting import ALWA

__all__ = ["ALWA", "box_loss", "box_iou", "sigmoid_focal_loss", "distribution_focal_loss", "distribution_expectation", "task_aligned_assign", "encode_deltas", "decode_deltas", "cpu", "kinds", "nn"]
__version__ = "0.1.0"
