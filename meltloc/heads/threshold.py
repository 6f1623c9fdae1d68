"""The threshold head: a plain row-profile baseline, what a user would try before a network.

A melt layer is a band darker than the ice around it. This head takes the
row means of the core strip (:mod:`meltloc.strips`), divides them by the
local brightness (the 75th percentile over ``window_mm`` of core), smooths
the contrast ``1 - profile / local`` along depth (Gaussian, ``smooth_mm``),
and measures it in robust standard deviations of the whole strip (1.4826 x
the median absolute deviation). Every run of rows above ``k / 2`` is a
candidate; its interval is where the contrast is at least half of the run's
peak (the full width at half maximum), and its score is
``min(1, peak / (2 k))``, so the operating score 0.5 means "peak >= k".

``meltloc train --head threshold`` chooses ``k`` and ``smooth_mm`` on the
training split (the best melt-layer F1 at IoU 0.5; no network, seconds of
work) and checks them on the validation split. Every learned head must beat
it clearly.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from typing import TYPE_CHECKING

from meltloc import MELT_LAYER
from meltloc.detections import MIN_THICKNESS_MM
from meltloc.errors import DatasetError
from meltloc.heads.base import Head, PlainConfig, register, section_strip, strip_detections

if TYPE_CHECKING:  # imported by the registry: numpy, pandas and cv2 only when the head works
    import numpy as np
    import pandas as pd

    from meltloc.section import Section

HEAD = "threshold"
K_GRID = (2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0)
SMOOTH_GRID_MM = (0.1, 0.2, 0.4, 0.8)


@dataclass
class ThresholdConfig(PlainConfig):
    """Working scale and the tuned parameters (stored in the checkpoint).

    Attributes:
        px_per_mm, width, inset: the strip the profile is taken from.
        k: the operating contrast peak, in robust standard deviations.
        smooth_mm: Gaussian smoothing of the contrast along depth (sigma, mm).
        window_mm: window of the local brightness (mm of core).
    """

    px_per_mm: float = 10.0
    width: int = 64
    inset: float = 0.05
    classes: tuple[str, ...] = (MELT_LAYER,)
    k: float = 4.0
    smooth_mm: float = 0.2
    window_mm: float = 41.0


def contrast_z(pixels: np.ndarray, px_per_mm: float, smooth_mm: float, window_mm: float) -> np.ndarray:
    """(H,) darkness of each strip row against the ice around it, in robust standard deviations."""
    import cv2
    import numpy as np

    from meltloc.heads.regression.net import normalise_local

    relative = normalise_local(pixels, int(round(window_mm * px_per_mm))).numpy().mean(axis=1)
    contrast = (1.0 - relative).astype(np.float32)
    sigma = max(smooth_mm * px_per_mm, 0.3)
    contrast = cv2.GaussianBlur(contrast[:, None], (1, 0), sigmaX=0.1, sigmaY=sigma,
                                borderType=cv2.BORDER_REPLICATE)[:, 0]
    mad = float(np.median(np.abs(contrast - np.median(contrast))))
    return (contrast - float(np.median(contrast))) / max(1.4826 * mad, 1e-4)


def detect_profile(z: np.ndarray, k: float, score_threshold: float = 0.0) -> list[tuple[str, float, float, float]]:
    """Intervals of a contrast profile: ``(class name, score, start row, end row)`` in strip rows, by score.

    Args:
        z: (H,) contrast in robust standard deviations (:func:`contrast_z`).
        k: the contrast peak that scores 0.5.
        score_threshold: keep candidates scoring at least this.
    """
    import numpy as np

    above = np.concatenate([[False], z > k / 2, [False]])
    edges = np.flatnonzero(np.diff(above.astype(np.int8)))
    out = []
    for a, b in zip(edges[::2], edges[1::2]):
        run = z[a:b]
        peak = float(run.max())
        score = min(1.0, peak / (2 * k))
        if score < score_threshold:
            continue
        half = np.flatnonzero(run >= peak / 2)
        out.append((MELT_LAYER, score, float(a + half[0]), float(a + half[-1] + 1)))
    out.sort(key=lambda r: -r[1])
    return out


@register("threshold")
class ThresholdHead(Head):
    """The threshold baseline: rows darker than the ice around them by k robust standard deviations."""

    summary = "a plain threshold on the row-mean contrast profile (the baseline every network must beat)"
    train_options = ("epochs",)  # accepted and ignored: a grid search has no epochs
    option_help = {"epochs": "ignored: a grid search over k and the smoothing"}

    def __init__(self, checkpoint: dict, device: str = "cpu"):
        super().__init__(checkpoint, device)
        self.cfg = ThresholdConfig.from_dict(checkpoint["config"])
        self.classes = self.cfg.classes
        self.score_threshold = float(checkpoint.get("score_threshold", 0.5))

    def predict(self, section: Section):
        cfg = self.cfg
        strip = section_strip(section, cfg.px_per_mm, cfg.width, cfg.inset)
        return strip, contrast_z(strip.pixels, cfg.px_per_mm, cfg.smooth_mm, cfg.window_mm)

    def decode(self, prediction, score_threshold: float):
        strip, z = prediction
        return strip_detections(strip, detect_profile(z, self.cfg.k, score_threshold))

    @classmethod
    def train(cls, data, out, *, head="threshold", seed=0, device="cpu", resume=None, **options) -> dict:
        result = train(data, out)
        result["message"] = (f"wrote {out} (k {result['k']:g} robust sd, smoothing {result['smooth_mm']:g} mm: "
                             f"train F1 {result['train_f1']:.3f}, val F1 {result['val_f1']:.3f}; "
                             f"{result['seconds']:.0f} s)")
        return result


def _predict(samples, cfg: ThresholdConfig, profiles: dict, k: float) -> pd.DataFrame:
    from meltloc.heads.training import detections_table

    return detections_table(samples, lambda smp: detect_profile(profiles[smp.image], k, 0.5))


def _f1(samples, truth: pd.DataFrame, cfg: ThresholdConfig, profiles: dict, k: float) -> float:
    import numpy as np

    from meltloc.metrics import evaluate_intervals

    pred = _predict(samples, cfg, profiles, k)
    pred = pred[(pred["depth_to_m"] - pred["depth_from_m"]) * 1000 >= MIN_THICKNESS_MM]  # as detect drops them
    f1 = evaluate_intervals(pred, truth).overall["f1"]
    return float(f1) if np.isfinite(f1) else -1.0


def train(data_dir: str | Path, out: str | Path, show_progress: bool = True) -> dict:
    """Choose ``k`` and ``smooth_mm`` on the train split (best melt-layer F1) and write the checkpoint.

    Raises:
        DatasetError: no training strips or no melt layer in them.
    """
    import pandas as pd

    from meltloc.checkpoint import library_versions, save_checkpoint
    from meltloc.heads.training import write_run_record
    from meltloc.strip_dataset import apply_working_scale, load_strips, read_strip_table

    t0 = time.time()
    data_dir = Path(data_dir)
    table = read_strip_table(data_dir)
    cfg = ThresholdConfig()
    apply_working_scale(table, cfg)
    train_set = load_strips(data_dir, cfg.classes, ("train",))
    val_set = load_strips(data_dir, cfg.classes, ("val",))
    if not train_set:
        raise DatasetError("no strip in the train split", data_dir)
    intervals = pd.read_csv(data_dir / "intervals.csv")
    if not (intervals["image"].isin([s.image for s in train_set]) & (intervals["type"] == MELT_LAYER)).any():
        raise DatasetError("the train split holds no melt layer", data_dir)
    truth_train = intervals[intervals["image"].isin([s.image for s in train_set])]
    truth_val = intervals[intervals["image"].isin([s.image for s in val_set])]
    grid = []
    for smooth_mm in SMOOTH_GRID_MM:
        profiles = {s.image: contrast_z(s.pixels, cfg.px_per_mm, smooth_mm, cfg.window_mm) for s in train_set}
        for k in K_GRID:
            grid.append({"smooth_mm": smooth_mm, "k": k, "train_f1": _f1(train_set, truth_train, cfg, profiles, k)})
    best = max(grid, key=lambda g: (g["train_f1"], -abs(g["k"] - 4.0)))
    cfg.k, cfg.smooth_mm = float(best["k"]), float(best["smooth_mm"])
    val_f1 = float("nan")
    if val_set:
        profiles = {s.image: contrast_z(s.pixels, cfg.px_per_mm, cfg.smooth_mm, cfg.window_mm) for s in val_set}
        val_f1 = _f1(val_set, truth_val, cfg, profiles, cfg.k)
    seconds = time.time() - t0
    save_checkpoint(out, {"head": HEAD, "config": cfg.to_dict(), "model": {}, "score_threshold": 0.5,
                          "train": {"data": str(data_dir), "grid": grid, "train_f1": best["train_f1"],
                                    "val_f1": val_f1, "seconds": seconds, "parameters": 2,
                                    "n_train_sections": len(train_set), "n_val_sections": len(val_set),
                                    "libraries": library_versions()}})
    write_run_record(out, {"head": HEAD, "data": str(data_dir), "k": cfg.k, "smooth_mm": cfg.smooth_mm,
                           "val_f1": val_f1}, grid, title=f"threshold: {Path(out).name}")
    return {"k": cfg.k, "smooth_mm": cfg.smooth_mm, "train_f1": best["train_f1"], "val_f1": val_f1,
            "seconds": seconds, "out": str(out)}
