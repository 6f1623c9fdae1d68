"""Our look augmentation in ultralytics' training pipeline.

ultralytics changes a tile's brightness (``hsv_v``) and flips it; the
regression head's training also fades layers towards the ice around them and
changes the camera: gain, haze, gamma, vignetting, column fixed-pattern gain,
row flicker, focus blur, diffuse edges and noise
(:func:`meltloc.strip_dataset.change_look`). :class:`LookAugment` applies
that to a share of the training tiles, after ultralytics' own augmentation
and before its ``Format``; nothing moves, so every box stays true.
:func:`trainer_with_look` is the ultralytics trainer that inserts it into the
training dataset (never the validation one).
"""

from __future__ import annotations

import numpy as np

from meltloc.strip_dataset import change_look


class LookAugment:
    """An ultralytics transform: ``labels["img"]`` (a grey tile as H x W x 3 uint8) given another look.

    Args:
        rows_per_mm: tile rows per millimetre of core (the strips' ``px_per_mm`` times the tile's input scale).
        share: probability that a tile is changed.
        seed: the generator's seed (training stays repeatable).
    """

    def __init__(self, rows_per_mm: float, share: float, seed: int = 0):
        self.rows_per_mm, self.share = float(rows_per_mm), float(share)
        self.rng = np.random.default_rng(seed)

    def __call__(self, labels: dict) -> dict:
        if self.share <= 0 or self.rng.random() >= self.share:
            return labels
        img = labels["img"]
        grey = img[..., 0] if img.ndim == 3 else img
        changed = change_look(grey.astype(np.float32), self._row_intervals(labels, grey.shape), self.rng,
                              self.rows_per_mm)
        out = np.clip(np.rint(changed), 0, 255).astype(np.uint8)
        labels["img"] = np.ascontiguousarray(np.repeat(out[..., None], img.shape[2], axis=2) if img.ndim == 3 else out)
        return labels

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


def trainer_with_look(rows_per_mm: float, share: float, seed: int):
    """ultralytics' ``DetectionTrainer`` whose training dataset ends with :class:`LookAugment` (before ``Format``)."""
    from ultralytics.models.yolo.detect import DetectionTrainer

    class LookTrainer(DetectionTrainer):
        def build_dataset(self, img_path, mode="train", batch=None):
            dataset = super().build_dataset(img_path, mode, batch)
            if mode == "train" and share > 0:
                dataset.transforms.insert(-1, LookAugment(rows_per_mm, share, seed))
            return dataset

    return LookTrainer
