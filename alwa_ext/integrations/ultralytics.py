"""ultralytics YOLO detection training with alwa_ext's fused loss stage and ALWA.

- :class:`FusedTaskAlignedAssigner`: ultralytics' ``TaskAlignedAssigner`` as one op
  (:func:`alwa_ext.task_aligned_assign`): same arguments, same five outputs, no
  (batch, boxes, anchors) tensor.
- :class:`FusedBboxLoss`: ultralytics' ``BboxLoss`` with its IoU term (CIoU, or any alwa_ext
  IoU kind) computed by :func:`alwa_ext.box_loss` and its DFL by
  :func:`alwa_ext.distribution_focal_loss`, and no host sync.
- :class:`AlwaDetectionLoss` / :class:`AlwaE2EDetectionLoss`: the detection criteria
  (``v8DetectionLoss`` for YOLOv8 / YOLO11 heads, ``E2ELoss`` for end-to-end heads such as
  YOLO26's) with the fused assigner, that box loss, the classification BCE as
  :func:`alwa_ext.sigmoid_focal_loss` (gamma 0) and :class:`alwa_ext.ALWA` over the
  classification / box pair.
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

from ..assign import task_aligned_assign
from ..functional import box_loss, distribution_expectation, distribution_focal_loss, sigmoid_focal_loss
from ..kinds import IOU_KINDS
from ..weighting import ALWA
from ._common import check_loss_config, import_framework

import_framework("ultralytics", "alwa_ext.integrations.ultralytics", "pip install ultralytics")

from ultralytics.models.yolo.detect import DetectionTrainer  # noqa: E402
from ultralytics.nn.tasks import DetectionModel  # noqa: E402
from ultralytics.utils import DEFAULT_CFG, LOGGER  # noqa: E402
from ultralytics.utils.loss import BboxLoss, E2ELoss, v8DetectionLoss  # noqa: E402
from ultralytics.utils.tal import TaskAlignedAssigner, bbox2dist, dist2bbox, make_anchors  # noqa: E402
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
# The assigners a criterion can use: alwa_ext's op, or ultralytics' own TaskAlignedAssigner.
ASSIGNERS = ("fused", "ultralytics")


def _common_dtype(a: Tensor, b: Tensor) -> torch.dtype:
    return torch.promote_types(a.dtype, b.dtype)


class FusedTaskAlignedAssigner(TaskAlignedAssigner):
    """ultralytics' ``TaskAlignedAssigner``, its assignment as one op (:func:`alwa_ext.task_aligned_assign`).

    The constructor and ``forward(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes,
    mask_gt)`` are ultralytics'; so are the five outputs (target labels, boxes, scores,
    foreground mask, gt index), including their dtypes and the all-background result of a
    batch without boxes. Only the anchors inside a box are scored, nothing of shape
    (batch, boxes, anchors) is made, and it never retries image by image (it has no
    out-of-memory fallback to need). Ties between equal metrics go to the lower anchor index,
    as on CUDA in ultralytics; its CPU top-k takes some of them in another order (docs/api.md).
    """

    def forward(self, pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, **extra):
        return self.assign(pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, **extra)

    def assign(self, pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, logits: bool = False, **extra):
        """``forward``; with ``logits=True`` ``pd_scores`` holds logits, whose sigmoid the op
        takes where it reads one (the criterion passes the head's logits, sparing a sigmoid of
        the whole (batch, anchors, classes) tensor)."""
        if extra:
            raise TypeError(f"FusedTaskAlignedAssigner takes no extra tensors (pair_overlaps); got {sorted(extra)}")
        if pd_scores.shape[-1] != self.num_classes:
            raise ValueError(f"pd_scores: expected {self.num_classes} classes (num_classes), got shape {tuple(pd_scores.shape)}")
        if gt_bboxes.shape[1] == 0:  # ultralytics' own result, dtypes included
            return (
                torch.full_like(pd_scores[..., 0], self.num_classes),
                torch.zeros_like(pd_bboxes),
                torch.zeros_like(pd_scores),
                torch.zeros_like(pd_scores[..., 0], dtype=torch.bool),
                torch.zeros_like(pd_scores[..., 0]),
            )
        return task_aligned_assign(
            pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, topk=self.topk, topk2=self.topk2,
            alpha=self.alpha, beta=self.beta, eps=self.eps, min_side=float(self.stride_val), logits=logits,
        )

    @classmethod
    def like(cls, assigner: TaskAlignedAssigner) -> "FusedTaskAlignedAssigner":
        """The fused assigner with another's settings (a criterion's own TaskAlignedAssigner)."""
        fused = cls(topk=assigner.topk, num_classes=assigner.num_classes, alpha=assigner.alpha, beta=assigner.beta,
                    stride=list(assigner.stride), eps=assigner.eps, topk2=assigner.topk2)
        fused.stride_val = assigner.stride_val
        return fused


def _anchor_scores(target_scores: Tensor, target_labels: Tensor) -> Tensor:
    """Each anchor's target score at its label (B, A): the sum over classes of the assigner's
    target scores, which hold at most one nonzero value an anchor, read without the rest."""
    index = target_labels.clamp(0, target_scores.shape[-1] - 1).unsqueeze(-1)
    return target_scores.gather(-1, index).squeeze(-1)


class FusedBboxLoss(BboxLoss):
    """``BboxLoss`` with the IoU term from :func:`alwa_ext.box_loss` (``loss``: an IoU kind) and
    the DFL from :func:`alwa_ext.distribution_focal_loss`.

    Same inputs and outputs as ultralytics' ``BboxLoss.forward``: ``(loss_iou, loss_dfl)``,
    each summed over the foreground with weight = the anchor's summed target score, divided by
    ``target_scores_sum``. ultralytics selects the foreground with ``nonzero`` (a host sync);
    here every anchor enters with its weight times the foreground mask (0 on the background),
    so the shapes never depend on the assignment, and the DFL skips the rows of weight 0 (on
    the CPU and CUDA alike). With ``loss="ciou"`` the IoU term equals ultralytics' CIoU up to
    where eps goes (ultralytics adds it to the heights; see docs/api.md, "Conventions").
    ``anchor_weight`` (B, A), where the caller has it (``_anchor_scores``), replaces the sum of
    ``target_scores`` over classes.
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
        anchor_weight: Optional[Tensor] = None,
    ) -> tuple[Tensor, Tensor]:
        if anchor_weight is None:
            anchor_weight = target_scores.sum(-1)
        weight = anchor_weight * fg_mask  # (batch, anchors), 0 on the background
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
        if self.dfl_loss:
            reg_max = self.dfl_loss.reg_max
            # ultralytics' targets, clamped by it to [0, reg_max - 1.01]; its DFLoss is the mean
            # over a box's four sides, hence the 4.
            target_ltrb = bbox2dist(anchor_points, target_bboxes, reg_max - 1)
            distributions = pred_dist.reshape(*pred_dist.shape[:-1], 4, reg_max)
            loss_dfl = distribution_focal_loss(distributions, target_ltrb.to(distributions.dtype), weight=weight,
                                               reduction="sum")
            return loss_iou, loss_dfl / (4 * target_scores_sum)
        # reg_max == 1: L1 on the distances normalised by the image size, as ultralytics.
        target_ltrb = bbox2dist(anchor_points, target_bboxes) * stride
        target_ltrb[..., 0::2] /= imgsz[1]
        target_ltrb[..., 1::2] /= imgsz[0]
        pred_dist = pred_dist * stride
        pred_dist[..., 0::2] /= imgsz[1]
        pred_dist[..., 1::2] /= imgsz[0]
        loss_l1 = F.l1_loss(pred_dist, target_ltrb, reduction="none").mean(-1) * weight
        return loss_iou, loss_l1.sum() / target_scores_sum


