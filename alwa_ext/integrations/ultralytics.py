"""ultralytics YOLO detection training with alwa_ext's fused IoU loss and ALWA.

- :class:`FusedBboxLoss`: ultralytics' ``BboxLoss`` with its IoU term (CIoU, or any alwa_ext
  IoU kind) computed by :func:`alwa_ext.box_loss`, and no host sync.
- :class:`AlwaDetectionLoss` / :class:`AlwaE2EDetectionLoss`: the detection criteria
  (``v8DetectionLoss`` for YOLOv8 / YOLO11 heads, ``E2ELoss`` for end-to-end heads such as
  YOLO26's) with that box loss and :class:`alwa_ext.ALWA` over the classification / box pair.
- :class:`AlwaDetectionTrainer`: a ``DetectionTrainer`` that installs the criterion, saves
  ALWA's state in ultralytics' checkpoints and restores it on ``resume``.

How the gains and λ combine. ultralytics scales its three losses by the trainer arguments
``box``, ``cls`` and ``dfl`` (the "gains"). ALWA acts on the gained pair, so the loss that is
back-propagated is, per image of the batch,

    λreg · box · L_box  +  λcls · cls · L_cls  +  dfl · L_dfl

ALWA's statistics are those of ``cls · L_cls`` and ``box · L_box``. λreg (``reg_weight``,
default 1) never changes; an update (when the classification statistic is the larger) sets
λcls to the ratio of the two windows, which cancels ``cls``: from the default start, the first
update makes ``λcls · cls`` = ``box`` · stat(L_box) / stat(L_cls), whatever ``cls`` was (with
``update="stable"`` every update does; the published "paper" rule then alternates, see
docs/alwa.md). ``cls`` decides the weighting until then; ``box`` scales both terms' statistics and
``dfl`` is outside ALWA. The logged loss items
(``box_loss``, ``cls_loss``, ``dfl_loss``) stay ultralytics' gained, unweighted values; λcls
is logged as the ``alwa/lambda_cls`` column of results.csv.

Importing this module imports ultralytics.
"""
from __future__ import annotations

import copy
import functools
from typing import Any, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from ..functional import box_loss
from ..kinds import IOU_KINDS
from ..weighting import ALWA
from ._common import check_loss_config, import_framework

import_framework("ultralytics", "alwa_ext.integrations.ultralytics", "pip install ultralytics")

from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402
from ultralytics.utils import DEFAULT_CFG, LOGGER  # noqa: E402
from ultralytics.utils.loss import BboxLoss, E2ELoss, v8DetectionLoss  # noqa: E402
from ultralytics.utils.tal import bbox2dist  # noqa: E402
from ultralytics.utils.torch_utils import unwrap_model  # noqa: E402

if not hasattr(v8DetectionLoss, "get_assigned_targets_and_loss"):  # the hook this adapter extends
    import ultralytics as _ultralytics

    raise ImportError(
        f"alwa_ext.integrations.ultralytics needs ultralytics >= 8.4 (v8DetectionLoss.get_assigned_targets_and_loss); "
        f"found {_ultralytics.__version__}: `pip install -U ultralytics`"
    )

# The attribute of the checkpoint's EMA model that carries the adapter's configuration and
# ALWA's state: a plain dict of tensors and numbers, so the checkpoint still loads (also with
# ultralytics' weights-only loader) where alwa_ext is not installed.
CHECKPOINT_ATTRIBUTE = "alwa_ext_state"
CHECKPOINT_VERSION = 1
DEFAULT_ALWA_OPTIONS = {"mode": "alwa2", "interval": 100}


def _common_dtype(a: Tensor, b: Tensor) -> torch.dtype:
    return torch.promote_types(a.dtype, b.dtype)


