"""The pretrained condition: `alwa-train pretrain` (a backbone trained on another task, resumable)
and `--backbone-weights` (the detector's backbone starts from it, FPN and heads fresh)."""

import hashlib
import json
import os
import signal
import sys

import pytest
import torch

from alwa_det import cli
from alwa_det import pretrain as pretrain_module
from alwa_det.data import PRETRAIN_CLASSES, SYNTHETIC_CLASSES, SyntheticShapes, build_dataset
from alwa_det.pretrain import make_pretrain_config, pretrain, pretrained_backbone
from alwa_det.distributed import Process
from alwa_det.loop import build_training

from helpers.harness import single_thread, tiny_argv, tiny_config  # noqa: F401

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def tiny_pretraining(out, **overrides):
    values = dict(out=str(out), width=8, image_size=64, train_images=16, eval_images=8, iterations=6, batch_size=4,
                  warmup_iterations=2, log_interval=2, checkpoint_interval=3, threads=1)
    values.update(overrides)
    return make_pretrain_config(values)


def backbone_state(path):
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def test_the_detection_images_of_a_seed_are_fixed_pictures():
    """The detector's images of a seed are fixed pictures (a digest of them): the shapes the data
    can draw besides the detector's (the pretraining's) change nothing in them."""
    digest = hashlib.sha256()
    dataset = SyntheticShapes(40, 128, 3)
    for index in range(40):
        sample = dataset[(index, index % 2 == 1)]
        for tensor in (sample.image, sample.boxes, sample.labels):
            digest.update(tensor.numpy().tobytes())
    assert digest.hexdigest() == "07199e3f87f29e9002753720fab959fe7e2e2ea8325a3e71b941003e4c94effe"


def test_pretraining_images_hold_other_classes_than_the_detectors():
    assert not set(PRETRAIN_CLASSES) & set(SYNTHETIC_CLASSES)
    train_set, eval_set = pretrain_module.datasets(make_pretrain_config({}))
    labels = {int(label) for index in range(60) for label in train_set.annotation(index).labels}
    assert labels == set(range(len(PRETRAIN_CLASSES)))  # every class is drawn
    detection = build_dataset("synthetic", "train", 128, None, 0, 10)
    assert not torch.equal(train_set[0].image, detection[0].image) and not torch.equal(eval_set[0].image, train_set[0].image)
    with pytest.raises(ValueError, match="class_names"):
        SyntheticShapes(4, 64, 0, class_names=("rectangle", "moon"))


def test_a_detector_starts_from_the_pretrained_backbone_with_fresh_heads(tmp_path):
    metrics = pretrain(tiny_pretraining(tmp_path / "pretrain"), show_progress=False)
    path = str(tmp_path / "pretrain" / metrics["backbone"])
    with open(path, "rb") as handle:
        assert hashlib.sha256(handle.read()).hexdigest() == metrics["backbone_sha256"]
    saved = backbone_state(path)
    pretrained = build_training(tiny_config(tmp_path / "a", backbone_weights=path), Process(), torch.device("cpu"))
    scratch = build_training(tiny_config(tmp_path / "b"), Process(), torch.device("cpu"))
    assert pretrained.backbone_weights_sha256 == metrics["backbone_sha256"]
    for key, value in pretrained.model.backbone.state_dict().items():
        assert torch.equal(value, saved[key]), key
    assert any(not torch.equal(value, scratch.model.backbone.state_dict()[key]) for key, value in saved.items())
    # Everything but the backbone is what a run from scratch of the same seed starts with.
    fresh = {k: v for k, v in pretrained.model.state_dict().items() if not k.startswith("backbone.")}
    assert fresh and all(torch.equal(v, scratch.model.state_dict()[k]) for k, v in fresh.items())
    # The run records which file its backbone came from; a resumed run takes its backbone from its
    # checkpoint (the weights file is not read again, and may be gone).
    out = tmp_path / "run"
    assert cli.main(tiny_argv(out) + ["--backbone-weights", path]) == 0
    assert json.loads((out / "metrics.json").read_text())["backbone_weights_sha256"] == metrics["backbone_sha256"]
    os.remove(path)
    assert cli.main(["train", "--resume", str(out), "--iterations", "6"]) == 0
    assert json.loads((out / "metrics.json").read_text())["backbone_weights_sha256"] == metrics["backbone_sha256"]


def test_bad_backbone_weights_are_one_line_and_exit_status_2(tmp_path, capsys):
    metrics = pretrain(tiny_pretraining(tmp_path / "pretrain"), show_progress=False)
    path = str(tmp_path / "pretrain" / metrics["backbone"])
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not torch")
    stray = tmp_path / "stray.pt"
    torch.save({"conv.weight": torch.zeros(3)}, stray)
    cases = [(str(tmp_path / "missing.pt"), [], "no such file"),
             (path, ["--width", "16"], "holds a backbone of small (width 8, blocks 1,1,1,1), the run's is small (width 16"),
             (str(junk), [], "cannot be read as torch weights"),
             (str(stray), [], "does not fit the run's small (width 8, blocks 1,1,1,1) backbone (missing")]
    for index, (weights, extra, message) in enumerate(cases):
        out = tmp_path / f"run{index}"
        assert cli.main(tiny_argv(out) + extra + ["--backbone-weights", weights]) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and message in error and weights in error, error
        assert not out.exists()  # refused before the run folder is made


