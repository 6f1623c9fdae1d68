"""Core strips: a section resampled to a working scale, the common canvas of every model.

A strip is the core's central columns (inset from the sides, which may be
tilted or rounded), resampled to a fixed number of columns and to a fixed
number of rows per millimetre of core, from the top end to the bottom end.
Depth resolution is what matters (layers are 0.5-15 mm thick, boundaries are
wanted to ~0.1 mm); the width is squeezed (melt layers cross the whole core,
so little is lost), which also keeps 1-D boxes far from the thin-box and
aspect-ratio limits of detectors.

Row mapping: strip row coordinate ``s`` (pixel ``s`` spans ``[s, s+1)``)
is image row coordinate ``row0 + s * image_rows_per_row``.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from meltloc.geometry import CoreBounds
from meltloc.names import SECTION_LENGTH_M
from meltloc.imageio import to_8bit_scale, to_uint8

DEFAULT_PX_PER_MM = 10.0
DEFAULT_WIDTH = 64
DEFAULT_INSET = 0.05
# A dim scan of more than 8 bits is brightened until its ice (the median) sits this many levels above the black, or
# its brightest ice (99th percentile) at BRIGHT_ICE_LEVEL, whichever comes first (:func:`dim_scan_gain`).
DIM_ICE_LEVEL = 16.0
BRIGHT_ICE_LEVEL = 128.0


@dataclass
class Strip:
    """A resampled core strip.

    Attributes:
        pixels: uint8 array (rows x width).
        row0: image row coordinate of the strip's top edge.
        image_rows_per_row: image rows per strip row.
        col0, col1: image columns the strip was taken from ([col0, col1)).
    """

    pixels: np.ndarray
    row0: float
    image_rows_per_row: float
    col0: int
    col1: int

    def to_image_rows(self, strip_rows):
        """Image row coordinates of strip row coordinates (scalars or arrays)."""
        return self.row0 + np.asarray(strip_rows, dtype=np.float64) * self.image_rows_per_row

    def to_strip_rows(self, image_rows):
        """Strip row coordinates of image row coordinates (scalars or arrays)."""
        return (np.asarray(image_rows, dtype=np.float64) - self.row0) / self.image_rows_per_row


def make_strip(image: np.ndarray, bounds: CoreBounds, image_px_per_mm: float,
               px_per_mm: float = DEFAULT_PX_PER_MM, width: int = DEFAULT_WIDTH,
               inset: float = DEFAULT_INSET) -> Strip:
    """Resample the core of a section image to a strip.

    Args:
        image: 2-D uint8/uint16 section image.
        bounds: the core found in it.
        image_px_per_mm: the image's scale along depth (from its ends and the manifest;
            for images without a manifest entry, the scale of the 1.65 m nominal length).
        px_per_mm: strip rows per millimetre of core.
        width: strip columns.
        inset: fraction of the core width left out on each side.

    Returns:
        The strip, from the top end (rounded down to a whole row) to the bottom end.
    """
    r0 = max(0, int(np.floor(bounds.top_row)))
    r1 = min(image.shape[0], int(np.ceil(bounds.bottom_row)))
    cut = int(round(inset * bounds.width_cols))
    c0, c1 = bounds.left_col + cut, bounds.right_col + 1 - cut
    if c1 - c0 < 4:
        c0, c1 = bounds.left_col, bounds.right_col + 1
    n_rows = max(1, int(round((r1 - r0) * px_per_mm / image_px_per_mm)))
    crop = image[r0:r1, c0:c1]
    if _area_sums_pay(crop.shape, width, n_rows):
        pixels = area_resize(crop, width, n_rows)
    else:
        down = n_rows < (r1 - r0) or width < (c1 - c0)
        pixels = cv2.resize(crop, (width, n_rows), interpolation=cv2.INTER_AREA if down else cv2.INTER_LINEAR)
    return Strip(strip_levels(pixels, bounds.black), float(r0), (r1 - r0) / n_rows, c0, c1)


def strip_levels(pixels: np.ndarray, black: float = 0.0) -> np.ndarray:
    """A resampled core as an 8-bit strip: :func:`meltloc.imageio.to_uint8`, except for a dim scan of more than
    8 bits, brightened above ``black`` (its level, in the file's own levels) as :func:`dim_scan_gain` says."""
    return levels_8bit(pixels, pixels, black)


def dim_scan_gain(ice_pixels: np.ndarray, divisor: float, black: float = 0.0) -> float:
    """How much a scan of more than 8 bits is brightened above its black when it is brought to 8 bits by ``divisor``
    (:func:`meltloc.imageio.to_8bit_scale` of the pixels converted), judged on pixels of its ice: 1 (no change),
    except where its ice (their median) would sit under :data:`DIM_ICE_LEVEL` of 255 levels above ``black``; then
    at most what takes it there, and at most what takes its brightest ice (the 99th percentile) to
    :data:`BRIGHT_ICE_LEVEL`, so a core of mostly clear, black ice keeps its bubbly stretches unclipped. A faint
    layer, 20-40 % darker than the ice, then stays 3-6 levels deep instead of vanishing in a level or two. An 8-bit
    file has no finer levels to give."""
    if ice_pixels.dtype != np.uint16 or ice_pixels.size == 0 or divisor == 1.0:
        return 1.0
    ice, bright = (float(v) / divisor for v in np.percentile(ice_pixels, (50, 99)))
    black_8bit = black / divisor
    if ice - black_8bit >= DIM_ICE_LEVEL or ice <= black_8bit:
        return 1.0
    room = BRIGHT_ICE_LEVEL - black_8bit
    gain = DIM_ICE_LEVEL / (ice - black_8bit)
    if bright > black_8bit and room > 0:
        gain = min(gain, room / (bright - black_8bit))
    return max(1.0, gain)


def levels_8bit(pixels: np.ndarray, ice_pixels: np.ndarray, black: float = 0.0,
                divisor: float | None = None) -> np.ndarray:
    """``pixels`` brought to 8 bits as :func:`meltloc.imageio.to_uint8` does (dividing by ``divisor``, by default
    :func:`meltloc.imageio.to_8bit_scale` of ``pixels``), brightened above ``black`` by :func:`dim_scan_gain` of
    ``ice_pixels`` (pixels of the same scan's ice: the strip itself, or a sample of the core)."""
    if divisor is None:
        divisor = to_8bit_scale(pixels)
    gain = dim_scan_gain(ice_pixels, divisor, black)
    if gain == 1.0:
        return to_uint8(pixels, divisor)
    out = pixels.astype(np.float32)
    out -= np.float32(black)
    out *= np.float32(gain / divisor)
    out += np.float32(black / divisor)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def _area_sums_pay(shape: tuple[int, int], width: int, n_rows: int) -> bool:
    """Whether :func:`area_resize` beats OpenCV's own ``INTER_AREA`` here: a reduction along both axes, by 8 or
    more across the width (at one thread: 3 x faster from 1,400 columns to 64, break-even near 450, slower below), and
    not by whole numbers along both axes (OpenCV's quicker path for those)."""
    rows, cols = shape
    whole = rows % n_rows == 0 and cols % width == 0
    return n_rows <= rows and cols >= 8 * width and not whole


def area_resize(image: np.ndarray, width: int, n_rows: int, chunk_rows: int = 1024) -> np.ndarray:
    """``cv2.resize(image, (width, n_rows), interpolation=cv2.INTER_AREA)`` for a reduction along both axes,
    in a third of the CPU time for an 8-bit core of ~1,400 columns cut to a 64-column strip (two thirds at
    16 bits; slower than OpenCV for a reduction by less than ~7 across the width: :func:`make_strip` decides).

    Each output pixel is the mean of the image over its cell, with OpenCV's own weights (partial pixels at
    the cell's edges by their overlap, slivers under 0.001 pixel left out). OpenCV weighs every pixel in
    turn; here the columns are summed from an integral image, a block of ``chunk_rows`` rows at a time (so
    the block stays in the cache), each cell's whole columns at once and its partial columns by their share;
    OpenCV then resamples the rows of that float image. Rounding is to the nearest grey level, halves to
    even, as OpenCV's general path rounds; only the float arithmetic differs, by one grey level in a few
    pixels per million of an 8-bit core (per ten thousand at 16 bits). (For a reduction by exactly 2 along
    both axes OpenCV takes a path that rounds halves up: there one pixel in eight may differ.)

    Args:
        image: 2-D uint8 or uint16 array.
        width, n_rows: the output's size, each at least 1 and at most the image's.
        chunk_rows: rows summed at a time.

    Returns:
        The resampled image, of the image's dtype.

    Raises:
        ValueError: another dtype, or an output size that is not a reduction.
    """
    if image.ndim != 2 or image.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"area_resize takes a 2-D uint8 or uint16 image, not {image.dtype} of shape {image.shape}")
    h, w = image.shape
    if not (1 <= width <= w and 1 <= n_rows <= h):
        raise ValueError(f"area_resize only reduces: {n_rows} x {width} from an image of {h} x {w}")
    # (width, 3, 3): each cell as three column ranges [lo, hi) with a weight: its whole columns, then its partial
    # ones (or none)
    ranges = np.array([[(a, b, 1.0 / cell), *[(k, k + 1, share) for k, share in parts],
                        *[(0, 0, 0.0)] * (2 - len(parts))] for a, b, cell, parts in _area_cells(w, width)])
    cuts = np.unique(ranges[:, :, :2].astype(int))
    lo, hi = (np.searchsorted(cuts, ranges[:, :, i].astype(int)) for i in (0, 1))              # (width, 3) each
    weight = ranges[:, :, 2].astype(np.float32)
    # 8-bit: 32-bit integer sums (they may wrap around in a large block; their differences, each cell's sums,
    # are exact all the same); 16-bit: 64-bit floats, which hold its sums exactly
    depth = cv2.CV_32S if image.dtype == np.uint8 else cv2.CV_64F
    columns = np.empty((h, width), np.float32)
    for r in range(0, h, chunk_rows):
        block = image[r:r + chunk_rows]
        left_of = np.diff(cv2.integral(block, sdepth=depth)[:, cuts], axis=0)   # per row: sum of columns < cut
        columns[r:r + len(block)] = sum((left_of[:, hi[:, i]] - left_of[:, lo[:, i]]) * weight[:, i]
                                        for i in range(3))                  # in float64, then stored as float32
    rows = cv2.resize(columns, (width, n_rows), interpolation=cv2.INTER_AREA)
    return np.clip(np.rint(rows), 0, np.iinfo(image.dtype).max).astype(image.dtype)


def _area_cells(n_in: int, n_out: int) -> list[tuple[int, int, float, list[tuple[int, float]]]]:
    """OpenCV's INTER_AREA cells along one axis (``computeResizeAreaTab``): per output pixel, the whole input
    pixels ``[a, b)``, the cell's size, and its partial pixels ``(index, share of the cell)``, left one first."""
    scale = n_in / n_out
    cells = []
    for k in range(n_out):
        f0 = k * scale
        f1 = f0 + scale
        cell = min(scale, n_in - f0)
        b = min(int(np.floor(f1)), n_in - 1)
        a = min(int(np.ceil(f0)), b)
        left = [(a - 1, (a - f0) / cell)] if a - f0 > 1e-3 else []
        right = [(b, min(f1 - b, 1.0, cell) / cell)] if f1 - b > 1e-3 else []
        cells.append((a, b, cell, left + right))
    return cells


def nominal_px_per_mm(bounds: CoreBounds, section_m: float = SECTION_LENGTH_M) -> float:
    """Scale of an image without a manifest entry, assuming a nominal 1.65 m section."""
    return bounds.length_rows / (section_m * 1000.0)
