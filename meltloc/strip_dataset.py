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

#: The faintest melt layer training shows as one: 20 % darker than the ice around it, the faint end of what is
#: logged (DOMAIN.md, issue #13). Fading true layers stops there, and drawn-in faint layers start there.
FAINTEST_DARKNESS = 0.2


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
    marker = data_dir / ".meltloc.json"
    if marker.is_file() and '"complete": false' in marker.read_text(encoding="utf-8", errors="replace"):
        raise DatasetError("this convert output is unfinished (convert was stopped); run the same 'meltloc "
                           "convert' again to finish it", data_dir)
    table = pd.read_csv(table_path)
    need = {"image", "split", "row0", "image_rows_per_row", "px_per_mm", "width", "top_m", "bottom_m", "top_row",
            "bottom_row"}
    missing = need - set(table.columns)
    if missing:
        raise DatasetError(f"strips.csv lacks column(s) {', '.join(sorted(missing))}", table_path)
    return table


def apply_working_scale(table: pd.DataFrame, cfg) -> None:
    """Set a head config's ``px_per_mm``, ``width`` and ``inset`` to the strips' own (from ``strips.csv``)."""
    cfg.px_per_mm = float(table["px_per_mm"].iloc[0])
    cfg.width = int(table["width"].iloc[0])
    if "inset" in table.columns:
        cfg.inset = float(table["inset"].iloc[0])


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
        # e.g. left by a convert killed over an earlier run with other settings
        if "rows" in table and pixels.shape != (int(rec.rows), int(rec.width)):
            raise DatasetError(f"strip is {pixels.shape[0]} x {pixels.shape[1]} px but strips.csv says {rec.rows} x "
                               f"{rec.width}: it does not belong to this table; run 'meltloc convert' again "
                               "with --overwrite", path)
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


def _fade_layers(crop: np.ndarray, intervals: np.ndarray, rng: np.random.Generator, rows_per_mm: float) -> np.ndarray:
    """Fade some of the layers at ``intervals`` (crop rows) towards the ice around them: faint layers from dark
    ones. Each is faded by 20-80 %, but never to less than :data:`FAINTEST_DARKNESS` of the ice around it (a layer
    faded further is one nobody would log: its label would be on nothing)."""
    h, w = crop.shape
    background = np.maximum(cv2.blur(crop, (w, int(2 * 20 * rows_per_mm) | 1)), crop)
    ramp = np.zeros(h, np.float32)
    y = np.arange(h, dtype=np.float32) + 0.5
    for a, b in intervals:
        i0, i1 = max(int(a), 0), min(int(np.ceil(b)), h)
        if i1 <= i0 or rng.random() >= 0.7:
            continue
        contrast = 1.0 - float(crop[i0:i1].mean()) / max(float(background[i0:i1].mean()), 1e-3)
        most = 1.0 - FAINTEST_DARKNESS / contrast if contrast > FAINTEST_DARKNESS else 0.0
        fade = min(rng.uniform(0.2, 0.8), most)
        if fade > 0.05:
            ramp = np.maximum(ramp, fade * ((y >= a) & (y < b)))
    ramp = cv2.GaussianBlur(ramp[:, None], (0, 0), max(0.3 * rows_per_mm, 0.5))[:, 0]
    return crop + (background - crop) * ramp[:, None]


