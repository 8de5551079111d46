"""torch.library.opcheck over every form of box_loss for one call."""
from __future__ import annotations

import torch


def opcheck_box_loss(args) -> None:
    """args: box_loss's 15 arguments followed by grad_pred, grad_target (box_loss_with_grad's)."""
    loss_args, flags = tuple(args[:15]), tuple(args[15:])
    # The public op, with the autograd of csrc/autograd (inputs that require grad exercise it).
    torch.library.opcheck(torch.ops.alwa.box_loss.default, loss_args)
    plain = tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in loss_args)
    torch.library.opcheck(torch.ops.alwa.box_loss_with_grad.default, plain + flags)
    loss = torch.ops.alwa.box_loss.default(*plain)
    grad_loss = torch.linspace(0.5, 1.5, loss.numel(), dtype=loss.dtype).reshape(loss.shape)
    torch.library.opcheck(torch.ops.alwa.box_loss_backward.default, (grad_loss,) + plain + flags)