class FusedBboxLoss(BboxLoss):
    """``BboxLoss`` with the IoU term from :func:`alwa_ext.box_loss` (``loss``: an IoU kind).

    Same inputs and outputs as ultralytics' ``BboxLoss.forward``: ``(loss_iou, loss_dfl)``,
    each summed over the foreground with weight = the anchor's summed target score, divided by
    ``target_scores_sum``. ultralytics selects the foreground with ``nonzero`` (a host sync);
    here every anchor enters with its weight times the foreground mask (0 on the background),
    so the shapes never depend on the assignment. The DFL / L1 term is ultralytics' formula.
    With ``loss="ciou"`` the IoU term equals ultralytics' CIoU up to where eps goes (ultralytics
    adds it to the heights; see docs/api.md, "Conventions").
    """

    def __init__(self, reg_max: int = 16, loss: str = "ciou", **loss_options) -> None:
        super().__init__(reg_max)
        self.loss_options = check_loss_config(loss, loss_options, IOU_KINDS)
        self.loss_kind = loss

    def extra_repr(self) -> str:
        return f"loss={self.loss_kind!r}" + "".join(f", {k}={v!r}" for k, v in self.loss_options.items())

    def forward(
        self,
        pred_dist: Tensor,
        pred_bboxes: Tensor,
        anchor_points: Tensor,
        target_bboxes: Tensor,
        target_scores: Tensor,
        target_scores_sum: Tensor,
        fg_mask: Tensor,
        imgsz: Tensor,
        stride: Tensor,
    ) -> tuple[Tensor, Tensor]:
        weight = target_scores.sum(-1) * fg_mask  # (batch, anchors), 0 on the background
        # Under AMP the decoded boxes may be float16 and the targets float32: compare in the
        # wider type (box_loss computes half types in float32 anyway).
        dtype = _common_dtype(pred_bboxes, target_bboxes)
        loss_iou = (
            box_loss(
                pred_bboxes.to(dtype),
                target_bboxes.to(dtype),
                self.loss_kind,
                weight=weight.to(dtype),
                reduction="sum",
                **self.loss_options,
            )
            / target_scores_sum
        )
        weight = weight.unsqueeze(-1)
        if self.dfl_loss:
            reg_max = self.dfl_loss.reg_max
            target_ltrb = bbox2dist(anchor_points, target_bboxes, reg_max - 1)
            loss_dfl = self.dfl_loss(pred_dist.reshape(-1, reg_max), target_ltrb) * weight
        else:
            # reg_max == 1: L1 on the distances normalised by the image size, as ultralytics.
            target_ltrb = bbox2dist(anchor_points, target_bboxes) * stride
            target_ltrb[..., 0::2] /= imgsz[1]
            target_ltrb[..., 1::2] /= imgsz[0]
            pred_dist = pred_dist * stride
            pred_dist[..., 0::2] /= imgsz[1]
            pred_dist[..., 1::2] /= imgsz[0]
            loss_dfl = F.l1_loss(pred_dist, target_ltrb, reduction="none").mean(-1, keepdim=True) * weight
        return loss_iou, loss_dfl.sum() / target_scores_sum


def _check_alwa(alwa) -> None:
    if alwa is not None and not isinstance(alwa, ALWA):
        raise TypeError(f"alwa: expected an alwa_ext.ALWA or None, got {type(alwa).__name__}")


class AlwaDetectionLoss(v8DetectionLoss):
    """``v8DetectionLoss`` with :class:`FusedBboxLoss` and, if ``alwa`` is given, ALWA.

    Args:
        model: the (de-paralleled) ``DetectionModel``, with ``model.args`` holding the gains.
        alwa: an :class:`alwa_ext.ALWA` weighting the gained (cls, box) pair, or None (then the
            loss equals ultralytics' with the chosen box kind).
        loss: the IoU kind of the box term (``"ciou"``, ultralytics' own, by default).
        tal_topk, tal_topk2: the assigner's, as in ``v8DetectionLoss``.
        loss_options: ``eps``, ``alpha`` (Alpha-IoU), ``focal_gamma`` (Focal-EIoU).

    Set it with ``model.criterion = build_criterion(model, alwa=ALWA())`` (which picks
    :class:`AlwaE2EDetectionLoss` for end-to-end heads), or let :class:`AlwaDetectionTrainer`
    install it.
    """

    def __init__(self, model, alwa: Optional[ALWA] = None, loss: str = "ciou", tal_topk: int = 10, tal_topk2: Optional[int] = None, **loss_options) -> None:
        _check_alwa(alwa)
        super().__init__(model, tal_topk=tal_topk, tal_topk2=tal_topk2)
        self.bbox_loss = FusedBboxLoss(self.reg_max, loss, **loss_options).to(self.device)
        self.alwa = alwa

    def get_assigned_targets_and_loss(self, preds: dict[str, Tensor], batch: dict[str, Any], **assign_kwargs) -> tuple:
        assigned, loss, loss_items = super().get_assigned_targets_and_loss(preds, batch, **assign_kwargs)
        if self.alwa is not None:
            # loss = (box, cls, dfl), gained; loss_items keep the unweighted values for logging.
            weighted_cls, weighted_box = self.alwa(loss[1], loss[0])
            loss = torch.stack((weighted_box, weighted_cls, loss[2]))
        return assigned, loss, loss_items