def test_the_command_stops_on_ctrl_c_and_resume_continues_it(tmp_path, monkeypatch, capsys):
    argv = ["--width", "8", "--image-size", "64", "--train-images", "16", "--eval-images", "8", "--iterations", "6",
            "--batch-size", "4", "--log-interval", "2", "--checkpoint-interval", "3", "--threads", "1"]
    assert cli.main(["pretrain", "--out", str(tmp_path / "whole")] + argv) == 0
    original = pretrain_module.save_atomically

    def ctrl_c_after_the_first_checkpoint(payload, path):
        original(payload, path)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(pretrain_module, "save_atomically", ctrl_c_after_the_first_checkpoint)
    out = tmp_path / "cut"
    assert cli.main(["pretrain", "--out", str(out)] + argv) == 130
    assert f"its last checkpoint is iteration 3 (alwa-train pretrain --resume {out}" in capsys.readouterr().err
    monkeypatch.undo()
    assert cli.main(["pretrain", "--resume", str(out), "--width", "16"]) == 2  # another backbone: refused
    assert "differ from its config: width" in capsys.readouterr().err
    assert cli.main(["pretrain", "--resume", str(out)]) == 0
    expected = backbone_state(tmp_path / "whole" / "backbone.pt")
    assert all(torch.equal(v, expected[k]) for k, v in backbone_state(out / "backbone.pt").items())


def test_pretraining_resumes_exactly(tmp_path, monkeypatch):
    whole = pretrain(tiny_pretraining(tmp_path / "whole"), show_progress=False)
    original = pretrain_module.save_atomically

    def interrupt(payload, path):
        original(payload, path)
        os.kill(os.getpid(), signal.SIGINT)

    config = tiny_pretraining(tmp_path / "cut")
    monkeypatch.setattr(pretrain_module, "save_atomically", interrupt)
    with pytest.raises(Exception, match="interrupted after iteration 3; its last checkpoint is iteration 3"):
        pretrain(config, show_progress=False)
    monkeypatch.undo()
    assert not (tmp_path / "cut" / "backbone.pt").exists()
    with pytest.raises(ValueError, match="holds another run"):  # a fresh run into it is refused
        pretrain(config, show_progress=False)
    resumed = pretrained_backbone(config)  # continues the checkpoint
    expected = backbone_state(tmp_path / "whole" / "backbone.pt")
    assert all(torch.equal(v, expected[k]) for k, v in backbone_state(resumed).items())
    assert pretrained_backbone(config) == resumed  # finished: reused, not trained again
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["label_accuracy"] == whole["label_accuracy"]
    other = tiny_pretraining(tmp_path / "cut", width=16)
    with pytest.raises(ValueError, match="another pretraining"):
        pretrained_backbone(other)


def test_a_torchvision_resnet50_state_dict_loads_into_the_resnet50_backbone(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    from alwa_det.backbone import TorchvisionResNet50, backbone_architecture, load_backbone_weights

    reference = torchvision.models.resnet50()
    path = tmp_path / "resnet50.pth"
    torch.save(reference.state_dict(), path)
    backbone = TorchvisionResNet50()
    load_backbone_weights(backbone, str(path), backbone_architecture("resnet50", 16, (1, 1, 1, 1)))
    assert torch.equal(backbone.stem[0].weight, reference.conv1.weight)
    assert torch.equal(backbone.stages[3][2].bn3.running_var, reference.layer4[2].bn3.running_var)


def test_the_study_trains_a_pretrained_cell_on_a_tiny_schedule(tmp_path, monkeypatch):
    sys.path.insert(0, os.path.join(REPO, "docs", "experiments"))
    try:
        import run_study
        import study_report
    finally:
        sys.path.pop(0)
    monkeypatch.setattr(run_study, "PRETRAINING", {"width": 8, "image_size": 64, "train_images": 16, "eval_images": 8,
                                                   "iterations": 4, "batch_size": 4, "threads": 1})
    cells = [c for c in run_study.grid(["pretrained"], []) if c["values"]["detector"] == "retinanet"]
    chosen = next(c for c in cells if c["values"]["weighting"] == "alwa2" and c["values"]["seed"] == 0)
    assert chosen["name"].endswith("-pretrained-seed0") and chosen["values"]["init"] == "pretrained"
    tiny = {k: v for k, v in tiny_config(tmp_path / "unused").to_dict().items()
            if k in ("image_size", "width", "fpn_channels", "head_convs", "batch_size", "synthetic_train_images",
                     "synthetic_eval_images", "eval_batch_size", "warmup_iterations", "threads")}
    cell = {**chosen, "values": {**chosen["values"], **tiny, "iterations": 4, "interval": 2}}
    runs = str(tmp_path / "runs")
    from alwa_det.pretrain import pretrained_backbone as ensure

    backbone = ensure(run_study.pretraining(runs))
    run_study.run_cell(cell["name"], cell["values"], runs)
    metrics = json.loads(open(os.path.join(runs, cell["name"], "metrics.json")).read())
    assert metrics["config"]["backbone_weights"] == backbone
    with open(backbone, "rb") as handle:
        assert metrics["backbone_weights_sha256"] == hashlib.sha256(handle.read()).hexdigest()
    rows = study_report.collect(runs, [cell])
    assert [(r["init"], r["logged"]) for r in rows] == [("pretrained", True)]
