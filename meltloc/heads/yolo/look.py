"""Our augmentation in ultralytics' training pipeline.

ultralytics changes a tile's brightness (``hsv_v``) and flips it; the
regression head's training also changes the camera: fading layers towards the
ice around them, gain, haze, gamma, vignetting, column fixed-pattern gain, row
flicker, focus blur, diffuse edges and noise
(:func:`meltloc.strip_dataset.change_look`), and draws extra melt layers
(faint, thick, diffuse, tilted; labelled) and unlabelled core breaks into its
crops (:func:`~meltloc.strip_dataset.draw_layers`,
:func:`~meltloc.strip_dataset.draw_breaks`).

* :class:`DrawAugment` draws layers and breaks first, on the tile as read
  (every row of it is core), so ultralytics' translation, flips and box
  filter then treat drawn boxes as they treat true ones;
* :class:`LookAugment` changes the look last, just before ultralytics'
  ``Format``; it moves nothing, so every box stays true.

:func:`trainer_with_look` is the ultralytics trainer that puts them into the
training dataset (never the validation one).
"""

from __future__ import annotations

import numpy as np

from meltloc import MELT_LAYER, MELT_LENS
from meltloc.formats_yolo import CLASSES
from meltloc.strip_dataset import change_look, draw_breaks, draw_layers

LAYER, LENS = CLASSES.index(MELT_LAYER), CLASSES.index(MELT_LENS)


def _grey(img: np.ndarray) -> np.ndarray:
    return (img[..., 0] if img.ndim == 3 else img).astype(np.float32)


def _as_image(grey: np.ndarray, like: np.ndarray) -> np.ndarray:
    out = np.clip(np.rint(grey), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(out[..., None], like.shape[2], axis=2) if like.ndim == 3 else out)


def row_intervals(labels: dict, shape: tuple[int, int]) -> np.ndarray:
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


class LookAugment:
    """An ultralytics transform: ``labels["img"]`` (a grey tile as H x W x 3 uint8) given another look.

    Args:
        rows_per_mm: tile rows per millimetre of core (the strips' ``px_per_mm`` times the tile's input scale).
        share: probability that a tile is changed.
        seed: the generator's seed (training stays repeatable).
        start_epoch: the epoch a resumed run starts at (0: a new run); a resumed run draws another stream than
            its first epochs did.
    """

    def __init__(self, rows_per_mm: float, share: float, seed: int = 0, start_epoch: int = 0):
        self.rows_per_mm, self.share = float(rows_per_mm), float(share)
        self.rng = np.random.default_rng(seed if start_epoch == 0 else [seed, 0, start_epoch])

    def __call__(self, labels: dict) -> dict:
        if self.share <= 0 or self.rng.random() >= self.share:
            return labels
        img = labels["img"]
        grey = _grey(img)
        labels["img"] = _as_image(change_look(grey, row_intervals(labels, grey.shape), self.rng, self.rows_per_mm),
                                  img)
        return labels


