"""COCO-style folders: annotations/instances_<split>.json and the images of <split>/."""
from __future__ import annotations

import json
import os

import numpy as np
from PIL import Image

from .base import Annotation, DatasetError, DetectionDataset, checked_box, open_rgb, refuse_repeats, require_dir


class COCODetection(DetectionDataset):
    """A COCO-style folder: annotations/instances_<split>.json and images in <split>/.

    Category ids map to 0-based labels in increasing id order. Crowd regions are kept as
    ignored objects, like VOC's difficult ones. Images without annotations are valid.
    """

    def __init__(self, root: str, split: str, image_size: int):
        super().__init__(image_size)
        require_dir(root, "COCO data root")
        path = os.path.join(root, "annotations", f"instances_{split}.json")
        try:
            with open(path) as handle:
                content = json.load(handle)
        except FileNotFoundError as error:
            raise DatasetError(f"{path}: annotation file not found") from error
        except (json.JSONDecodeError, UnicodeDecodeError) as error:
            raise DatasetError(f"{path}: malformed JSON ({error})") from error
        try:
            categories = sorted(content["categories"], key=lambda c: c["id"])
            if not categories:
                raise DatasetError(f"{path}: no categories (a detector needs at least one class)")
            self.category_ids = [int(c["id"]) for c in categories]
            refuse_repeats(path, "category id", self.category_ids)
            self.class_names = tuple(str(c["name"]) for c in categories)
            self.images = [(int(i["id"]), str(i["file_name"])) for i in content["images"]]
            # Two images under one id would have their annotations merged.
            refuse_repeats(path, "image id", [image_id for image_id, _ in self.images])
            label_of = {cid: label for label, cid in enumerate(self.category_ids)}
            per_image = {image_id: ([], [], []) for image_id, _ in self.images}
            for ann in content.get("annotations", []):
                if ann["category_id"] not in label_of:
                    raise DatasetError(f"{path}: annotation {ann.get('id')} has unknown category_id {ann['category_id']}")
                if ann["image_id"] not in per_image:
                    raise DatasetError(f"{path}: annotation {ann.get('id')} refers to unknown image_id {ann['image_id']}")
                x, y, w, h = (float(v) for v in ann["bbox"])
                boxes, labels, crowd = per_image[ann["image_id"]]
                boxes.append(checked_box(f"{path}: annotation {ann.get('id')}", (x, y, w, h), (x, y, x + w, y + h),
                                         negative=w < 0 or h < 0))
                labels.append(label_of[ann["category_id"]])
                crowd.append(bool(ann.get("iscrowd", 0)))
        except DatasetError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise DatasetError(f"{path}: not a COCO instances file ({type(error).__name__}: {error})") from error
        self.annotations = [
            Annotation(
                boxes=np.array(per_image[i][0], dtype=np.float32).reshape(-1, 4),
                labels=np.array(per_image[i][1], dtype=np.int64),
                difficult=np.array(per_image[i][2], dtype=bool),
            )
            for i, _ in self.images
        ]
        self.image_dir = os.path.join(root, split)

    def __len__(self) -> int:
        return len(self.images)

    def image_id(self, index: int) -> int:
        return self.images[index][0]

    def annotation(self, index: int) -> Annotation:
        return self.annotations[index]

    def load_image(self, index: int) -> Image.Image:
        return open_rgb(os.path.join(self.image_dir, self.images[index][1]))
