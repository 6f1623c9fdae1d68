"""Core geometry: where the core lies in an image, and depth <-> row.

A section image shows one core piece on a black background; depth runs down
the rows. :func:`find_core` finds the top and bottom ends (sub-pixel rows)
and the columns covered by ice over the whole length. :class:`DepthScale`
maps depth in meters to rows and back, from the manifest depths of the two
ends: the scale is derived per image, never hard-coded.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from meltloc.errors import GeometryError
from meltloc.imageio import to_8bit_scale
from meltloc.names import SECTION_LENGTH_M

# Down-sampling factor for the coarse search; ends are refined at full resolution.
_COARSE = 4
# The core must stand this many levels (8-bit scale) above the black; a dimmer scan of more than 8 bits, clear of the
# black's noise by _NOISE_MARGIN times the spread of its darkest pixels, is measured with its core _DIM_CONTRAST
# levels up (:func:`_dim_scan_divisor`).
_MIN_CONTRAST = 4.0
_DIM_CONTRAST = 12.0
_NOISE_MARGIN = 16.0
_NOMINAL_SECTION_MM = SECTION_LENGTH_M * 1000.0


@dataclass(frozen=True)
class CoreBounds:
    """Where the core is in an image (pixel units, rows down, columns right).

    Attributes:
        top_row: row of the top end (mean over the core's width, sub-pixel).
        bottom_row: row of the bottom end.
        left_col: first column covered by ice along the whole core.
        right_col: last such column (inclusive).
        height: image height in rows; width: image width in columns.
        black: the black's level around the core (1st percentile of a coarse view), in the file's own levels; the
            strips of a dim scan of more than 8 bits are brightened above it (:func:`meltloc.strips.dim_scan_gain`).
    """

    top_row: float
    bottom_row: float
    left_col: int
    right_col: int
    height: int
    width: int
    black: float = 0.0

    @property
    def length_rows(self) -> float:
        return self.bottom_row - self.top_row

    @property
    def width_cols(self) -> int:
        return self.right_col - self.left_col + 1


@dataclass(frozen=True)
class DepthScale:
    """Linear depth <-> row map of one image, pinned at the core's two ends.

    Attributes:
        top_m, bottom_m: manifest depths of the top and bottom ends.
        top_row, bottom_row: image rows of those ends.
    """

    top_m: float
    bottom_m: float
    top_row: float
    bottom_row: float

    @property
    def px_per_m(self) -> float:
        return (self.bottom_row - self.top_row) / (self.bottom_m - self.top_m)

    def depth_to_row(self, depth_m):
        """Row (float) of a depth in meters; works on scalars and arrays."""
        return self.top_row + (np.asarray(depth_m, dtype=np.float64) - self.top_m) * self.px_per_m

    def row_to_depth(self, row):
        """Depth in meters of a (float) row; works on scalars and arrays."""
        return self.top_m + (np.asarray(row, dtype=np.float64) - self.top_row) / self.px_per_m

    def mm_to_rows(self, mm: float) -> float:
        return mm / 1000.0 * self.px_per_m


def _smooth(x: np.ndarray, width: int) -> np.ndarray:
    if width <= 1:
        return x
    kernel = np.ones(width, dtype=np.float32) / width
    return np.convolve(x, kernel, mode="same")


def _integer_percentiles(values: np.ndarray, qs: tuple[float, ...]) -> list[float]:
    """``np.percentile(values, q)`` (linear interpolation) for each q, from one histogram of integer pixels: the
    same figures, several times faster than sorting a whole image."""
    cumulative = np.bincount(values.ravel(), minlength=2).cumsum()
    n = int(cumulative[-1])
    out = []
    for q in qs:
        pos = q / 100.0 * (n - 1)
        below = int(np.floor(pos))
        lo = int(np.searchsorted(cumulative, below, side="right"))
        hi = int(np.searchsorted(cumulative, min(below + 1, n - 1), side="right"))
        out.append(lo + (hi - lo) * (pos - below))
    return out


def _closed_along_depth(lit: np.ndarray) -> np.ndarray:
    """A coarse lit mask closed along depth (dark melt layers and clear patches, up to ~2.5 % of the core length)
    and a little across, then opened 3 x 3."""
    k_rows = max(3, int(0.025 * lit.shape[0]) | 1)
    # Pad with background first: closing must not glue the core to the image border.
    pad = k_rows
    lit = cv2.copyMakeBorder(lit, pad, pad, 2, 2, cv2.BORDER_CONSTANT, value=0)
    lit = cv2.morphologyEx(lit, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (3, k_rows)))
    lit = np.ascontiguousarray(lit[pad:-pad, 2:-2])
    return cv2.morphologyEx(lit, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))


def _dim_scan_divisor(divisor: float, black: float, black_spread: float, ice: float) -> float:
    """The divisor that brings a scan to the levels the core finder works on: ``divisor`` (the 8-bit scale), except
    for a scan of more than 8 bits whose core stands less than :data:`_MIN_CONTRAST` levels above the black on the
    8-bit scale, yet far above the black's own noise: that one is measured on a finer scale, with its core
    :data:`_DIM_CONTRAST` levels above the black. (A dim 16-bit scan: ice 365 of 65,535 levels above the black,
    1.4 on the 8-bit scale, where the black's darkest pixels spread over 11. Its strips are brightened too:
    :func:`meltloc.strips.dim_scan_gain`.)

    Args:
        divisor: the 8-bit scale (:func:`meltloc.imageio.to_8bit_scale`).
        black, ice: the coarse view's 1st and 80th percentiles, in the file's own levels.
        black_spread: its 5th percentile minus its 1st; counted as at least a 32nd of an 8-bit level.
    """
    contrast = ice - black
    if divisor == 1.0 or contrast >= _MIN_CONTRAST * divisor:
        return divisor
    if contrast < _NOISE_MARGIN * max(black_spread, divisor / 32.0):
        return divisor  # nothing stands clear of the black's noise: no core (refused by the caller)
    return contrast / _DIM_CONTRAST


def find_core(image: np.ndarray) -> CoreBounds:
    """Find the core's ends and sides in a section image.

    Steps: a coarse lit mask (threshold between the black background and the
    ice level, closed along depth so dark bands inside the core do not cut
    it; kept only near the box around the same mask made from the threshold
    opened 3 x 3, against sensor noise); the largest component is the core;
    its ends are the medians over central columns of each column's first and
    last lit row; each end is then
    refined at full resolution as the mean, over ~1 mm column blocks, of
    where each block crosses half its own ice level (:func:`_refine_end`).
    Robust to uneven cuts, dark ice next to an end, uneven illumination
    across the core and a slightly tilted core. A dim scan of more than 8
    bits is measured on a finer scale than 8 bits (:func:`_dim_scan_divisor`).

    Args:
        image: 2-D uint8 or uint16 array, depth down the rows.

    Raises:
        GeometryError: no core, a dim scan lit from end to end with no black
            rows, or an image whose core runs across the rows (rotated).
    """
    if image.ndim != 2 or min(image.shape) < 8:
        raise GeometryError(f"image of shape {image.shape} is too small to hold a core")
    height, width = image.shape
    small = cv2.resize(image, (max(width // _COARSE, 2), max(height // _COARSE, 2)), interpolation=cv2.INTER_AREA)
    # 16-bit files may hold 8- to 16-bit data: bring every kind to 0-255 (same levels as the 8-bit original).
    black_raw, dark_raw, ice_raw = _integer_percentiles(small, (1, 5, 80))
    scale_8bit = to_8bit_scale(image)
    divisor = _dim_scan_divisor(scale_8bit, black_raw, dark_raw - black_raw, ice_raw)
    if divisor == scale_8bit and ice_raw - black_raw < _MIN_CONTRAST * scale_8bit:
        raise GeometryError("no core found: the image is (nearly) uniformly dark")
    background, ice = black_raw / divisor, ice_raw / divisor
    small = small.astype(np.float32)
    if divisor != 1.0:
        small /= divisor
    threshold = background + max(3.0, 0.25 * (ice - background))
    above = (small > threshold).astype(np.uint8)
    lit = _closed_along_depth(above)
    # In a dim, noisy scan single background pixels rise over the threshold, and the closing glues that speckle to
    # the core (its ends at the image's edges, in the black). A 3 x 3 opening before the closing takes speckle away:
    # the mask is kept only within two coarse pixels of the box around the large regions of that speckle-free mask
    # (all of them, so that a long dark stretch which cuts the speckle-free core in two cuts nothing here).
    square = cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3))
    clean = _closed_along_depth(cv2.morphologyEx(above, cv2.MORPH_OPEN, square))
    n, _, stats, _ = cv2.connectedComponentsWithStats(clean, connectivity=8)
    if n >= 2:
        regions = stats[1:][stats[1:, cv2.CC_STAT_AREA] >= 0.01 * stats[1:, cv2.CC_STAT_AREA].max()]
        x0, y0 = regions[:, cv2.CC_STAT_LEFT].min(), regions[:, cv2.CC_STAT_TOP].min()
        x1 = (regions[:, cv2.CC_STAT_LEFT] + regions[:, cv2.CC_STAT_WIDTH]).max()
        y1 = (regions[:, cv2.CC_STAT_TOP] + regions[:, cv2.CC_STAT_HEIGHT]).max()
        lit[:max(0, y0 - 2)] = 0
        lit[y1 + 2:] = 0
        lit[:, :max(0, x0 - 2)] = 0
        lit[:, x1 + 2:] = 0
    n, labels, stats, _ = cv2.connectedComponentsWithStats(lit, connectivity=8)
    if n < 2:
        raise GeometryError("no core found: nothing brighter than the background")
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = (int(v) for v in stats[best, :4])
    if w > h:
        raise GeometryError(
            f"the core lies across the rows ({w * _COARSE} px wide, {h * _COARSE} px long): "
            "is the image rotated? Depth must run down the rows")
    if divisor != scale_8bit and y == 0 and y + h == lit.shape[0]:
        # Dim and lit from end to end with no black rows: an evenly lit frame with no core in it, not a core.
        raise GeometryError("no core found: a dim scan lit from end to end, with no black beyond the core's ends")
    core = labels[y:y + h, x:x + w] == best
    # Columns lit over at least 90 % of the core's length: the sides.
    col_cover = core.mean(axis=0)
    full = np.flatnonzero(col_cover >= 0.9 * col_cover.max())
    left_s, right_s = x + int(full[0]), x + int(full[-1])
    # Ends per column, over the central 80 % of the width.
    span = right_s - left_s + 1
    c0, c1 = left_s + span // 10 - x, right_s - span // 10 - x + 1
    cols = core[:, c0:max(c1, c0 + 1)]
    has = cols.any(axis=0)
    if not has.any():
        raise GeometryError("no core found: no column is lit")
    first = np.argmax(cols, axis=0)[has]
    last = (cols.shape[0] - 1 - np.argmax(cols[::-1], axis=0))[has]
    top_coarse = (y + float(np.median(first))) * _COARSE
    bottom_coarse = (y + float(np.median(last)) + 1) * _COARSE
    left_col = left_s * _COARSE + _COARSE
    right_col = min(width - 1, (right_s + 1) * _COARSE - 1 - _COARSE)
    # Rough scale for window sizes only: a section is nominally 1.65 m long.
    px_per_mm = max((bottom_coarse - top_coarse) / _NOMINAL_SECTION_MM, 1.0)
    top = _refine_end(image, top_coarse, left_col, right_col, ice, px_per_mm, upper=True, scale=divisor)
    bottom = _refine_end(image, bottom_coarse, left_col, right_col, ice, px_per_mm, upper=False, scale=divisor)
    if bottom - top < 0.2 * height:
        raise GeometryError(f"the core found is implausibly short ({bottom - top:.0f} of {height} rows)")
    return CoreBounds(top, bottom, int(left_col), int(right_col), height, width, float(black_raw))


def _refine_end(image: np.ndarray, coarse_row: float, left: int, right: int, ice: float, px_per_mm: float,
                upper: bool, scale: float | None = None) -> float:
    """Sub-pixel row of one core end near ``coarse_row``.

    The central 80 % of the core is cut into column blocks about 1 mm wide;
    each block's end is where its mean (run over 5 rows, against sensor
    noise) crosses half-way between the black background and its own ice
    level (the median over 1.5-8 mm inside the end), with linear
    interpolation; the end is the trimmed mean over the blocks (a tenth
    dropped at each side). This is the mean end over the
    width, as :class:`DepthScale` wants, whatever the slope of a hand-cut end
    or the illumination across the core. Falls back to the central row mean
    (:func:`_refine_end_rows`) when fewer than 3 blocks show an edge.
    """
    height = image.shape[0]
    win = int(max(4.0 * px_per_mm, 3 * _COARSE))
    r0, r1 = max(0, int(coarse_row) - win), min(height, int(coarse_row) + win + 1)
    span = right - left + 1
    c0, c1 = left + span // 10, right - span // 10 + 1
    block = max(1, int(round(px_per_mm)))
    n_blocks = (c1 - c0) // block
    if n_blocks < 3 or r1 - r0 < 4:
        return _refine_end_rows(image, coarse_row, left, right, ice, upper, scale)
    c1 = c0 + n_blocks * block
    scale = to_8bit_scale(image) if scale is None else scale

    def block_means(rows: slice) -> np.ndarray:
        band = image[rows, c0:c1].astype(np.float32) / scale
        return band.reshape(band.shape[0], n_blocks, block).mean(axis=2)

    edge_band = block_means(slice(r0, r1))
    near, far = 1.5 * px_per_mm, 8.0 * px_per_mm  # the ice level is taken this far inside the end
    if upper:
        inside = block_means(slice(min(height, int(coarse_row + near)), min(height, int(coarse_row + far))))
    else:
        edge_band = edge_band[::-1]
        inside = block_means(slice(max(0, int(coarse_row - far)), max(0, int(coarse_row - near))))
    if inside.shape[0] < 2:
        return _refine_end_rows(image, coarse_row, left, right, ice, upper, scale)
    level = np.median(inside, axis=0)
    black = float(np.median(edge_band[:max(2, win // 3)]))
    # A running mean over 5 rows (0.3 mm at 186 px/cm) before the crossings: a symmetric box leaves an edge's
    # half-way row where it is, and in a dim, noisy scan it keeps the black's noise from crossing half-way early.
    edge_band = cv2.blur(np.ascontiguousarray(edge_band), (1, 5), borderType=cv2.BORDER_REPLICATE)
    half = black + 0.5 * (level - black)
    ends = []
    for j in np.flatnonzero(level - black >= 3.0):
        seq = edge_band[:, j]
        above = np.flatnonzero(seq >= half[j])
        if above.size == 0 or above[0] == 0:
            continue
        i = int(above[0])
        lo, hi = float(seq[i - 1]), float(seq[i])
        ends.append(i - 1 + ((half[j] - lo) / (hi - lo) if hi > lo else 0.5) + 0.5)
    if len(ends) < 3:
        return _refine_end_rows(image, coarse_row, left, right, ice, upper, scale)
    ends_arr = np.sort(np.asarray(ends))
    cut = len(ends_arr) // 10
    edge = float(ends_arr[cut:len(ends_arr) - cut].mean())
    return float(r0 + edge) if upper else float(r1 - edge)


def _refine_end_rows(image: np.ndarray, coarse_row: float, left: int, right: int, ice: float, upper: bool,
                     scale: float | None = None) -> float:
    """Sub-pixel row where the central row mean crosses half the ice level near ``coarse_row``."""
    height = image.shape[0]
    pad = 6 * _COARSE
    r0, r1 = max(0, int(coarse_row) - pad), min(height, int(coarse_row) + pad)
    if r1 - r0 < 3:
        return float(coarse_row)
    span = right - left + 1
    band = image[r0:r1, left + span // 10:right - span // 10 + 1]
    profile = band.mean(axis=1, dtype=np.float32)
    scale = to_8bit_scale(image) if scale is None else scale
    profile /= scale
    # The level inside the ice just past the end: the edge lies between black and that level.
    inside = image[min(height - 1, int(coarse_row) + pad):min(height, int(coarse_row) + 4 * pad)] if upper else \
        image[max(0, int(coarse_row) - 4 * pad):max(1, int(coarse_row) - pad)]
    level = float(np.mean(inside[:, left:right + 1])) / scale if inside.size else ice
    base = float(np.min(profile))
    half = base + 0.5 * (max(level, base + 1.0) - base)
    seq = profile if upper else profile[::-1]
    above = np.flatnonzero(seq >= half)
    if above.size == 0:
        return float(coarse_row)
    i = int(above[0])
    if i == 0:
        frac = 0.0
    else:
        lo, hi = float(seq[i - 1]), float(seq[i])
        frac = (half - lo) / (hi - lo) if hi > lo else 0.5
    edge = i - 1 + frac + 0.5  # boundary between pixel rows i-1 and i
    return float(r0 + edge) if upper else float(r1 - edge)


def scale_outliers(px_per_m: dict[str, float], tolerance: float = 0.05) -> dict[str, float]:
    """Images whose scale differs from the others' by more than ``tolerance``.

    Each image's px/m is compared with the median over all images (robust to
    a few bad ones; with two images neither can be trusted over the other,
    so both are named when they differ). A single image has nothing to be
    compared with.

    Args:
        px_per_m: image name -> its scale (rows per meter of core).
        tolerance: allowed relative difference (0.05 = 5 %).

    Returns:
        image name -> relative difference from the median (e.g. 0.08 = 8 %
        more px/m), only for the images beyond the tolerance.
    """
    if len(px_per_m) < 2:
        return {}
    ref = float(np.median(np.fromiter(px_per_m.values(), dtype=np.float64)))
    if not ref > 0:
        return {}
    rel = {name: float(value) / ref - 1.0 for name, value in px_per_m.items()}
    return {name: r for name, r in rel.items() if abs(r) > tolerance}