def _photometric(crop: np.ndarray, intervals: np.ndarray, rng: np.random.Generator, rows_per_mm: float) -> np.ndarray:
    """The look-changing augmentations of :func:`random_crop` on a float crop (rows x width); labels stay true."""
    h, w = crop.shape
    if rng.random() < 0.5:  # tilt: shear the crop, each column shifted in proportion to its distance from the axis
        half_tilt = rng.uniform(-2.0, 2.0) * rows_per_mm
        m = np.float32([[1, 0, 0], [half_tilt / max((w - 1) / 2, 1), 1, -half_tilt]])
        crop = cv2.warpAffine(crop, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return change_look(crop, intervals, rng, rows_per_mm)


def change_look(crop: np.ndarray, intervals: np.ndarray, rng: np.random.Generator, rows_per_mm: float) -> np.ndarray:
    """The augmentations of :func:`_photometric` that move nothing, on a float crop (rows x width, 0-255): some
    layers at ``intervals`` (crop rows) faded, then diffuse edges, gain, haze, gamma, vignetting, column
    fixed-pattern gain, row flicker, focus blur and sensor noise, each with its own probability. Boxes and
    intervals stay true, so the YOLO head's training uses it on its tiles too."""
    h, w = crop.shape
    col = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / max((w - 1) / 2, 1)
    if len(intervals) and rng.random() < 0.5:
        crop = _fade_layers(crop, intervals, rng, rows_per_mm)
    if rng.random() < 0.3:  # diffuse edges: blur along depth only
        crop = cv2.GaussianBlur(crop, (1, 0), sigmaX=0.1, sigmaY=rng.uniform(0.2, 1.0) * rows_per_mm)
    crop = crop * rng.uniform(0.5, 1.6)
    if rng.random() < 0.4:  # haze or black level: every band fainter
        crop = crop + rng.uniform(5, 40)
    crop = 255.0 * np.clip(crop / 255.0, 0, 1) ** rng.uniform(0.6, 1.6)
    if rng.random() < 0.4:  # vignetting and uneven light across the core
        crop = crop * (1 - rng.uniform(0, 0.5) * col ** 2 + rng.uniform(-0.15, 0.15) * col)[None, :]
    if rng.random() < 0.3:  # column fixed-pattern gain
        crop = crop * (1 + rng.normal(0, rng.uniform(0.01, 0.06), w)).astype(np.float32)[None, :]
    if rng.random() < 0.3:  # row flicker of the line scan
        crop = crop * (1 + rng.normal(0, rng.uniform(0.01, 0.04), h)).astype(np.float32)[:, None]
    if rng.random() < 0.3:
        crop = cv2.GaussianBlur(crop, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.5:
        crop = crop + rng.normal(0, rng.uniform(1, 8), crop.shape).astype(np.float32)
    return crop


def _insert_lens(crop: np.ndarray, top0: float, rng: np.random.Generator, mm: float) -> tuple[np.ndarray, float]:
    """Draw a melt lens (a dark lens shape over part of the width, 0.6-3 mm thick at its middle) from row ``top0``;
    returns the crop and the lens's middle row."""
    h, w = crop.shape
    thick = rng.uniform(0.6, 3.0) * mm
    width = rng.uniform(0.12, 0.5) * w
    cc = rng.uniform(width / 2, w - width / 2)
    x = np.arange(w, dtype=np.float32) + 0.5
    half = 0.5 * thick * np.sqrt(np.clip(1 - ((x - cc) / (width / 2)) ** 2, 0, 1))
    mid = top0 + thick / 2
    y = np.arange(h, dtype=np.float32)[:, None] + 0.5
    cover = np.clip(np.minimum(y + 0.5, (mid + half)[None, :]) - np.maximum(y - 0.5, (mid - half)[None, :]), 0, 1)
    return crop * (1 - rng.uniform(0.5, 1.0) * cover), float(mid)


def draw_layers(crop: np.ndarray, iv: np.ndarray, cls: np.ndarray, ign: np.ndarray, rng: np.random.Generator,
                rows_per_mm: float, layer_class: int, inside: tuple[float, float], lens_class: int | None = None,
                lens_share: float = 0.0):
    """Draw one or two extra melt layers into a float crop (rows x width) where it holds none, and label them.

    A melt layer is bubble-free ice: a band across the whole core that darkens
    the ice under it by a fraction (faint 0.2-0.45 half of the time, up to
    black), 0.5-15 mm thick (faint ones at least 1 mm), its boundaries sharp or
    ramped over up to 2 mm, tilted by up to +/- 2.5 mm from the axis to a side
    and slightly wavy. Its interval is its mean over the width, as truth and
    logs give it. ``inside`` is the span of crop rows that is core (not past a
    cut end); layers keep 2 mm from it and from every interval and ignore region.
    With ``lens_class``, a share ``lens_share`` of the drawn features are melt
    lenses instead (:func:`_insert_lens`), labelled as convert labels a logged
    lens: its middle +/- 1 mm.
    """
    h, w = crop.shape
    mm = rows_per_mm
    col = (np.arange(w, dtype=np.float32) - (w - 1) / 2) / max((w - 1) / 2, 1)
    y = np.arange(h, dtype=np.float32)[:, None] + 0.5
    taken = [tuple(v) for v in np.concatenate([iv.reshape(-1, 2), ign.reshape(-1, 2)])]
    for _ in range(int(rng.integers(1, 3))):
        faint = rng.random() < 0.5
        darkness = rng.uniform(FAINTEST_DARKNESS, 0.45) if faint else rng.uniform(0.45, 1.0)
        thick = float(np.clip(np.exp(rng.normal(np.log(2.3), 0.8)), 1.0 if faint else 0.5, 15.0)) * mm
        edge = (rng.uniform(0.2, 2.0) if rng.random() < 0.5 else rng.uniform(0.03, 0.15)) * mm
        half_tilt = rng.uniform(-2.5, 2.5) * mm
        lo, hi = inside[0] + 2 * mm + abs(half_tilt), inside[1] - 2 * mm - abs(half_tilt) - thick
        if hi <= lo:
            return crop, iv, cls
        top0 = rng.uniform(lo, hi)
        if any(top0 - 2 * mm < b and top0 + thick + 2 * mm > a for a, b in taken):
            continue
        if lens_class is not None and rng.random() < lens_share:
            # a lens is up to 3 mm thick: keep it inside the core and 2 mm clear of everything, as a layer
            if top0 + 3 * mm > inside[1] - 2 * mm or any(top0 - 2 * mm < b and top0 + 5 * mm > a for a, b in taken):
                continue
            crop, mid = _insert_lens(crop, top0, rng, mm)
            iv = np.concatenate([iv.reshape(-1, 2), [[mid - 1.0 * mm, mid + 1.0 * mm]]])
            cls = np.concatenate([cls, [lens_class]])
            taken.append((top0, top0 + 3 * mm))
            continue
        wave = np.interp(col, np.linspace(-1, 1, 5), rng.normal(0, 0.3 * mm, 5)).astype(np.float32)
        top = top0 + half_tilt * col + wave
        bottom = top + thick
        e = max(edge, 1.0)
        cover = np.clip((np.minimum(y + e / 2, bottom[None, :]) - np.maximum(y - e / 2, top[None, :])) / e, 0, 1)
        crop = crop * (1 - darkness * cover)
        iv = np.concatenate([iv.reshape(-1, 2), [[float(top.mean()), float(bottom.mean())]]])
        cls = np.concatenate([cls, [layer_class]])
        taken.append((float(top.min()), float(bottom.max())))
    return crop, iv, cls


#: Across-core width a strip spans, in mm (a 10 cm core less its insets), for drawing inclined features into crops.
STRIP_WIDTH_MM = 80.0


def draw_breaks(crop: np.ndarray, iv: np.ndarray, ign: np.ndarray, rng: np.random.Generator, rows_per_mm: float,
                inside: tuple[float, float]) -> np.ndarray:
    """Draw up to three core breaks into a float crop (rows x width), unlabelled: what a melt layer is not.

    A break is a thin (0.1-0.5 mm), nearly black, jagged line across the whole
    core, inclined by 0.5-20 degrees (as ``meltloc synth`` draws them; the
    brittle zone holds many). Thin and near horizontal, a break looks like a
    thin dark layer to a head that has seen few; these teach it the
    difference. Breaks keep 1 mm from every interval and ignore region and
    stay inside the core (``inside``: the span of crop rows that is core); one
    that finds no room there is not drawn.
    """
    h, w = crop.shape
    mm = rows_per_mm
    x_mm = (np.arange(w, dtype=np.float32) + 0.5 - w / 2) * (STRIP_WIDTH_MM / w)
    y = np.arange(h, dtype=np.float32)[:, None] + 0.5
    taken = [tuple(v) for v in np.concatenate([iv.reshape(-1, 2), ign.reshape(-1, 2)])]
    for _ in range(int(rng.integers(1, 4))):
        slope = np.tan(np.radians(rng.uniform(0.5, 20.0))) * rng.choice([-1.0, 1.0])
        thick = rng.uniform(0.1, 0.5) * mm
        knots = rng.standard_normal(w // 3 + 3).astype(np.float32)
        jag = np.interp(np.arange(w, dtype=np.float32) / 3.0, np.arange(knots.size), knots) * 0.25 * mm
        span = abs(slope) * STRIP_WIDTH_MM / 2 * mm + 0.75 * mm + thick
        lo, hi = inside[0] + 2 * mm + span, inside[1] - 2 * mm - span
        if hi <= lo:
            break
        mid = rng.uniform(lo, hi)
        if any(mid - span - 1 * mm < b and mid + span + 1 * mm > a for a, b in taken):
            continue
        centre = mid + slope * x_mm * mm + jag
        half = thick / 2 / max(np.cos(np.arctan(slope)), 0.3)
        cover = np.clip(np.minimum(y + 0.5, (centre + half)[None, :]) - np.maximum(y - 0.5, (centre - half)[None, :]),
                        0, 1)
        crop = crop * (1 - rng.uniform(0.8, 1.0) * cover)
        taken.append((mid - span, mid + span))
    return crop


def random_crop(sample: StripSample, rng: np.random.Generator, rows: int, focus: float = 0.6,
                augment: bool = True, rows_per_mm: float = 10.0, layer_class: int | None = None,
                insert: float = 0.0, lens_class: int | None = None, lens_share: float = 0.0,
                breaks: float = 0.0) -> Crop:
    """A crop of ``rows`` strip rows, often centred near a true interval or a core end, augmented.

    Augmentation (when ``augment``), so that a head learns layers rather than
    one generator's look: scale jitter along depth (0.85-1.15), vertical and
    horizontal flips, tilt (a shear of up to +/- 4 mm across the strip, which
    leaves each interval's mean over the width where it was), fading of the
    true layers towards the ice around them (faint layers from dark ones),
    blur along depth (diffuse edges), haze and black level (an offset that
    makes every band fainter), gain, gamma, vignetting, column fixed-pattern
    gain, row flicker, isotropic blur and noise. Every transform keeps the
    intervals true. With ``layer_class`` (the melt layer's class index), a
    share ``insert`` of the crops also get one or two melt layers drawn where
    they hold none (:func:`draw_layers`): faint, thick, diffuse and tilted
    layers are rare in any labelled set. A share ``breaks`` of the crops gets up
    to three core breaks drawn in, unlabelled (:func:`draw_breaks`): thin dark
    lines that are not melt. (``insert`` and ``breaks`` default to 0 here; the
    trainer passes its settings, ``TrainSettings.insert_layers`` and
    ``TrainSettings.insert_breaks``.)
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
    n_true = len(iv)
    inside = (max(0.0, -top * factor), min(float(rows), (h - top) * factor))  # crop rows that are core
    if augment and layer_class is not None and rng.random() < insert:
        crop, iv, cls = draw_layers(crop, iv, cls, ign, rng, rows_per_mm, layer_class, inside, lens_class,
                                     lens_share)
    if augment and breaks > 0 and rng.random() < breaks:
        crop = draw_breaks(crop, iv, ign, rng, rows_per_mm, inside)
    if augment:
        if rng.random() < 0.5:
            crop = crop[::-1]
            iv, ign = rows - iv[:, ::-1], rows - ign[:, ::-1]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        # Fading makes drawn layers no fainter: they already span faint to black.
        crop = _photometric(np.ascontiguousarray(crop), iv[:n_true], rng, rows_per_mm=rows_per_mm)
    crop = np.clip(crop, 0, 255).astype(np.uint8)
    return Crop(crop, iv.reshape(-1, 2).astype(np.float32), cls, ign.reshape(-1, 2).astype(np.float32))
