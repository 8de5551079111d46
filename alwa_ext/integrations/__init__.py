"""Adapters that plug alwa_ext's fused box losses and ALWA into detection frameworks.

Each submodule imports its framework when it is itself imported; this package imports none:

- ``alwa_ext.integrations.torchvision``: ``fuse_box_loss(model, loss=...)`` for RetinaNet and
  FCOS, ``weight_losses(loss_dict, alwa)`` for every torchvision detector's loss dict.
- ``alwa_ext.integrations.ultralytics``: ``AlwaDetectionLoss`` (fused IoU term of ``BboxLoss``,
  ALWA over the cls/box pair) and ``AlwaDetectionTrainer`` that installs it.
- ``alwa_ext.integrations.mmdet``: ``register()`` puts ``Alwa``-prefixed loss modules and
  ``ALWAHook`` into mmdet's (or any mmengine) registries.

See docs/integrations.md.
"""

__all__ = ["torchvision", "ultralytics", "mmdet"]
