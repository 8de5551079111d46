"""What the harness tests share: one thread per test, a run configuration that trains in
seconds, and tiny VOC / COCO folders written into the test's own tmp_path.

``alwa_det`` is installed (editable) beside ``alwa_ext`` by ``make build``; a test module takes
the autouse fixture by importing it: ``from helpers.harness import single_thread``.
"""
import csv
import json
import os

import pytest
import torch
from PIL import Image


from helpers.threads import single_thread  # noqa: E402,F401  (re-exported for the harness tests)


def tiny_config(out, **overrides):
    """A run configuration that trains in seconds."""
    from alwa_det.config import make_config

    values = dict(
        out=str(out), image_size=64, width=8, fpn_channels=16, head_convs=1, batch_size=2, iterations=4,
        lr_steps=(1000,), warmup_iterations=2, interval=2, log_interval=2, checkpoint_interval=2,
        synthetic_train_images=16, synthetic_eval_images=4, eval_batch_size=4, workers=0, threads=1,
        roi_samples=16, roi_hidden=32, rpn_pre_nms=50, rpn_post_nms=30,
    )
    values.update(overrides)
    return make_config(values)


# --- tiny dataset folders, written by the tests themselves (no downloads) ---


def voc_xml(objects, width=80, height=60):
    parts = [f"<annotation><filename>x.jpg</filename><size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for name, box, difficult in objects:
        parts.append(
            f"<object><name>{name}</name><difficult>{int(difficult)}</difficult><bndbox><xmin>{box[0]}</xmin>"
            f"<ymin>{box[1]}</ymin><xmax>{box[2]}</xmax><ymax>{box[3]}</ymax></bndbox></object>"
        )
    return "".join(parts) + "</annotation>"


def make_voc(root, annotations, image_size=(80, 60), split="trainval"):
    for folder in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, folder), exist_ok=True)
    for name, objects in annotations.items():
        with open(os.path.join(root, "Annotations", f"{name}.xml"), "w") as handle:
            handle.write(objects if isinstance(objects, str) else voc_xml(objects, *image_size))
        Image.new("RGB", image_size, (120, 30, 200)).save(os.path.join(root, "JPEGImages", f"{name}.jpg"))
    with open(os.path.join(root, "ImageSets", "Main", f"{split}.txt"), "w") as handle:
        handle.write("\n".join(annotations) + "\n")
    return str(root)


def make_coco(root, content, split="val2017", images=((1, "a.png"), (2, "b.png"))):
    os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
    os.makedirs(os.path.join(root, split), exist_ok=True)
    for _, name in images:
        Image.new("RGB", (50, 100), (10, 200, 30)).save(os.path.join(root, split, name))
    with open(os.path.join(root, "annotations", f"instances_{split}.json"), "w") as handle:
        handle.write(content if isinstance(content, str) else json.dumps(content))
    return str(root)


COCO_CONTENT = {
    "images": [{"id": 1, "file_name": "a.png", "width": 50, "height": 100}, {"id": 2, "file_name": "b.png", "width": 50, "height": 100}],
    "categories": [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}],
    "annotations": [
        {"id": 1, "image_id": 1, "category_id": 18, "bbox": [5, 10, 20, 30], "iscrowd": 0},
        {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 50, 50], "iscrowd": 1},
    ],
}


# --- the command line ---

TINY_OPTIONS = dict(
    image_size=64, width=8, fpn_channels=16, head_convs=1, batch_size=2, iterations=4, lr_steps="1000",
    warmup_iterations=2, interval=2, log_interval=2, checkpoint_interval=2, synthetic_train_images=16,
    synthetic_eval_images=4, workers=0, threads=1, no_eval=True,
)


def tiny_argv(out, **options):
    """``alwa-train train`` arguments of a run that trains in a second (options as in tiny_config;
    True is a flag, False or None leaves an option out)."""
    argv = ["train", "--out", str(out)]
    for name, value in {**TINY_OPTIONS, **options}.items():
        flag = "--" + name.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif value is not False and value is not None:
            argv += [flag, str(value)]
    return argv


def error_line(err):
    """The one line an alwa-train error prints (progress bars aside); fails on a traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("alwa-train")]
    assert len(lines) == 1, err
    return lines[0]


def folder_files(folder):
    """{relative path: bytes} of every file in a run folder but its lock."""
    files = {}
    for directory, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(directory, name)
            if name != ".lock":
                with open(path, "rb") as handle:
                    files[os.path.relpath(path, folder)] = handle.read()
    return files


def log_iterations(folder):
    with open(os.path.join(folder, "log.csv")) as handle:
        return [int(row["iteration"]) for row in csv.DictReader(handle)]
