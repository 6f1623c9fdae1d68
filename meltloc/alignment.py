"""Label alignment: one depth shift per image that puts the logged melt layers on the dark bands.

Depths in a melt log do not land on the bands in the image: within one image
all layers are off by about the same amount, which differs from image to
image (DOMAIN.md). The seed project tried every shift in +/-200 px and kept
the one with the lowest sum of mean row intensities inside the (+/-20 px
padded) layers. We keep that idea and sharpen it:

1. **Row profile** (:func:`row_profile`): the mean of each row over the core's
   columns only (``bounds.left_col..right_col``, inset by 10 % of the width
   on each side), so black background and the rounded sides do not count.
2. **Normalisation** (:func:`normalise_profile`): the profile divided by the
   level of the ice around it (a running 60th percentile over 40 mm, robust
   to the dark layers themselves), so exposure, gamma and slow illumination
   changes do not matter: ice is ~1, a black band ~0. Rows outside the core
   (and within 2 mm of its hand-cut ends) are set to 1, neutral.
3. **Score** (:func:`shift_scores`): for a shift ``s``, each labelled layer
   scores the contrast *mean of its flanks - mean inside it*, taken on the
   normalised profile at the table rows + ``s``; the flanks are as thick as
   the layer, 1-3 mm, and stop at a neighbouring labelled layer. The score
   of a shift is the sum over layers. No +/-20 px padding: the seed's padding
   flattens the cost around the true shift. Means over fractional rows are
   exact integrals of the profile (linear interpolation of its cumulative
   sum), so the score is a continuous function of ``s``.
4. **Search and refinement**: every whole pixel in the search range (default
   +/-15 mm), then a 0.1 px grid within +/-1 px of the best, then a parabola
   through the best fine sample and its neighbours (:func:`align_profile`).
5. **Confidence**: ``1 - second / best``, where ``best`` is the score at the
   chosen shift and ``second`` the highest other local maximum at least
   max(2 mm, thickest layer) away (0 when no other peak is positive). 1 = a
   single clear peak; near 0 = two shifts fit about as well. A best shift at
   the end of the search range is flagged ``at_search_limit``.

Only ``melt_layer`` rows align (they cross the full width); lenses and
ignore regions follow the shift of their image. An image with no labelled
melt layer gets shift 0, confidence 0 and the flag ``no_layer``.

Sign (CONTRACT.md): **aligned depth = table depth + shift_mm / 1000**, and
aligned row = table row + ``shift_px`` (rows of the original image).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from meltloc.geometry import CoreBounds, DepthScale

FLAG_NO_LAYER = "no_layer"
FLAG_AT_LIMIT = "at_search_limit"
FLAG_LOW_CONFIDENCE = "low_confidence"
ALIGNMENT_COLUMNS = ["image", "shift_px", "shift_mm", "confidence", "layers", "flag"]


@dataclass(frozen=True)
class AlignConfig:
    """Settings of the shift search.

    Attributes:
        search_mm: shifts tried, +/- this many millimetres.
        inset: fraction of the core width left out on each side of the row profile.
        level_window_mm: length of the running window that gives the ice level.
        level_percentile: percentile of the profile in that window taken as the ice level.
        flank_min_mm, flank_max_mm: flank thickness bounds (flanks are as thick as the layer).
        end_margin_mm: rows this close to a core end are neutral (the ends are cut by hand).
        min_separation_mm: a second peak counts for the confidence only this far from the best.
        low_confidence: alignments below this confidence are flagged ``low_confidence``.
    """

    search_mm: float = 15.0
    inset: float = 0.10
    level_window_mm: float = 40.0
    level_percentile: float = 60.0
    flank_min_mm: float = 1.0
    flank_max_mm: float = 3.0
    end_margin_mm: float = 2.0
    min_separation_mm: float = 2.0
    low_confidence: float = 0.2


@dataclass(frozen=True)
class Alignment:
    """The shift of one image.

    Attributes:
        image: image file name.
        shift_px: rows to add to a table row (rows of the original image).
        shift_mm: millimetres to add to a table depth.
        confidence: 0-1, see the module docstring.
        layers: labelled melt layers the shift was found from.
        flag: '' or ``no_layer``, ``at_search_limit``, ``low_confidence``.
    """

    image: str
    shift_px: float
    shift_mm: float
    confidence: float
    layers: int
    flag: str = ""

    def as_row(self) -> dict:
        return {"image": self.image, "shift_px": round(self.shift_px, 3), "shift_mm": round(self.shift_mm, 4),
                "confidence": round(self.confidence, 4), "layers": self.layers, "flag": self.flag}


def row_profile(image: np.ndarray, bounds: CoreBounds, inset: float = 0.10) -> np.ndarray:
    """Mean of every image row over the core's columns (inset on both sides); float64, one value per row."""
    cut = int(round(inset * bounds.width_cols))
    c0, c1 = bounds.left_col + cut, bounds.right_col + 1 - cut
    if c1 - c0 < 2:
        c0, c1 = bounds.left_col, bounds.right_col + 1
    return image[:, c0:c1].mean(axis=1, dtype=np.float64)


