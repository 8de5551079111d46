"""The snippets of docs/integrations.md ("Use it from your framework") run as written.

Each ```python block is executed from the document itself. Only what needs the network or
minutes is overridden, and said so: ultralytics' coco8 download and 640-pixel epochs become a
tiny local dataset and 64 pixels.
"""
from __future__ import annotations

import pytest
import torch
from integration_helpers import readme_snippets, single_thread, ultralytics_offline, write_yolo_dataset  # noqa: F401

ultralytics_offline()


def run(code: str) -> dict:
    namespace: dict = {"__name__": "readme_snippet"}
    exec(compile(code, "docs/integrations.md", "exec"), namespace)
    return namespace


@pytest.mark.slow
def test_torchvision_snippet(tmp_path, monkeypatch):
    pytest.importorskip("torchvision")
    from alwa_ext.integrations.torchvision import FusedRetinaNetRegressionHead

    (code,) = readme_snippets("torchvision")
    monkeypatch.chdir(tmp_path)  # it saves a checkpoint in the working folder
    namespace = run(code)
    assert isinstance(namespace["model"].head.regression_head, FusedRetinaNetRegressionHead)
    assert namespace["alwa"].step.item() == 3
    saved = torch.load(tmp_path / "retinanet_alwa.pt", weights_only=True)
    assert saved["alwa"]["step"].item() == 3 and "head.regression_head.bbox_reg.weight" in saved["model"]


@pytest.mark.slow
def test_ultralytics_snippet(tmp_path, monkeypatch):
    pytest.importorskip("ultralytics")
    from ultralytics.data import utils as data_utils
    from ultralytics.engine.model import Model

    (code,) = readme_snippets("ultralytics")
    monkeypatch.setattr(data_utils, "check_font", lambda *args, **kwargs: None)  # would download Arial.ttf
    data = write_yolo_dataset(tmp_path / "data")
    local = dict(data=str(data), epochs=1, imgsz=64, batch=2, nbs=2, workers=0, device="cpu", plots=False,
                 amp=False, project=str(tmp_path / "runs"), name="readme", exist_ok=True, verbose=False)
    train = Model.train

    def train_locally(self, trainer=None, **kwargs):
        assert set(kwargs) == {"data", "epochs", "imgsz"} and trainer is not None  # what the snippet passes
        return train(self, trainer=trainer, **{**kwargs, **local})

    monkeypatch.setattr(Model, "train", train_locally)
    namespace = run(code)
    assert namespace["trainer"].box_loss == "eiou"
    header = (tmp_path / "runs" / "readme" / "results.csv").read_text().splitlines()[0]
    assert "alwa/lambda_cls" in header


def test_mmdet_snippets():
    pytest.importorskip("mmengine")
    from mmengine.registry import HOOKS, MODELS
    from mmengine.utils import import_modules_from_strings

    from alwa_ext.integrations.mmdet import ALWAHook

    config, mmengine_only = readme_snippets("mmdetection")
    namespace = run(mmengine_only)
    assert namespace["loss"].item() > 0 and namespace["pred"].grad is not None
    assert isinstance(namespace["hook"], ALWAHook)

    # The config: its custom_imports import, and (registered above) its entries build.
    config = run(config)
    import_modules_from_strings(**config["custom_imports"])
    loss = MODELS.build(config["model"]["bbox_head"]["loss_bbox"])
    assert type(loss).__name__ == "CIoULoss" and loss.loss_weight == 2.0
    hook = HOOKS.build(config["custom_hooks"][0])
    assert (hook.cls_key, hook.reg_key, hook.alwa.interval) == ("loss_cls", "loss_bbox", 100)
