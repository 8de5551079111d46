"""Direct calls of the torch.ops.alwa operators, with the defaults of the public wrappers.

Tests that bypass alwa_ext.box_loss (opcheck, the C++ argument checks, the SIMD paths, the
64-bit indexing test) build the arguments here, in the schemas' order: box_loss takes the first
15, box_loss_with_grad all 17, box_loss_backward grad_loss and the 17.
"""
from __future__ import annotations

import torch

from alwa_ext.kinds import DEFAULT_DELTA_MEANS, DEFAULT_DELTA_STDS, DEFAULT_WH_RATIO_CLIP


def box_loss_args(pred, target, loss="giou", *, weight=None, avg_factor=None, anchors=None, reduction="mean",
                  box_format="xyxy", eps=1e-7, beta=1.0, alpha=1.0, focal_gamma=0.0, means=DEFAULT_DELTA_MEANS,
                  stds=DEFAULT_DELTA_STDS, wh_ratio_clip=DEFAULT_WH_RATIO_CLIP, grad_pred=None, grad_target=None):
    """The arguments of torch.ops.alwa.box_loss_with_grad; the gradients are asked for where the
    boxes require grad unless grad_pred/grad_target say otherwise."""
    return (
        pred, target, weight, avg_factor, anchors, loss, reduction, box_format, eps, beta, alpha, focal_gamma,
        list(means), list(stds), wh_ratio_clip,
        pred.requires_grad if grad_pred is None else grad_pred,
        target.requires_grad if grad_target is None else grad_target,
    )


def box_loss_op(*args, **kwargs):
    """(loss, grad_pred, grad_target) of torch.ops.alwa.box_loss_with_grad; arguments as
    box_loss_args."""
    return torch.ops.alwa.box_loss_with_grad(*box_loss_args(*args, **kwargs))


def opcheck_box_loss(args) -> None:
    """torch.library.opcheck of every form of box_loss for one call (args: box_loss_args)."""
    loss_args, flags = tuple(args[:15]), tuple(args[15:])
    # The public op, with the autograd of csrc/autograd (inputs that require grad exercise it).
    torch.library.opcheck(torch.ops.alwa.box_loss.default, loss_args)
    plain = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in loss_args)
    torch.library.opcheck(torch.ops.alwa.box_loss_with_grad.default, plain + flags)
    loss = torch.ops.alwa.box_loss.default(*plain)
    grad_loss = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape).to(loss.device)
    torch.library.opcheck(torch.ops.alwa.box_loss_backward.default, (grad_loss,) + plain + flags)