class DrawAugment:
    """An ultralytics transform for the start of the pipeline: melt layers drawn into a tile with their boxes,
    and core breaks without.

    Args:
        px_per_mm: strip rows per millimetre (the tile as stored; ultralytics' resize is read from the labels).
        min_box_rows: the smallest box height convert writes (``--min-box-rows``), in strip rows: drawn boxes are
            widened about their centre to it, as convert widens true ones.
        layers: probability that one or two melt layers are drawn in (faint to black, 0.5-15 mm, diffuse or sharp,
            tilted), each labelled with a full-width box of the melt-layer class.
        breaks: probability that up to three core breaks (thin, nearly black, jagged lines) are drawn in, unlabelled.
        seed: the generator's seed.
        start_epoch: as for :class:`LookAugment`.
    """

    def __init__(self, px_per_mm: float, min_box_rows: float, layers: float, breaks: float, seed: int = 0,
                 start_epoch: int = 0):
        self.px_per_mm, self.min_box_rows = float(px_per_mm), float(min_box_rows)
        self.layers, self.breaks = float(layers), float(breaks)
        self.rng = np.random.default_rng([seed, 1] if start_epoch == 0 else [seed, 1, start_epoch])

    def __call__(self, labels: dict) -> dict:
        draw_layer = self.layers > 0 and self.rng.random() < self.layers
        draw_break = self.breaks > 0 and self.rng.random() < self.breaks
        if not (draw_layer or draw_break):
            return labels
        img = labels["img"]
        grey = _grey(img)
        h, w = grey.shape
        resized, original = labels.get("resized_shape", (h, w)), labels.get("ori_shape", (h, w))
        scale = float(resized[0]) / float(original[0]) if original[0] else 1.0
        rows_per_mm = self.px_per_mm * scale
        intervals = row_intervals(labels, grey.shape)
        n_true = len(intervals)
        if draw_layer:
            classes = np.asarray(labels["cls"]).reshape(-1).astype(np.int64)
            grey, intervals, classes = draw_layers(grey, intervals, classes, np.zeros((0, 2)), self.rng,
                                                   rows_per_mm, LAYER, (0.0, float(h)), LENS, 0.0)
            if len(intervals) > n_true:
                self._add_boxes(labels, intervals[n_true:], classes[n_true:], (h, w), self.min_box_rows * scale)
        if draw_break:
            grey = draw_breaks(grey, intervals, np.zeros((0, 2)), self.rng, rows_per_mm, (0.0, float(h)))
        labels["img"] = _as_image(grey, img)
        return labels

    @staticmethod
    def _add_boxes(labels: dict, intervals: np.ndarray, classes: np.ndarray, shape: tuple[int, int],
                   min_rows: float) -> None:
        """Full-width boxes for drawn intervals (rows; widened about their centre to ``min_rows``) appended to the
        tile's instances and classes, in the instances' own format."""
        from ultralytics.utils.instance import Instances

        h, w = shape
        old = labels["instances"]
        normalized = old.normalized
        old.convert_bbox("xyxy")
        if normalized:
            old.denormalize(w, h)
        centre, half = intervals.mean(axis=1), np.maximum(intervals[:, 1] - intervals[:, 0], min_rows) / 2
        new = np.stack([np.zeros(len(intervals)), centre - half, np.full(len(intervals), float(w)), centre + half],
                       axis=1).astype(np.float32)
        instances = Instances(np.concatenate([np.asarray(old.bboxes, np.float32).reshape(-1, 4), new]),
                              segments=None, keypoints=None, bbox_format="xyxy", normalized=False)
        instances.convert_bbox("xywh")
        if normalized:
            instances.normalize(w, h)
        labels["instances"] = instances
        labels["cls"] = np.concatenate([np.asarray(labels["cls"], np.float32).reshape(-1, 1),
                                        classes.reshape(-1, 1).astype(np.float32)])


def trainer_with_look(rows_per_mm: float, share: float, seed: int, layers: float = 0.0, breaks: float = 0.0,
                      px_per_mm: float = 10.0, min_box_rows: float = 6.0, start_epoch: int = 0):
    """ultralytics' ``DetectionTrainer`` whose training dataset starts with :class:`DrawAugment` (when ``layers``
    or ``breaks``) and ends with :class:`LookAugment` (before ``Format``; when ``share``); ``start_epoch``: the
    epoch a resumed run starts at."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    class LookTrainer(DetectionTrainer):
        def build_dataset(self, img_path, mode="train", batch=None):
            dataset = super().build_dataset(img_path, mode, batch)
            if mode == "train":
                if share > 0:
                    dataset.transforms.insert(-1, LookAugment(rows_per_mm, share, seed, start_epoch))
                if layers > 0 or breaks > 0:
                    dataset.transforms.insert(0, DrawAugment(px_per_mm, min_box_rows, layers, breaks, seed,
                                                             start_epoch))
            return dataset

    return LookTrainer
