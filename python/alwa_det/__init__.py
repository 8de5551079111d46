"""alwa_det: a small detector training harness (RetinaNet, Faster R-CNN) for alwa_ext.

It trains detectors whose box-regression losses, IoU matching and loss weighting come from
alwa_ext's public API (``box_loss``, ``box_iou``, ``ALWA``), so the paper's experiments
(fixed weights against ALWA_1 / ALWA_2, with L1, SmoothL1 and IoU-family losses) can be
repeated on synthetic shapes, VOC or COCO. ``alwa-train`` (or ``python -m alwa_det``) is the
command line; see :mod:`alwa_det.cli`.
"""
__version__ = "0.1.0"
