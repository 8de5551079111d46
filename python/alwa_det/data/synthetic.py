"""Synthetic shapes: images drawn from a seed, so no data is stored (the demo's and the study's
data, and the pretraining task's other shapes)."""
from __future__ import annotations

import math
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .base import Annotation, DetectionDataset

SYNTHETIC_CLASSES = ("rectangle", "ellipse", "triangle")
# The classes of the pretraining task (alwa_det.pretrain): other shapes than the detector's, as
# ImageNet's classes are other than VOC's.
PRETRAIN_CLASSES = ("pentagon", "hexagon", "star", "cross", "ring", "diamond")


class SyntheticShapes(DetectionDataset):
    """Filled rectangles, ellipses and triangles on textured, noisy backgrounds.

    Image ``index`` of ``seed`` is always the same picture (its generator is seeded by both), so
    no data is stored. Shapes vary in size (about 9% to 50% of the image side), aspect ratio
    (1:2 to 2:1) and colour; they may overlap a little (at most a quarter of the smaller box) and a
    later one is drawn over an earlier one, so no object is hidden beyond recognition. Colours are random, so the class is told by the outline alone.
    """

    def __init__(self, num_images: int, image_size: int, seed: int, max_objects: int = 5,
                 class_names: Sequence[str] = SYNTHETIC_CLASSES):
        super().__init__(image_size)
        unknown = [name for name in class_names if name not in SHAPES]
        if not class_names or unknown:
            raise ValueError(f"class_names: expected shapes among {', '.join(SHAPES)}, got {list(class_names)!r}")
        self.class_names = tuple(class_names)
        if num_images < 1:
            raise ValueError(f"num_images must be positive, got {num_images}")
        if max_objects < 1:
            raise ValueError(f"max_objects must be positive, got {max_objects}")
        self.num_images = num_images
        self.seed = seed
        self.max_objects = max_objects
        self._rendered: dict = {}

    def __len__(self) -> int:
        return self.num_images

    def _rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, index])

    def _render(self, index: int) -> Tuple[Image.Image, Annotation]:
        rng = self._rng(index)
        size = self.image_size
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
        base = rng.uniform(40, 215, size=3)
        tilt = rng.uniform(-60, 60, size=(2, 3))
        background = base + xs[..., None] * tilt[0] + ys[..., None] * tilt[1]
        for _ in range(3):  # a few random stripes of texture
            frequency = rng.uniform(2, 12, size=2)
            phase = rng.uniform(0, 2 * math.pi)
            amplitude = rng.uniform(5, 25, size=3)
            background += np.sin(2 * math.pi * (frequency[0] * xs + frequency[1] * ys) + phase)[..., None] * amplitude
        image = Image.fromarray(np.clip(background, 0, 255).astype(np.uint8))
        draw = ImageDraw.Draw(image)
        boxes, labels = [], []
        for _ in range(int(rng.integers(1, self.max_objects + 1))):
            for _attempt in range(20):
                side = rng.uniform(0.09, 0.5) * size
                aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
                width, height = side * math.sqrt(aspect), side / math.sqrt(aspect)
                width, height = min(width, size * 0.9), min(height, size * 0.9)
                x1 = rng.uniform(0, size - width)
                y1 = rng.uniform(0, size - height)
                box = np.array([x1, y1, x1 + width, y1 + height])
                if all(_overlap_of_smaller(box, other) <= 0.25 for other in boxes):
                    break
            else:
                continue
            label = int(rng.integers(len(self.class_names)))
            colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
            SHAPES[self.class_names[label]](draw, box, colour, rng)
            boxes.append(box)
            labels.append(label)
        noisy = np.asarray(image, dtype=np.float32) + rng.normal(0, 12, size=(size, size, 3))
        image = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))
        annotation = Annotation(
            boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
            labels=np.array(labels, dtype=np.int64),
            difficult=np.zeros(len(labels), dtype=bool),
        )
        return image, annotation

    def _render_once(self, index: int) -> Tuple[Image.Image, Annotation]:
        # Drawing is a third of a demo training step on CPU, and every epoch asks for the same
        # pictures: keep them (3 * size^2 bytes each; 100 MB for the demo's 2000 images).
        if index not in self._rendered:
            self._rendered[index] = self._render(index)
        return self._rendered[index]

    def annotation(self, index: int) -> Annotation:
        return self._render_once(index)[1]

    def load_image(self, index: int) -> Image.Image:
        return self._render_once(index)[0]


def _regular_polygon(box: np.ndarray, corners: int, turn: float, inner: float = 1.0) -> List[Tuple[float, float]]:
    """A regular polygon (a star where ``inner`` < 1: every other point at that fraction of the
    radius) stretched to fill ``box``, its first point at angle ``turn`` from the top."""
    x1, y1, x2, y2 = box
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
    points = corners * (2 if inner < 1 else 1)
    radius = [1.0 if k % 2 == 0 or inner >= 1 else inner for k in range(points)]
    angles = [turn + 2 * math.pi * k / points for k in range(points)]
    return [(cx + rx * r * math.sin(a), cy - ry * r * math.cos(a)) for r, a in zip(radius, angles)]


def _draw_triangle(draw, box, colour, rng) -> None:
    x1, y1, x2, y2 = box
    draw.polygon([(x1, y2), (x2, y2), (float(rng.uniform(x1, x2)), y1)], fill=colour)


def _draw_cross(draw, box, colour, rng) -> None:
    x1, y1, x2, y2 = box
    bar_x, bar_y = (x2 - x1) / 6, (y2 - y1) / 6
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    draw.rectangle([cx - bar_x, y1, cx + bar_x, y2], fill=colour)
    draw.rectangle([x1, cy - bar_y, x2, cy + bar_y], fill=colour)


def _draw_ring(draw, box, colour, rng) -> None:
    x1, y1, x2, y2 = box
    draw.ellipse([x1, y1, x2, y2], outline=colour, width=max(2, int(min(x2 - x1, y2 - y1) / 6)))


# How each shape class is drawn into its box: the detector's classes first, then the pretraining's.
# A drawer draws from ``rng`` only what its own shape needs, so each class set's images are its own.
SHAPES = {
    "rectangle": lambda draw, box, colour, rng: draw.rectangle(list(box), fill=colour),
    "ellipse": lambda draw, box, colour, rng: draw.ellipse(list(box), fill=colour),
    "triangle": _draw_triangle,
    "pentagon": lambda draw, box, colour, rng: draw.polygon(_regular_polygon(box, 5, 0.0), fill=colour),
    "hexagon": lambda draw, box, colour, rng: draw.polygon(_regular_polygon(box, 6, math.pi / 6), fill=colour),
    "star": lambda draw, box, colour, rng: draw.polygon(_regular_polygon(box, 5, 0.0, inner=0.45), fill=colour),
    "cross": _draw_cross,
    "ring": _draw_ring,
    "diamond": lambda draw, box, colour, rng: draw.polygon(_regular_polygon(box, 4, 0.0), fill=colour),
}


def _overlap_of_smaller(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection of two boxes as a fraction of the smaller one's area."""
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return inter_w * inter_h / smaller if smaller > 0 else 0.0