class AlwaE2EDetectionLoss(E2ELoss):
    """``E2ELoss`` (one-to-many + one-to-one heads, e.g. YOLO26) with fused box losses and ALWA.

    Both branches use :class:`AlwaDetectionLoss` without ALWA; ALWA then weights the combined
    pair ``o2m · branch_many + o2o · branch_one`` (per image), once per iteration.
    """

    def __init__(self, model, alwa: Optional[ALWA] = None, loss: str = "ciou", **loss_options) -> None:
        _check_alwa(alwa)
        super().__init__(model, loss_fn=functools.partial(AlwaDetectionLoss, alwa=None, loss=loss, **loss_options))
        self.alwa = alwa

    def __call__(self, preds: Any, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        preds = self.one2many.parse_output(preds)
        one2many, one2one = preds["one2many"], preds["one2one"]
        loss_one2many, _ = self.one2many.loss(one2many, batch)
        loss_one2one, loss_items = self.one2one.loss(one2one, batch)
        loss = loss_one2many * self.o2m + loss_one2one * self.o2o  # (box, cls, dfl) x batch size
        if self.alwa is not None:
            batch_size = one2many["boxes"].shape[0]
            weighted_cls, weighted_box = self.alwa(loss[1] / batch_size, loss[0] / batch_size)
            loss = torch.stack((weighted_box * batch_size, weighted_cls * batch_size, loss[2]))
        return loss, loss_items


def build_criterion(model, alwa: Optional[ALWA] = None, loss: str = "ciou", **loss_options):
    """The criterion ``DetectionModel.init_criterion`` would build, with alwa_ext's losses."""
    model = unwrap_model(model)
    if not isinstance(model, DetectionModel) or type(model).init_criterion is not DetectionModel.init_criterion:
        raise TypeError(
            f"model: expected an ultralytics detection model (DetectionModel), got {type(model).__name__} "
            "(segmentation, pose and OBB criteria are not adapted)"
        )
    if getattr(model.model[-1], "one2one_cv2", None) is not None:
        return AlwaE2EDetectionLoss(model, alwa=alwa, loss=loss, **loss_options)
    return AlwaDetectionLoss(model, alwa=alwa, loss=loss, **loss_options)


_CRITERIA = (AlwaDetectionLoss, AlwaE2EDetectionLoss)


class AlwaDetectionTrainer(DetectionTrainer):
    """``DetectionTrainer`` training with alwa_ext's fused box loss and ALWA.

    The configuration lives in class attributes, because ultralytics builds the trainer itself
    (``YOLO(...).train(trainer=...)``, and again in each DDP worker): make a configured class
    with :meth:`configure`. Defaults: ``box_loss="ciou"``, ALWA_2 with C = 100.

    - The criterion (:func:`build_criterion`) is installed on the model once the model, its
      gains and the device are set up; the EMA model gets one without ALWA for the validation
      losses, so validating never records into ALWA.
    - ALWA's state and the configuration go into every checkpoint (``last.pt``, ``best.pt``)
      as the ``alwa_ext_state`` attribute of the checkpoint's ``ema`` model. ``resume``
      restores them, mid-window included, and continues with the checkpoint's configuration
      (ultralytics likewise resumes with the checkpoint's arguments).
    """

    box_loss: str = "ciou"
    box_loss_options: dict = {}
    alwa_options: Optional[dict] = DEFAULT_ALWA_OPTIONS

    @classmethod
    def configure(cls, box_loss: str = "ciou", alwa: Optional[dict] = DEFAULT_ALWA_OPTIONS, **box_loss_options) -> type:
        """A subclass with this configuration, to pass as ``trainer=``.

        Args:
            box_loss: an IoU kind (``alwa_ext.kinds.IOU_KINDS``).
            alwa: keyword arguments of :class:`alwa_ext.ALWA` (``mode``, ``interval``,
                ``cls_weight``, ``reg_weight``, ``update``, ``sync``), or None for no ALWA.
            box_loss_options: ``eps``, ``alpha``, ``focal_gamma`` of :func:`alwa_ext.box_loss`.
        """
        options = _check_config(box_loss, box_loss_options, alwa)
        attributes = {"box_loss": box_loss, "box_loss_options": options, "alwa_options": None if alwa is None else dict(alwa)}
        return type(cls.__name__, (cls,), {**attributes, "__module__": cls.__module__, "__qualname__": cls.__qualname__})

    def __init__(self, cfg=DEFAULT_CFG, overrides=None, _callbacks=None) -> None:
        _check_config(self.box_loss, self.box_loss_options, self.alwa_options)
        super().__init__(cfg, overrides, _callbacks)
        self.alwa = None if self.alwa_options is None else ALWA(**self.alwa_options)

    # -------------------------------------------------------------------- criterion

    def build_criterion(self, model, alwa: Optional[ALWA]):
        return build_criterion(model, alwa, self.box_loss, **self.box_loss_options)

    def resume_training(self, ckpt) -> None:
        # Called once by _setup_train, after the model, its args, the device and the EMA are
        # set up and (when resuming) the checkpoint is loaded: where the criterion can be built.
        super().resume_training(ckpt)
        if ckpt is not None and self.resume:
            self._restore(ckpt)
        model = unwrap_model(self.model)
        criterion = self.build_criterion(model, self.alwa)
        if isinstance(criterion, E2ELoss) and ckpt is not None and self.resume:
            criterion.updates = self.start_epoch - 1  # the one2many/one2one schedule, as ultralytics
            criterion.update()
        model.criterion = criterion

    def validate(self):
        ema = self.ema.ema if self.ema else None
        if ema is not None and not isinstance(getattr(ema, "criterion", None), _CRITERIA):
            ema.criterion = self.build_criterion(ema, None)
        return super().validate()

    # -------------------------------------------------------------------- checkpoints

    def checkpoint_state(self) -> dict:
        """What goes into the checkpoint: the configuration and ALWA's state_dict (CPU)."""
        alwa_state = None
        if self.alwa is not None:
            alwa_state = {
                name: value.detach().cpu().clone() if isinstance(value, Tensor) else copy.deepcopy(value)
                for name, value in self.alwa.state_dict().items()
            }
        return {
            "version": CHECKPOINT_VERSION,
            "box_loss": self.box_loss,
            "box_loss_options": dict(self.box_loss_options),
            "alwa_options": None if self.alwa_options is None else dict(self.alwa_options),
            "alwa": alwa_state,
        }

    def save_model(self):
        ema = self.ema.ema
        setattr(ema, CHECKPOINT_ATTRIBUTE, self.checkpoint_state())  # save_model deep-copies ema
        try:
            return super().save_model()
        finally:
            delattr(ema, CHECKPOINT_ATTRIBUTE)

    def _restore(self, ckpt: dict) -> None:
        saved_model = ckpt.get("ema") if ckpt.get("ema") is not None else ckpt.get("model")
        state = getattr(saved_model, CHECKPOINT_ATTRIBUTE, None)
        if state is None:
            LOGGER.warning(f"{type(self).__name__}: the checkpoint holds no alwa_ext state; ALWA starts afresh")
            return
        saved = (state["box_loss"], state["box_loss_options"], state["alwa_options"])
        if saved != (self.box_loss, dict(self.box_loss_options), self.alwa_options):
            LOGGER.warning(
                f"{type(self).__name__}: resuming with the checkpoint's box_loss={saved[0]!r}, options={saved[1]}, "
                f"alwa={saved[2]} (not the trainer's)"
            )
        self.box_loss, self.box_loss_options, self.alwa_options = saved[0], dict(saved[1]), saved[2]
        self.alwa = None if self.alwa_options is None else ALWA(**self.alwa_options)
        if self.alwa is not None and state["alwa"] is not None:
            self.alwa.load_state_dict(state["alwa"])
            self.alwa.to(self.device)

    # -------------------------------------------------------------------- logging

    def save_metrics(self, metrics) -> None:
        if self.alwa is not None:  # once per epoch, outside the training step
            metrics = {**metrics, "alwa/lambda_cls": float(self.alwa.weights[0])}
        super().save_metrics(metrics)


def _check_config(box_loss: str, box_loss_options: dict, alwa_options: Optional[dict]) -> dict:
    options = check_loss_config(box_loss, box_loss_options, IOU_KINDS)
    if alwa_options is not None:
        if not isinstance(alwa_options, dict):
            raise TypeError(f"alwa: expected a dict of alwa_ext.ALWA arguments or None, got {type(alwa_options).__name__}")
        ALWA(**alwa_options)  # its ValueError / TypeError name the bad argument
    return options


__all__ = [
    "FusedBboxLoss",
    "AlwaDetectionLoss",
    "AlwaE2EDetectionLoss",
    "AlwaDetectionTrainer",
    "build_criterion",
    "CHECKPOINT_ATTRIBUTE",
]
