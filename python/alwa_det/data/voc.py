"""Pascal VOC: a year folder (e.g. VOCdevkit/VOC2007) of split lists, XML annotations and JPEG images."""
from __future__ import annotations

import os
import xml.etree.ElementTree as ElementTree
from typing import Optional, Sequence

import numpy as np
from PIL import Image

from .base import Annotation, DatasetError, DetectionDataset, checked_box, open_rgb, refuse_repeats, require_dir

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)


class VOCDetection(DetectionDataset):
    """A VOC year folder (e.g. VOCdevkit/VOC2007): ImageSets/Main/<split>.txt, Annotations/*.xml, JPEGImages/.

    Boxes follow the toolkit's 1-based inclusive pixels: (xmin - 1, ymin - 1, xmax, ymax) in
    continuous coordinates. Objects marked ``difficult`` are kept but ignored in training and
    evaluation. All XML files are parsed up front, so bad annotations fail at once, by name.
    """

    class_names = VOC_CLASSES

    def __init__(self, root: str, split: str, image_size: int, class_names: Optional[Sequence[str]] = None):
        super().__init__(image_size)
        if class_names is not None:
            self.class_names = tuple(class_names)
        require_dir(root, "VOC data root")
        split_file = os.path.join(root, "ImageSets", "Main", f"{split}.txt")
        if not os.path.isfile(split_file):
            raise DatasetError(f"{split_file}: split list not found (is {root} a VOC year folder such as VOCdevkit/VOC2007?)")
        with open(split_file) as handle:
            self.names = [line.split()[0] for line in handle if line.strip()]
        refuse_repeats(split_file, "image", self.names)
        self.root = root
        self.class_index = {name: i for i, name in enumerate(self.class_names)}
        self.annotations = [self._parse(name) for name in self.names]

    def __len__(self) -> int:
        return len(self.names)

    def _parse(self, name: str) -> Annotation:
        path = os.path.join(self.root, "Annotations", f"{name}.xml")
        try:
            tree = ElementTree.parse(path)
        except FileNotFoundError as error:
            raise DatasetError(f"{path}: annotation file not found") from error
        except ElementTree.ParseError as error:
            raise DatasetError(f"{path}: malformed XML ({error})") from error
        boxes, labels, difficult = [], [], []
        for number, obj in enumerate(tree.getroot().iter("object"), start=1):
            class_name = (obj.findtext("name") or "").strip()
            if class_name not in self.class_index:
                raise DatasetError(f"{path}: object {number} has unknown class {class_name!r}; "
                                   f"known classes: {', '.join(self.class_names)}")
            what = f"{path}: object {number} ({class_name!r})"
            box = obj.find("bndbox")
            try:
                xmin, ymin, xmax, ymax = (float(box.findtext(tag)) for tag in ("xmin", "ymin", "xmax", "ymax"))
            except (AttributeError, TypeError, ValueError) as error:
                raise DatasetError(f"{what} has a missing or non-numeric bndbox") from error
            # The toolkit's 1-based inclusive pixels to continuous coordinates.
            boxes.append(checked_box(what, (xmin, ymin, xmax, ymax), (xmin - 1, ymin - 1, xmax, ymax),
                                     negative=xmax < xmin or ymax < ymin))
            labels.append(self.class_index[class_name])
            difficult.append((obj.findtext("difficult") or "0").strip() == "1")
        return Annotation(
            boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
            labels=np.array(labels, dtype=np.int64),
            difficult=np.array(difficult, dtype=bool),
        )

    def annotation(self, index: int) -> Annotation:
        return self.annotations[index]

    def load_image(self, index: int) -> Image.Image:
        return open_rgb(os.path.join(self.root, "JPEGImages", f"{self.names[index]}.jpg"))
