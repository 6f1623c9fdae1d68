"""Every approach answers the same call: a section in, scored intervals out.

:func:`load_detector` reads a checkpoint and returns the detector its head
names; detect, evaluate and compare never ask which kind they hold. A
detector's :meth:`~Detector.detect` returns intervals in rows of the
section's image; :func:`to_depths` turns them into meters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

import numpy as np
import torch

from meltloc.checkpoint import load_checkpoint
from meltloc.errors import CheckpointError
from meltloc.section import Section
from meltloc.strips import Strip, make_strip, nominal_px_per_mm


@dataclass(frozen=True)
class Detection:
    """One detected feature in image rows (``row_from`` < ``row_to``)."""

    type: str
    score: float
    row_from: float
    row_to: float


class Detector(Protocol):
    """What every head offers."""

    head: str
    classes: tuple[str, ...]
    checkpoint: dict

    def detect(self, section: Section, score_threshold: float | None = None) -> list[Detection]:
        """Scored intervals in rows of ``section.image``, by descending score.

        ``score_threshold`` None uses the head's operating threshold (chosen on
        the validation split when it was trained); pass a low one for AP curves.
        """


def section_strip(section: Section, px_per_mm: float, width: int, inset: float) -> Strip:
    """The section's strip at a head's working scale (nominal 1.65 m when the image has no manifest entry)."""
    image_px_per_mm = section.scale.px_per_m / 1000 if section.scale is not None else nominal_px_per_mm(section.bounds)
    return make_strip(section.image, section.bounds, image_px_per_mm, px_per_mm, width, inset)


class RegressionDetector:
    """The start/stop regression head."""

    head = "regression"

    def __init__(self, checkpoint: dict, device: str = "cpu"):
        from meltloc.models.regression import RegressionConfig, RegressionNet, fuse_for_inference

        self.checkpoint = checkpoint
        self.cfg = RegressionConfig.from_dict(checkpoint["config"])
        self.classes = self.cfg.classes
        self.model = RegressionNet(self.cfg)
        try:
            self.model.load_state_dict(checkpoint["model"])
        except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError("regression weights do not fit the architecture in its config "
                                  "(written by another version of meltloc?); train again") from exc
        self.model = fuse_for_inference(self.model.to(device))
        self.device = device
        self.score_threshold = float(checkpoint.get("score_threshold", self.cfg.score_threshold))

    def detect(self, section: Section, score_threshold: float | None = None) -> list[Detection]:
        from meltloc.models.regression import detect_strip

        strip = section_strip(section, self.cfg.px_per_mm, self.cfg.width, self.cfg.inset)
        found = detect_strip(self.model, strip.pixels,
                             score_threshold=self.score_threshold if score_threshold is None else score_threshold)
        out = []
        for name, score, a, b in found:
            r0, r1 = strip.to_image_rows([a, b])
            out.append(Detection(name, score, float(r0), float(r1)))
        return out


# Head -> "module:class" of its detector, imported only when a checkpoint needs it.
DETECTORS = {
    "regression": "meltloc.detectors:RegressionDetector",
    "yolo": "meltloc.models.yolo:YoloDetector",
    "threshold": "meltloc.models.threshold:ThresholdDetector",
    "simple-cnn": "meltloc.models.classifiers:ClassifierDetector",
    "enhanced-cnn": "meltloc.models.classifiers:ClassifierDetector",
    "resnet34": "meltloc.models.classifiers:ClassifierDetector",
    "vgg16": "meltloc.models.classifiers:ClassifierDetector",
}


def _factory(head: str) -> Callable[[dict, str], Detector] | None:
    import importlib

    target = DETECTORS.get(head)
    if target is None:
        return None
    module, _, name = target.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        return None


def load_detector(weights: str | Path, device: str = "cpu") -> Detector:
    """The detector a checkpoint holds.

    Raises:
        CheckpointError: missing or foreign file, or a head this version cannot run.
    """
    ck = load_checkpoint(weights)
    factory = _factory(ck["head"])
    if factory is None:
        raise CheckpointError(f"'{ck['head']}' checkpoints cannot be used by 'meltloc detect' in this version", weights)
    try:
        return factory(ck, device)
    except CheckpointError as exc:  # name the file when the head's own reader could not
        if exc.path is None:
            raise CheckpointError(exc.message, weights) from exc
        raise


MIN_THICKNESS_MM = 0.3
"""Thinner detections are dropped: the thinnest melt layers logged are ~0.5 mm."""


def clean_detections(section: Section, detections: list[Detection],
                     min_thickness_mm: float = MIN_THICKNESS_MM) -> list[Detection]:
    """One row per band, inside the core, none degenerate; every head's output goes through here.

    Each detection is clipped to the core's ends; what is then thinner than
    ``min_thickness_mm`` is dropped (a sliver at a cut end is not a layer);
    a detection lying mostly (> 50 %) inside a higher-scored one of its type
    is dropped, and so is a lens overlapping a kept melt layer (one band is
    reported once, as the layer). Order is kept.
    """
    from meltloc import MELT_LAYER, MELT_LENS

    top, bottom = section.bounds.top_row, section.bounds.bottom_row
    px_per_mm = (section.scale.px_per_m / 1000 if section.scale is not None
                 else nominal_px_per_mm(section.bounds))
    min_rows = min_thickness_mm * px_per_mm
    kept = []
    for d in detections:
        r0, r1 = max(d.row_from, top), min(d.row_to, bottom)
        if r1 - r0 < min_rows:
            continue
        kept.append(Detection(d.type, d.score, float(r0), float(r1)))
    inside = set()
    ranked = sorted(range(len(kept)), key=lambda i: -kept[i].score)
    for n, i in enumerate(ranked):
        d = kept[i]
        for j in ranked[:n]:
            e = kept[j]
            if j in inside or e.type != d.type:
                continue
            overlap = min(d.row_to, e.row_to) - max(d.row_from, e.row_from)
            if overlap > 0.5 * (d.row_to - d.row_from):
                inside.add(i)
                break
    kept = [d for i, d in enumerate(kept) if i not in inside]
    layers = [(d.row_from, d.row_to) for d in kept if d.type == MELT_LAYER]
    return [d for d in kept
            if d.type != MELT_LENS or not any(d.row_from < b and a < d.row_to for a, b in layers)]


def to_depths(section: Section, detections: list[Detection]) -> list[dict]:
    """Detection rows as CONTRACT.md has them, after :func:`clean_detections` (depths empty without a manifest entry)."""
    rows = []
    for d in clean_detections(section, detections):
        if section.scale is not None:
            d0, d1 = (float(v) for v in section.scale.row_to_depth([d.row_from, d.row_to]))
            thickness = (d1 - d0) * 1000
        else:
            d0 = d1 = thickness = np.nan
        rows.append({"image": section.name, "depth_from_m": d0, "depth_to_m": d1, "thickness_mm": thickness,
                     "type": d.type, "score": d.score, "row_from": d.row_from, "row_to": d.row_to})
    rows.sort(key=lambda r: r["row_from"])
    return rows