def _check_alwa(alwa) -> None:
    if alwa is not None and not isinstance(alwa, ALWA):
        raise TypeError(f"alwa: expected an alwa_ext.ALWA or None, got {type(alwa).__name__}")


def _check_assigner(assigner) -> None:
    if assigner not in ASSIGNERS:
        raise ValueError(f"assigner: expected one of {', '.join(map(repr, ASSIGNERS))}, got {assigner!r}")


class AlwaDetectionLoss(v8DetectionLoss):
    """``v8DetectionLoss`` with the fused loss stage and, if ``alwa`` is given, ALWA.

    The task-aligned assignment is :class:`FusedTaskAlignedAssigner` (``assigner="ultralytics"``
    keeps ultralytics' own), the classification BCE is :func:`alwa_ext.sigmoid_focal_loss` with
    gamma 0 and no alpha (binary cross-entropy, its gradient in the same pass), the box and DFL
    terms :class:`FusedBboxLoss`, the box decoding (the distributions' expectations)
    :func:`alwa_ext.distribution_expectation`. The losses equal ultralytics' (tests compare
    them to 1e-5); the data preparation (``preprocess``) is ultralytics' own code.

    Args:
        model: the (de-paralleled) ``DetectionModel``, with ``model.args`` holding the gains.
        alwa: an :class:`alwa_ext.ALWA` weighting the gained (cls, box) pair, or None (then the
            loss equals ultralytics' with the chosen box kind).
        loss: the IoU kind of the box term (``"ciou"``, ultralytics' own, by default).
        tal_topk, tal_topk2: the assigner's, as in ``v8DetectionLoss``.
        assigner: ``"fused"`` or ``"ultralytics"``.
        loss_options: ``eps``, ``alpha`` (Alpha-IoU), ``focal_gamma`` (Focal-EIoU).

    Set it with ``model.criterion = build_criterion(model, alwa=ALWA())`` (which picks
    :class:`AlwaE2EDetectionLoss` for end-to-end heads), or let :class:`AlwaDetectionTrainer`
    install it.
    """

    def __init__(self, model, alwa: Optional[ALWA] = None, loss: str = "ciou", tal_topk: int = 10,
                 tal_topk2: Optional[int] = None, assigner: str = "fused", **loss_options) -> None:
        _check_alwa(alwa)
        _check_assigner(assigner)
        super().__init__(model, tal_topk=tal_topk, tal_topk2=tal_topk2)
        self.bbox_loss = FusedBboxLoss(self.reg_max, loss, **loss_options).to(self.device)
        if assigner == "fused":
            self.assigner = FusedTaskAlignedAssigner.like(self.assigner)
        self.alwa = alwa

    def bbox_decode(self, anchor_points: Tensor, pred_dist: Tensor) -> Tensor:
        # ultralytics': softmax over each side's bins, then @ arange(reg_max); one op here.
        if self.use_dfl:
            b, a, c = pred_dist.shape
            pred_dist = distribution_expectation(pred_dist.view(b, a, 4, c // 4))
        return dist2bbox(pred_dist, anchor_points, xywh=False)

    def get_assigned_targets_and_loss(self, preds: dict[str, Tensor], batch: dict[str, Any], **assign_kwargs) -> tuple:
        assigned, loss, loss_items = self._targets_and_loss(preds, batch, **assign_kwargs)
        if self.alwa is not None:
            # loss = (box, cls, dfl), gained; loss_items keep the unweighted values for logging.
            weighted_cls, weighted_box = self.alwa(loss[1], loss[0])
            loss = torch.stack((weighted_box, weighted_cls, loss[2]))
        return assigned, loss, loss_items

    def _targets_and_loss(self, preds: dict[str, Tensor], batch: dict[str, Any], **assign_kwargs) -> tuple:
        # v8DetectionLoss.get_assigned_targets_and_loss, step for step, with the fused terms.
        pred_distri = preds["boxes"].permute(0, 2, 1).contiguous()
        pred_scores = preds["scores"].permute(0, 2, 1).contiguous()
        anchor_points, stride_tensor = make_anchors(preds["feats"], self.stride, 0.5)
        dtype = pred_scores.dtype
        batch_size = pred_scores.shape[0]
        imgsz = torch.tensor(preds["feats"][0].shape[2:], device=self.device, dtype=dtype) * self.stride[0]
        targets = torch.cat((batch["batch_idx"].view(-1, 1), batch["cls"].view(-1, 1), batch["bboxes"]), 1)
        targets = self.preprocess(targets.to(self.device), batch_size, scale_tensor=imgsz[[1, 0, 1, 0]])
        gt_labels, gt_bboxes = targets.split((1, 4), 2)
        mask_gt = gt_bboxes.sum(2, keepdim=True).gt_(0.0)
        pred_bboxes = self.bbox_decode(anchor_points, pred_distri)

        assign_inputs = ((pred_bboxes.detach() * stride_tensor).type(gt_bboxes.dtype), anchor_points * stride_tensor,
                         gt_labels, gt_bboxes, mask_gt)
        if isinstance(self.assigner, FusedTaskAlignedAssigner):  # the sigmoid of only the scores it reads
            assigned = self.assigner.assign(pred_scores.detach(), *assign_inputs, logits=True, **assign_kwargs)
        else:
            assigned = self.assigner(pred_scores.detach().sigmoid(), *assign_inputs, **assign_kwargs)
        target_labels, target_bboxes, target_scores, fg_mask, target_gt_idx = assigned
        anchor_weight = _anchor_scores(target_scores, target_labels.long()) if target_labels.dtype == torch.int64 else None
        # ultralytics sums the (B, A, C) target scores; one value an anchor sums to the same.
        target_scores_sum = (target_scores.sum() if anchor_weight is None else anchor_weight.sum()).clamp_(min=1)

        # Binary cross-entropy = the focal loss with gamma 0 and no alpha, its gradient in the
        # forward pass; class weights, where the model has them, as a per-element weight.
        class_weight = None
        if self.class_weights is not None:
            class_weight = self.class_weights.to(dtype).expand_as(pred_scores)
        loss_cls = sigmoid_focal_loss(pred_scores, target_scores.to(dtype), alpha=None, gamma=0.0, weight=class_weight,
                                      reduction="sum")
        loss_box, loss_dfl = self.bbox_loss(
            pred_distri, pred_bboxes, anchor_points, target_bboxes / stride_tensor, target_scores, target_scores_sum,
            fg_mask, imgsz, stride_tensor, anchor_weight=anchor_weight,
        )
        loss = torch.stack((loss_box * self.hyp.box, loss_cls / target_scores_sum * self.hyp.cls, loss_dfl * self.hyp.dfl))
        return (
            (fg_mask, target_gt_idx, target_bboxes, anchor_points, stride_tensor),
            loss,
            dict(zip(self.loss_names, loss.detach())),
        )


class AlwaE2EDetectionLoss(E2ELoss):
    """``E2ELoss`` (one-to-many + one-to-one heads, e.g. YOLO26) with fused box losses and ALWA.

    Both branches use :class:`AlwaDetectionLoss` without ALWA (the one-to-many branch assigns
    with topk 10, the one-to-one with topk 7 and topk2 1, as ultralytics); ALWA then weights the combined
    pair ``o2m · branch_many + o2o · branch_one`` (per image), once per iteration.
    """

    def __init__(self, model, alwa: Optional[ALWA] = None, loss: str = "ciou", assigner: str = "fused",
                 **loss_options) -> None:
        _check_alwa(alwa)
        _check_assigner(assigner)
        super().__init__(model, loss_fn=functools.partial(AlwaDetectionLoss, alwa=None, loss=loss, assigner=assigner,
                                                          **loss_options))
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


def build_criterion(model, alwa: Optional[ALWA] = None, loss: str = "ciou", assigner: str = "fused", **loss_options):
    """The criterion ``DetectionModel.init_criterion`` would build, with alwa_ext's loss stage
    (``assigner="ultralytics"``: with ultralytics' own assigner)."""
    model = unwrap_model(model)
    if not isinstance(model, DetectionModel) or type(model).init_criterion is not DetectionModel.init_criterion:
        raise TypeError(
            f"model: expected an ultralytics detection model (DetectionModel), got {type(model).__name__} "
            "(segmentation, pose and OBB criteria are not adapted)"
        )
    if getattr(model.model[-1], "one2one_cv2", None) is not None:
        return AlwaE2EDetectionLoss(model, alwa=alwa, loss=loss, assigner=assigner, **loss_options)
    return AlwaDetectionLoss(model, alwa=alwa, loss=loss, assigner=assigner, **loss_options)


_CRITERIA = (AlwaDetectionLoss, AlwaE2EDetectionLoss)


class AlwaDetectionTrainer(DetectionTrainer):
    """``DetectionTrainer`` training with alwa_ext's fused box loss and ALWA.

    The configuration lives in class attributes, because ultralytics builds the trainer itself
    (``YOLO(...).train(trainer=...)``, and again in each DDP worker): make a configured class
    with :meth:`configure`. Defaults: ``box_loss="ciou"``, ALWA_2 with C = 100, the fused
    assigner.

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
    assigner: str = "fused"

    @classmethod
    def configure(cls, box_loss: str = "ciou", alwa: Optional[dict] = DEFAULT_ALWA_OPTIONS, assigner: str = "fused",
                  **box_loss_options) -> type:
        """A subclass with this configuration, to pass as ``trainer=``.

        Args:
            box_loss: an IoU kind (``alwa_ext.kinds.IOU_KINDS``).
            alwa: keyword arguments of :class:`alwa_ext.ALWA` (``mode``, ``interval``,
                ``cls_weight``, ``reg_weight``, ``update``, ``sync``), or None for no ALWA.
            assigner: ``"fused"`` (:class:`FusedTaskAlignedAssigner`) or ``"ultralytics"`` (its own);
                the choice of speed, not of results, so checkpoints do not keep it.
            box_loss_options: ``eps``, ``alpha``, ``focal_gamma`` of :func:`alwa_ext.box_loss`.
        """
        options = _check_config(box_loss, box_loss_options, alwa)
        _check_assigner(assigner)
        attributes = {"box_loss": box_loss, "box_loss_options": options, "alwa_options": None if alwa is None else dict(alwa),
                      "assigner": assigner}
        return type(cls.__name__, (cls,), {**attributes, "__module__": cls.__module__, "__qualname__": cls.__qualname__})

    def __init__(self, cfg=DEFAULT_CFG, overrides=None, _callbacks=None) -> None:
        _check_config(self.box_loss, self.box_loss_options, self.alwa_options)
        super().__init__(cfg, overrides, _callbacks)
        self.alwa = None if self.alwa_options is None else ALWA(**self.alwa_options)

    # -------------------------------------------------------------------- criterion

    def build_criterion(self, model, alwa: Optional[ALWA]):
        return build_criterion(model, alwa, self.box_loss, assigner=self.assigner, **self.box_loss_options)

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
    "FusedTaskAlignedAssigner",
    "FusedBboxLoss",
    "AlwaDetectionLoss",
    "AlwaE2EDetectionLoss",
    "AlwaDetectionTrainer",
    "build_criterion",
    "CHECKPOINT_ATTRIBUTE",
]
