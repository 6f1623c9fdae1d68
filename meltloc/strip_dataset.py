"""Strips of a convert output folder, with their intervals in strip rows, for training.

Reads ``DIR/strips.csv``, ``DIR/strips/<stem>.png`` and ``DIR/intervals.csv``
as ``meltloc convert`` writes them. Augmentation keeps the geometry true:
every transform of the pixels is applied to the intervals too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from meltloc import IGNORE_TYPES
from meltloc.errors import DatasetError
from meltloc.geometry import DepthScale


@dataclass
class StripSample:
    """One section's strip with its labels.

    Attributes:
        image: image name.
        split: train, val or test.
        pixels: (H, W) uint8 strip.
        intervals: (M, 2) positive intervals in strip rows.
        classes: (M,) class index into the head's classes.
        ignore: (K, 2) ignore regions in strip rows.
        row0, image_rows_per_row: strip row -> image row map.
        scale: the image's depth <-> row map.
    """

    image: str
    split: str
    pixels: np.ndarray
    intervals: np.ndarray
    classes: np.ndarray
    ignore: np.ndarray
    row0: float
    image_rows_per_row: float
    scale: DepthScale

    def to_image_rows(self, strip_rows):
        return self.row0 + np.asarray(strip_rows, dtype=np.float64) * self.image_rows_per_row

    def to_depth_m(self, strip_rows):
        return self.scale.row_to_depth(self.to_image_rows(strip_rows))


def read_strip_table(data_dir: str | Path) -> pd.DataFrame:
    """``strips.csv`` of a convert output, checked.

    Raises:
        DatasetError: the folder is not a convert output.
    """
    data_dir = Path(data_dir)
    table_path = data_dir / "strips.csv"
    if not table_path.is_file():
        raise DatasetError("no strips.csv: is this a 'meltloc convert' output folder?", data_dir)
    table = pd.read_csv(table_path)
    need = {"image", "split", "row0", "image_rows_per_row", "px_per_mm", "width", "top_m", "bottom_m", "top_row",
            "bottom_row"}
    missing = need - set(table.columns)
    if missing:
        raise DatasetError(f"strips.csv lacks column(s) {', '.join(sorted(missing))}", table_path)
    return table


def load_strips(data_dir: str | Path, classes: tuple[str, ...], splits: tuple[str, ...] | None = None) -> list[StripSample]:
    """Load the strips (of the given splits) and their intervals.

    Raises:
        DatasetError: missing files or columns.
    """
    data_dir = Path(data_dir)
    table = read_strip_table(data_dir)
    iv_path = data_dir / "intervals.csv"
    if not iv_path.is_file():
        raise DatasetError("no intervals.csv: is this a 'meltloc convert' output folder?", data_dir)
    intervals = pd.read_csv(iv_path)
    out = []
    for rec in table.itertuples():
        if splits is not None and rec.split not in splits:
            continue
        path = data_dir / "strips" / (Path(rec.image).stem + ".png")
        pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
        if pixels is None:
            raise DatasetError("strip image missing or unreadable; run 'meltloc convert' again", path)
        mine = intervals[intervals["image"] == rec.image]
        to_strip = lambda rows: (np.asarray(rows, dtype=np.float64) - rec.row0) / rec.image_rows_per_row  # noqa: E731
        pos = mine[mine["type"].isin(classes)]
        ign = mine[mine["type"].isin(IGNORE_TYPES)]
        out.append(StripSample(
            image=rec.image, split=rec.split, pixels=pixels,
            intervals=np.stack([to_strip(pos["row_from"]), to_strip(pos["row_to"])], axis=1).reshape(-1, 2),
            classes=np.array([classes.index(t) for t in pos["type"]], dtype=np.int64),
            ignore=np.stack([to_strip(ign["row_from"]), to_strip(ign["row_to"])], axis=1).reshape(-1, 2),
            row0=float(rec.row0), image_rows_per_row=float(rec.image_rows_per_row),
            scale=DepthScale(float(rec.top_m), float(rec.bottom_m), float(rec.top_row), float(rec.bottom_row)),
        ))
    return out


@dataclass
class Crop:
    """An augmented training crop: pixels and labels in crop rows."""

    pixels: np.ndarray
    intervals: np.ndarray
    classes: np.ndarray
    ignore: np.ndarray


def random_crop(sample: StripSample, rng: np.random.Generator, rows: int, focus: float = 0.6,
                augment: bool = True) -> Crop:
    """A crop of ``rows`` strip rows, often centred near a true interval or a core end, augmented.

    Augmentation (when ``augment``): scale jitter along depth (0.85-1.15),
    vertical and horizontal flips, gain, gamma, blur and noise.
    """
    pix = sample.pixels
    iv, cls, ign = sample.intervals.copy(), sample.classes.copy(), sample.ignore.copy()
    zoom = rng.uniform(0.85, 1.15) if augment else 1.0
    src_rows = int(round(rows / zoom))
    h = pix.shape[0]
    u = rng.random()
    if len(iv) and u < focus:
        a, b = iv[rng.integers(len(iv))]
        centre = rng.uniform(a, b) + rng.uniform(-0.4, 0.4) * src_rows
    elif u < focus + 0.1:
        # The core's cut ends are dark edges that are not melt layers: show them often.
        centre = rng.choice([0, h]) + rng.uniform(-0.3, 0.3) * src_rows
    else:
        centre = rng.uniform(0, h)
    top = int(np.clip(round(centre - src_rows / 2), 0, max(0, h - src_rows)))
    window = pix[top:top + src_rows]
    if window.shape[0] < src_rows:
        window = np.pad(window, ((0, src_rows - window.shape[0]), (0, 0)), mode="edge")
    crop = cv2.resize(window, (pix.shape[1], rows), interpolation=cv2.INTER_LINEAR) if src_rows != rows else window
    factor = rows / src_rows
    shift = lambda x: (x - top) * factor  # noqa: E731
    iv, ign = shift(iv), shift(ign)
    keep = (iv[:, 1] > 0) & (iv[:, 0] < rows)
    # An interval cut by the crop edge is not a whole layer: ignore its visible part rather than teach a false end.
    cut = keep & ((iv[:, 0] < 0) | (iv[:, 1] > rows))
    ign = np.concatenate([ign, iv[cut]]) if cut.any() else ign
    iv, cls = iv[keep & ~cut], cls[keep & ~cut]
    crop = crop.astype(np.float32)
    if augment:
        if rng.random() < 0.5:
            crop = crop[::-1]
            iv, ign = rows - iv[:, ::-1], rows - ign[:, ::-1]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crop = np.ascontiguousarray(crop) * rng.uniform(0.6, 1.5)
        crop = 255.0 * np.clip(crop / 255.0, 0, 1) ** rng.uniform(0.7, 1.4)
        if rng.random() < 0.3:
            crop = cv2.GaussianBlur(crop, (0, 0), rng.uniform(0.5, 1.5))
        if rng.random() < 0.5:
            crop = crop + rng.normal(0, rng.uniform(1, 8), crop.shape).astype(np.float32)
    crop = np.clip(crop, 0, 255).astype(np.uint8)
    return Crop(crop, iv.reshape(-1, 2).astype(np.float32), cls, ign.reshape(-1, 2).astype(np.float32))
