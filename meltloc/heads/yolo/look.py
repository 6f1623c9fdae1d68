"""Our look augmentation in ultralytics' training pipeline.

ultralytics changes a tile's brightness (``hsv_v``) and flips it; the
regression head's training also fades layers towards the ice around them and
changes the camera: gain, haze, gamma, vignetting, column fixed-pattern gain,
row flicker, focus blur, diffuse edges and noise
(:func:`meltloc.strip_dataset.change_look`), and can draw extra melt layers
(faint, thick, diffuse, tilted; with their boxes) and unlabelled core breaks
into its crops (:func:`~meltloc.strip_dataset.draw_layers`,
:func:`~meltloc.strip_dataset.draw_breaks`). :class:`LookAugment` does the
same to shares of the training tiles, after ultralytics' own augmentation
and before its ``Format``; the look change moves nothing, so every box stays
true.
:func:`trainer_with_look` is the ultralytics trainer that inserts it into the
training dataset (never the validation one).
"""

from __future__ import annotations

import numpy as np

from meltloc import MELT_LAYER, MELT_LENS
from meltloc.formats_yolo import CLASSES
from meltloc.strip_dataset import change_look, draw_breaks, draw_layers

LAYER, LENS = CLASSES.index(MELT_LAYER), CLASSES.index(MELT_LENS)


class LookAugment:
    """An ultralytics transform: ``labels["img"]`` (a grey tile as H x W x 3 uint8) given another look.

    Args:
        rows_per_mm: tile rows per millimetre of core (the strips' ``px_per_mm`` times the tile's input scale).
        share: probability that a tile's look is changed (:func:`~meltloc.strip_dataset.change_look`).
        seed: the generator's seed (training stays repeatable).
        layers: probability that one or two melt layers are drawn in and labelled (full-width boxes).
        breaks: probability that up to three core breaks are drawn in, unlabelled.
    """

    def __init__(self, rows_per_mm: float, share: float, seed: int = 0, layers: float = 0.0, breaks: float = 0.0):
        self.rows_per_mm, self.share = float(rows_per_mm), float(share)
        self.layers, self.breaks = float(layers), float(breaks)
        self.rng = np.random.default_rng(seed)

    def __call__(self, labels: dict) -> dict:
        img = labels["img"]
        grey = (img[..., 0] if img.ndim == 3 else img).astype(np.float32)
        h, w = grey.shape
        intervals = self._row_intervals(labels, grey.shape)
        n_true, changed = len(intervals), False
        if self.layers > 0 and self.rng.random() < self.layers:
            classes = np.asarray(labels["cls"]).reshape(-1).astype(np.int64)
            grey, intervals, classes = draw_layers(grey, intervals, classes, np.zeros((0, 2)), self.rng,
                                                   self.rows_per_mm, LAYER, (0.0, float(h)), LENS, 0.0)
            if len(intervals) > n_true:
                self._add_boxes(labels, intervals[n_true:], classes[n_true:], w)
            changed = True
        if self.breaks > 0 and self.rng.random() < self.breaks:
            grey = draw_breaks(grey, intervals, np.zeros((0, 2)), self.rng, self.rows_per_mm, (0.0, float(h)))
            changed = True
        if self.share > 0 and self.rng.random() < self.share:
            # drawn layers span faint to black already: only the true ones are faded
            grey = change_look(grey, intervals[:n_true], self.rng, self.rows_per_mm)
            changed = True
        if changed:
            out = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
            labels["img"] = np.ascontiguousarray(np.repeat(out[..., None], img.shape[2], axis=2) if img.ndim == 3
                                                 else out)
        return labels

    @staticmethod
    def _add_boxes(labels: dict, intervals: np.ndarray, classes: np.ndarray, width: int) -> None:
        """Full-width boxes for drawn intervals (rows) appended to the tile's instances and classes."""
        from ultralytics.utils.instance import Instances

        old = labels["instances"]
        old.convert_bbox("xyxy")
        if old.normalized:
            old.denormalize(width, labels["img"].shape[0])
        new = np.stack([np.zeros(len(intervals)), intervals[:, 0], np.full(len(intervals), float(width)),
                        intervals[:, 1]], axis=1).astype(np.float32)
        boxes = np.concatenate([np.asarray(old.bboxes, np.float32).reshape(-1, 4), new])
        labels["instances"] = Instances(boxes, np.zeros((len(boxes), 0, 2), np.float32), bbox_format="xyxy",
                                        normalized=False)
        labels["cls"] = np.concatenate([np.asarray(labels["cls"], np.float32).reshape(-1, 1),
                                        classes.reshape(-1, 1).astype(np.float32)])

    @staticmethod
    def _row_intervals(labels: dict, shape: tuple[int, int]) -> np.ndarray:
        """The boxes' (top, bottom) rows in pixels, whatever format ultralytics holds them in at this point."""
        instances = labels.get("instances")
        if instances is None or len(instances) == 0:
            return np.zeros((0, 2), np.float32)
        boxes = np.array(instances.bboxes, dtype=np.float32, copy=True)
        fmt = instances._bboxes.format
        if fmt == "xywh":
            tops, bottoms = boxes[:, 1] - boxes[:, 3] / 2, boxes[:, 1] + boxes[:, 3] / 2
        elif fmt == "ltwh":
            tops, bottoms = boxes[:, 1], boxes[:, 1] + boxes[:, 3]
        else:  # xyxy
            tops, bottoms = boxes[:, 1], boxes[:, 3]
        if instances.normalized:
            tops, bottoms = tops * shape[0], bottoms * shape[0]
        return np.stack([tops, bottoms], axis=1)


def trainer_with_look(rows_per_mm: float, share: float, seed: int, layers: float = 0.0, breaks: float = 0.0):
    """ultralytics' ``DetectionTrainer`` whose training dataset ends with :class:`LookAugment` (before ``Format``)."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    class LookTrainer(DetectionTrainer):
        def build_dataset(self, img_path, mode="train", batch=None):
            dataset = super().build_dataset(img_path, mode, batch)
            if mode == "train" and (share > 0 or layers > 0 or breaks > 0):
                dataset.transforms.insert(-1, LookAugment(rows_per_mm, share, seed, layers, breaks))
            return dataset

    return LookTrainer
