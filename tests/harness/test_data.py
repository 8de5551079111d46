"""Synthetic data determinism, the VOC and COCO loaders on tiny folders, and bad-data errors."""

import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from alwa_det.data import (COCODetection, DatasetError, SyntheticShapes, TrainBatchSampler, VOCDetection, build_dataset,
                           collate)

from helpers.harness import COCO_CONTENT, make_coco, make_voc, single_thread, voc_xml  # noqa: F401  (single_thread: an autouse fixture)


def test_synthetic_is_deterministic_from_seed_and_varied():
    first, again, other = SyntheticShapes(8, 96, seed=5), SyntheticShapes(8, 96, seed=5), SyntheticShapes(8, 96, seed=6)
    for index in range(8):
        a, b = first[index], again[index]
        assert torch.equal(a.image, b.image) and torch.equal(a.boxes, b.boxes) and torch.equal(a.labels, b.labels)
    assert not torch.equal(first[0].image, other[0].image)
    samples = [SyntheticShapes(60, 96, seed=0)[i] for i in range(60)]
    boxes = torch.cat([s.boxes for s in samples])
    labels = torch.cat([s.labels for s in samples])
    assert set(labels.tolist()) == {0, 1, 2}
    assert (boxes >= 0).all() and (boxes <= 96).all()
    sides = torch.stack([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
    assert sides.min() > 5 and sides.max() > 40  # sizes vary
    aspect = sides[:, 0] / sides[:, 1]
    assert aspect.min() < 0.7 and aspect.max() > 1.4  # aspect ratios vary
    assert max(len(s.labels) for s in samples) > 2  # several objects per image
    assert float(torch.stack([s.image.float().std() for s in samples]).min()) > 10  # textured, noisy, not flat


def test_synthetic_train_and_eval_streams_differ():
    train = build_dataset("synthetic", "train", 64, None, seed=0, synthetic_images=4)
    held_out = build_dataset("synthetic", "eval", 64, None, seed=0, synthetic_images=4)
    assert not torch.equal(train[0].image, held_out[0].image)


def test_flip_mirrors_image_and_boxes():
    dataset = SyntheticShapes(2, 64, seed=1)
    plain, flipped = dataset[0], dataset[(0, True)]
    assert torch.equal(flipped.image, plain.image.flip(-1))
    assert torch.allclose(flipped.boxes[:, 0], 64 - plain.boxes[:, 2])
    assert torch.allclose(flipped.boxes[:, 3], plain.boxes[:, 3])


def test_collate_pads_images_and_objects():
    dataset = SyntheticShapes(3, 64, seed=2)
    batch = collate([dataset[i] for i in range(3)])
    counts = [len(dataset[i].labels) for i in range(3)]
    assert batch.images.shape == (3, 3, 64, 64) and batch.images.dtype == torch.uint8
    assert batch.gt_boxes.shape == (3, max(counts), 4)
    assert batch.gt_valid.sum(dim=1).tolist() == counts


def test_sampler_is_reproducible_and_resumes_mid_epoch():
    sampler = TrainBatchSampler(20, 4, seed=3)
    sampler.set_position(epoch=1, start_batch=0)
    whole = list(sampler)
    sampler.set_position(epoch=1, start_batch=2)
    assert list(sampler) == whole[2:]
    sampler.set_position(epoch=2, start_batch=0)
    assert list(sampler) != whole
    ranks = [TrainBatchSampler(20, 2, seed=3, rank=r, world_size=2) for r in (0, 1)]
    for r in ranks:
        r.set_position(0, 0)
    seen = [i for r in ranks for batch in r for i, _ in batch]
    assert sorted(seen) == list(range(20))  # ranks split the epoch without overlap


# --- VOC ---------------------------------------------------------------------------------------


def test_voc_loader_reads_boxes_difficult_and_empty_images(tmp_path):
    root = make_voc(tmp_path / "VOC2007", {
        "000001": [("dog", (11, 21, 40, 50), False), ("person", (1, 1, 80, 60), True)],
        "000002": [],
    })
    dataset = VOCDetection(root, "trainval", image_size=160)
    first = dataset[0]
    assert first.image.shape == (3, 120, 160)  # longer side resized to 160: scale 2
    assert torch.allclose(first.boxes[0], torch.tensor([20.0, 40.0, 80.0, 100.0]))  # (xmin-1, ymin-1, xmax, ymax) * 2
    assert first.labels.tolist() == [dataset.class_names.index("dog"), dataset.class_names.index("person")]
    assert first.difficult.tolist() == [False, True]
    empty = dataset[1]
    assert empty.boxes.shape == (0, 4) and empty.labels.numel() == 0
    batch = collate([first, empty])
    assert batch.gt_valid.tolist() == [[True, False], [False, False]]  # difficult objects are not trained on


@pytest.mark.parametrize("problem, message", [
    ("malformed", "malformed XML"),
    ("unknown_class", "unknown class 'unicorn'"),
    ("bad_box", "non-numeric bndbox"),
    ("missing_xml", "annotation file not found"),
    # NaN or inf boxes would train a NaN model (or become background with giou) without a word.
    ("nan_box", "object 2 ('dog') has a non-finite box (10.0, nan, 20.0, 20.0)"),
    ("inf_box", "object 2 ('dog') has a non-finite box (10.0, 1.0, inf, 20.0)"),
    ("huge_box", "object 2 ('dog') has a non-finite box (10.0, 1.0, 1e+39, 20.0)"),  # beyond float32
    ("negative_box", "object 2 ('dog') has a box of negative size (10.0, 1.0, 5.0, 20.0)"),
])
def test_voc_bad_annotations_name_the_file(tmp_path, problem, message):
    annotations = {"000001": [("cat", (1, 1, 10, 10), False)]}
    if problem == "malformed":
        annotations["000002"] = "<annotation><object><name>cat</name>"
    elif problem == "unknown_class":
        annotations["000002"] = [("unicorn", (1, 1, 10, 10), False)]
    elif problem == "bad_box":
        annotations["000002"] = voc_xml([("cat", ("a", 1, 10, 10), False)])
    elif problem.endswith("_box"):
        box = {"nan_box": (10, "nan", 20, 20), "inf_box": (10, 1, "inf", 20), "huge_box": (10, 1, "1e39", 20),
               "negative_box": (10, 1, 5, 20)}[problem]
        annotations["000002"] = voc_xml([("cat", (1, 1, 10, 10), False), ("dog", box, False)])
    root = make_voc(tmp_path / "VOC", annotations)
    if problem == "missing_xml":
        with open(os.path.join(root, "ImageSets", "Main", "trainval.txt"), "a") as handle:
            handle.write("000003\n")
    with pytest.raises(DatasetError, match=re.escape(message)) as error:
        VOCDetection(root, "trainval", 64)
    expected_file = "000003.xml" if problem == "missing_xml" else "000002.xml"
    assert expected_file in str(error.value)


def test_voc_split_list_naming_an_image_twice_is_refused(tmp_path):
    root = make_voc(tmp_path / "VOC", {"000001": [], "000002": []})
    with open(os.path.join(root, "ImageSets", "Main", "trainval.txt"), "a") as handle:
        handle.write("000001\n")
    with pytest.raises(DatasetError, match="trainval.txt: image '000001' appears more than once"):
        VOCDetection(root, "trainval", 64)


def test_voc_missing_root_split_and_unreadable_image(tmp_path):
    with pytest.raises(DatasetError, match="VOC data root not found"):
        VOCDetection(str(tmp_path / "nowhere"), "trainval", 64)
    root = make_voc(tmp_path / "VOC", {"000001": []})
    with pytest.raises(DatasetError, match="test.txt: split list not found"):
        VOCDetection(root, "test", 64)
    with open(os.path.join(root, "JPEGImages", "000001.jpg"), "wb") as handle:
        handle.write(b"not a jpeg")
    dataset = VOCDetection(root, "trainval", 64)
    with pytest.raises(DatasetError, match="000001.jpg: cannot read the image"):
        dataset[0]


# --- COCO --------------------------------------------------------------------------------------


def test_coco_loader_maps_categories_crowds_and_empty_images(tmp_path):
    dataset = COCODetection(make_coco(tmp_path / "coco", COCO_CONTENT), "val2017", image_size=200)
    assert dataset.class_names == ("car", "dog")  # ordered by category id (3, 18)
    first = dataset[0]
    assert first.image.shape == (3, 200, 100)
    assert torch.allclose(first.boxes[0], torch.tensor([10.0, 20.0, 50.0, 80.0]))
    assert first.labels.tolist() == [1, 0] and first.difficult.tolist() == [False, True]
    assert dataset.image_id(1) == 2 and dataset[1].labels.numel() == 0


@pytest.mark.parametrize("content, message", [
    ("{not json", "malformed JSON"),
    ({"images": []}, "not a COCO instances file"),
    ({**COCO_CONTENT, "annotations": [{"id": 9, "image_id": 1, "category_id": 99, "bbox": [0, 0, 1, 1]}]}, "unknown category_id 99"),
    ({**COCO_CONTENT, "annotations": [{"id": 9, "image_id": 7, "category_id": 3, "bbox": [0, 0, 1, 1]}]}, "unknown image_id 7"),
    # json reads NaN and Infinity; such boxes would train a NaN model.
    ('{"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 3, "name": "car"}], "annotations": '
     '[{"id": 4, "image_id": 1, "category_id": 3, "bbox": [NaN, 0, 5, 5]}]}', "annotation 4 has a non-finite box (nan,"),
    ({**COCO_CONTENT, "annotations": [{"id": 5, "image_id": 1, "category_id": 3, "bbox": [0, 0, 1e39, 5]}]},
     "annotation 5 has a non-finite box"),
    ({**COCO_CONTENT, "annotations": [{"id": 6, "image_id": 1, "category_id": 3, "bbox": [0, 0, 5, -1]}]},
     "annotation 6 has a box of negative size (0.0, 0.0, 5.0, -1.0)"),
    # No categories: an error, not a traceback; two images under one id would have their annotations merged.
    ({**COCO_CONTENT, "categories": [], "annotations": []}, "no categories"),
    ({**COCO_CONTENT, "images": COCO_CONTENT["images"] + [{"id": 1, "file_name": "b.png"}]}, "image id 1 appears more than once"),
    ({**COCO_CONTENT, "categories": COCO_CONTENT["categories"] + [{"id": 3, "name": "bus"}]}, "category id 3 appears more than once"),
])
def test_coco_bad_annotations_name_the_file(tmp_path, content, message):
    root = make_coco(tmp_path / "coco", content)
    with pytest.raises(DatasetError, match=re.escape(message)) as error:
        COCODetection(root, "val2017", 64)
    assert "instances_val2017.json" in str(error.value)


def test_coco_missing_image_is_named(tmp_path):
    root = make_coco(tmp_path / "coco", COCO_CONTENT)
    os.remove(os.path.join(root, "val2017", "b.png"))
    dataset = COCODetection(root, "val2017", 64)
    with pytest.raises(DatasetError, match="b.png: image file not found"):
        dataset[1]
    with pytest.raises(DatasetError, match="COCO data root not found"):
        COCODetection(str(tmp_path / "missing"), "val2017", 64)