def _running_percentile(values: np.ndarray, window: int, q: float) -> np.ndarray:
    """Percentile ``q`` of ``values`` in a centred window of ``window`` samples (edges: the window is clipped)."""
    n = values.size
    half = max(1, window // 2)
    padded = np.pad(values, half, mode="reflect") if n > half else np.pad(values, half, mode="edge")
    view = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    return np.percentile(view, q, axis=1)[:n]


def normalise_profile(profile: np.ndarray, bounds: CoreBounds, px_per_mm: float,
                      config: AlignConfig = AlignConfig()) -> np.ndarray:
    """The row profile divided by the local ice level; 1 (neutral) outside the core.

    The level is a running percentile over ``level_window_mm`` of the profile,
    computed on 0.5 mm bins (cheap at full scale) and interpolated back to rows.
    """
    n = profile.size
    margin = config.end_margin_mm * px_per_mm
    r0 = int(np.clip(np.ceil(bounds.top_row + margin), 0, n))
    r1 = int(np.clip(np.floor(bounds.bottom_row - margin), r0, n))
    out = np.ones(n, dtype=np.float64)
    if r1 - r0 < 3:
        return out
    core = profile[r0:r1]
    bin_rows = max(1, int(round(0.5 * px_per_mm)))
    n_bins = int(np.ceil(core.size / bin_rows))
    padded = np.pad(core, (0, n_bins * bin_rows - core.size), mode="edge")
    bins = padded.reshape(n_bins, bin_rows).mean(axis=1)
    window = max(3, int(round(config.level_window_mm / (bin_rows / px_per_mm))))
    level_bins = _running_percentile(bins, min(window, 2 * n_bins - 1), config.level_percentile)
    centres = (np.arange(n_bins) + 0.5) * bin_rows - 0.5
    level = np.interp(np.arange(core.size), centres, level_bins)
    floor = max(1e-6, 0.02 * float(np.max(level)))
    out[r0:r1] = core / np.maximum(level, floor)
    return out


@dataclass(frozen=True)
class _Segments:
    """Row segments [start, end) in table rows with weights; the score is sum w * integral(profile)."""

    start: np.ndarray
    end: np.ndarray
    weight: np.ndarray


def _segments(layer_rows: np.ndarray, px_per_mm: float, config: AlignConfig) -> _Segments:
    """Inside (-1/length) and flank (+0.5/length each) segments of every labelled layer."""
    starts, ends, weights = [], [], []
    layer_rows = np.asarray(layer_rows, dtype=np.float64).reshape(-1, 2)
    for i, (a, b) in enumerate(layer_rows):
        if b - a < 1.0:  # thinner than a pixel: one pixel around its centre
            c = 0.5 * (a + b)
            a, b = c - 0.5, c + 0.5
        f = float(np.clip(b - a, config.flank_min_mm * px_per_mm, config.flank_max_mm * px_per_mm))
        others = np.delete(layer_rows, i, axis=0)
        above = others[:, 1][others[:, 1] <= a]
        below = others[:, 0][others[:, 0] >= b]
        left = max(a - f, float(above.max()) if above.size else -np.inf)
        right = min(b + f, float(below.min()) if below.size else np.inf)
        starts.append(a), ends.append(b), weights.append(-1.0 / (b - a))
        flanks = [(left, a), (b, right)]
        flanks = [(x0, x1) for x0, x1 in flanks if x1 - x0 >= 0.5]
        for x0, x1 in flanks:
            starts.append(x0), ends.append(x1), weights.append(1.0 / len(flanks) / (x1 - x0))
    return _Segments(np.array(starts), np.array(ends), np.array(weights))


def shift_scores(norm: np.ndarray, layer_rows: np.ndarray, shifts: np.ndarray, px_per_mm: float,
                 config: AlignConfig = AlignConfig()) -> np.ndarray:
    """Summed layer contrast (flank mean - inside mean) for each shift.

    Args:
        norm: normalised row profile (N rows; 1 = ice).
        layer_rows: (L, 2) table rows [row_from, row_to] of the labelled layers.
        shifts: (K,) shifts in rows, may be fractional.
        px_per_mm: image rows per millimetre.

    Returns:
        (K,) scores; higher = layers darker than their surroundings.
    """
    seg = _segments(layer_rows, px_per_mm, config)
    shifts = np.asarray(shifts, dtype=np.float64)
    if seg.start.size == 0:
        return np.zeros_like(shifts)
    # Rows beyond the image are neutral ice (1): integral grows by 1 per row there.
    cum = np.concatenate([[0.0], np.cumsum(norm)])
    n = norm.size

    def integral(x: np.ndarray) -> np.ndarray:
        inside = np.interp(np.clip(x, 0, n), np.arange(n + 1), cum)
        return inside + np.minimum(x, 0) + np.maximum(x - n, 0)

    total = np.zeros_like(shifts)
    for x0, x1, w in zip(seg.start, seg.end, seg.weight):
        total += w * (integral(x1 + shifts) - integral(x0 + shifts))
    return total


def _local_maxima(values: np.ndarray) -> np.ndarray:
    if values.size < 3:
        return np.arange(values.size)
    inner = np.flatnonzero((values[1:-1] >= values[:-2]) & (values[1:-1] > values[2:])) + 1
    return inner


def align_profile(norm: np.ndarray, layer_rows: np.ndarray, px_per_mm: float,
                  config: AlignConfig = AlignConfig()) -> tuple[float, float, bool]:
    """Best shift (rows, sub-pixel), its confidence, and whether it lies at the search limit.

    Args:
        norm: normalised row profile (see :func:`normalise_profile`).
        layer_rows: (L, 2) table rows of the labelled melt layers, L >= 1.
        px_per_mm: image rows per millimetre.
    """
    layer_rows = np.asarray(layer_rows, dtype=np.float64).reshape(-1, 2)
    reach = int(np.ceil(config.search_mm * px_per_mm))
    grid = np.arange(-reach, reach + 1, dtype=np.float64)
    scores = shift_scores(norm, layer_rows, grid, px_per_mm, config)
    k = int(np.argmax(scores))
    best = float(scores[k])
    at_limit = k in (0, grid.size - 1)
    # Fine grid (0.1 px) around the best whole pixel, then a parabola through the best fine sample.
    fine = grid[k] + np.arange(-10, 11) / 10.0
    fine = fine[(fine >= -reach) & (fine <= reach)]
    fine_scores = shift_scores(norm, layer_rows, fine, px_per_mm, config)
    j = int(np.argmax(fine_scores))
    shift = float(fine[j])
    if 0 < j < fine.size - 1:
        y0, y1, y2 = fine_scores[j - 1:j + 2]
        denom = y0 - 2 * y1 + y2
        if denom < 0:
            shift += 0.1 * float(np.clip(0.5 * (y0 - y2) / denom, -0.5, 0.5))
    best = max(best, float(fine_scores[j]))
    # Confidence: the best peak against the best other peak far enough away.
    thickest = float(np.max(layer_rows[:, 1] - layer_rows[:, 0]))
    separation = max(config.min_separation_mm * px_per_mm, thickest)
    peaks = _local_maxima(scores)
    far = peaks[np.abs(grid[peaks] - shift) > separation]
    second = float(scores[far].max()) if far.size else 0.0
    confidence = 0.0 if best <= 0 else float(np.clip(1.0 - max(second, 0.0) / best, 0.0, 1.0))
    return shift, confidence, at_limit


def align_section(name: str, image: np.ndarray, bounds: CoreBounds, scale: DepthScale,
                  layer_depths_m: np.ndarray, config: AlignConfig = AlignConfig()) -> Alignment:
    """The shift of one image from its labelled melt layers (table depths).

    Args:
        name: image file name.
        image: 2-D section image.
        bounds: its core (from :func:`meltloc.geometry.find_core`).
        scale: its depth scale.
        layer_depths_m: (L, 2) table depths [depth_from, depth_to] of the melt
            layers that may fall in this image; L = 0 gives shift 0, flag ``no_layer``.
    """
    layer_depths_m = np.asarray(layer_depths_m, dtype=np.float64).reshape(-1, 2)
    if layer_depths_m.shape[0] == 0:
        return Alignment(name, 0.0, 0.0, 0.0, 0, FLAG_NO_LAYER)
    px_per_mm = scale.px_per_m / 1000.0
    norm = normalise_profile(row_profile(image, bounds, config.inset), bounds, px_per_mm, config)
    rows = scale.depth_to_row(layer_depths_m)
    shift_px, confidence, at_limit = align_profile(norm, rows, px_per_mm, config)
    flag = FLAG_AT_LIMIT if at_limit else (FLAG_LOW_CONFIDENCE if confidence < config.low_confidence else "")
    return Alignment(name, shift_px, shift_px / px_per_mm, confidence, int(layer_depths_m.shape[0]), flag)


def seed_shift(image: np.ndarray, layer_rows: np.ndarray, search_px: int = 200, pad_px: int = 20) -> int:
    """The seed project's shift, as published: for the benchmark only.

    Row signal = row mean x row median over the whole image row; for each
    whole-pixel shift in +/-``search_px``, cost = sum over layers of the mean
    signal over the layer's rows padded by ``pad_px`` on both sides; the
    shift with the lowest cost wins (layers are dark).

    Args:
        image: 2-D section image.
        layer_rows: (L, 2) table rows of the labelled melt layers.

    Returns:
        The shift in image rows (aligned row = table row + shift).
    """
    img = image.astype(np.float32)
    signal = img.mean(axis=1) * np.median(img, axis=1)
    n = signal.size
    cum = np.concatenate([[0.0], np.cumsum(signal, dtype=np.float64)])
    shifts = np.arange(-search_px, search_px + 1)
    cost = np.zeros(shifts.size)
    for a, b in np.asarray(layer_rows, dtype=np.float64).reshape(-1, 2):
        lo = np.clip(np.floor(a).astype(int) + shifts - pad_px, 0, n - 1)
        hi = np.clip(np.floor(b).astype(int) + shifts + pad_px + 1, lo + 1, n)
        cost += (cum[hi] - cum[lo]) / (hi - lo)
    return int(shifts[int(np.argmin(cost))])
