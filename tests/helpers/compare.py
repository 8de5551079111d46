"""Fused against eager: a loss with its gradients, and the comparison with the reference.

The reference (:mod:`tests/helpers/reference.py`, written from the formulas) always runs on the CPU, so
a CUDA test compares the CUDA kernels with the same independent numbers the CPU test uses.
"""
from __future__ import annotations

import torch

import alwa_ext
from helpers import reference

from .boxes import TOLERANCES
from .devices import to_device


def loss_and_grads(fn, pred, target, *args, **kwargs):
    """(loss, grad_pred, grad_target) of ``fn(pred, target, *args, **kwargs)``.

    The upstream gradient is not uniform (0.5 .. 1.5 over the elements), so backward must scale
    element by element.
    """
    pred = pred.detach().clone().requires_grad_()
    target = target.detach().clone().requires_grad_()
    out = fn(pred, target, *args, **kwargs)
    upstream = torch.linspace(0.5, 1.5, out.numel(), dtype=out.dtype, device=out.device).reshape(out.shape)
    grad_pred, grad_target = torch.autograd.grad(out, (pred, target), upstream)
    return out.detach(), grad_pred, grad_target


def on_cpu(kwargs):
    return {name: to_device(value, "cpu") for name, value in kwargs.items()}


def fused_and_reference(pred, target, *args, **kwargs):
    """Loss and gradients of alwa_ext.box_loss (on the inputs' device) and of the reference (on
    the CPU, same inputs); both on the CPU."""
    fused = loss_and_grads(alwa_ext.box_loss, pred, target, *args, **kwargs)
    eager = loss_and_grads(reference.box_loss, pred.cpu(), target.cpu(), *args, **on_cpu(kwargs))
    return tuple(t.cpu() for t in fused), eager


def tolerance(dtype, kind="giou", options=None):
    """rtol/atol of two float32-computed results of one loss: TOLERANCES[dtype], widened where
    the loss itself is ill-conditioned in float32, so that any two orders of rounding differ."""
    tol = TOLERANCES[dtype]
    if dtype == torch.float32 and kind == "siou":
        # SIoU's gradient (exp of a squared ratio times the angle cost): fused and eager are
        # each up to ~3e-4 from the float64 value on a few boxes.
        tol = dict(rtol=1e-3, atol=1e-5)
    if dtype == torch.float32 and (options or {}).get("alpha", 1.0) < 1:
        # x**alpha has slope alpha * x**(alpha - 1), unbounded as x -> 0: on a nearly nested
        # pair it magnifies float32's cancellation in GIoU's C - U to ~3e-3 of the gradient.
        tol = dict(rtol=1e-2, atol=tol["atol"])
    return tol


def assert_matches_reference(pred, target, *args, tol=None, **kwargs):
    """alwa_ext.box_loss equals the reference in loss and both gradients, dtype and shape."""
    tol = tol or TOLERANCES[pred.dtype]
    fused, eager = fused_and_reference(pred, target, *args, **kwargs)
    for name, a, b in zip(("loss", "grad_pred", "grad_target"), fused, eager):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        torch.testing.assert_close(a, b, **tol, msg=lambda m: f"{name}: {m}")


def assert_close64(actual, expected):
    """float64 results of two formulations of the same function."""
    torch.testing.assert_close(actual, expected, rtol=1e-9, atol=1e-12)
