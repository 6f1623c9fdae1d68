"""Synthetic EastGRIP-like line-scan sections with known melt layers.

The real scans are not reachable from our machines, so meltloc is built and
measured on cores drawn here. What is modelled, and how (see DOMAIN.md):

* **Scanner and section**: one image per 1.65 m section (bags ``26 + 3k``,
  top at ``13.75 + 0.55 (bag - 26)`` m), depth down the rows, at
  ``px_per_cm`` (186 for EastGRIP). The physical piece is 1.65 m +/- 0.6 %,
  so the scale read off the ends differs a little from image to image. The
  core (8.0-8.8 cm wide) lies slightly tilted on black, with black margins
  above and below and hand-cut ends that are sloped and rough (+/- 1 mm).
* **Ice**: dark-field look: clear ice black, bubbles bright blobs (Gaussian
  splats of two sizes) on a grey haze; bubble density and size fall with
  depth (firn near the surface, bubbly ice, then nearly clear clathrate ice
  below ~1150 m with cloudy bands); cm-scale banding along depth;
  illumination uneven across the width and along the length.
* **Melt layers** (only above 1150 m): bubble-free dark bands across the full
  width, 0.5-15 mm thick (log-normal, most 1-5 mm), tilted and wavy
  boundaries, a quarter of them diffuse (soft edges), not always fully black.
* **Other features**: melt lenses (dark lens shapes over part of the width,
  logged as a point), uncertain entries (faint bands or patches, logged
  without ``depth to``), bubble-free patches (logged as
  ``indication of bubble free layer or patch``, or not logged at all).
* **Confounders**: cracks (thin inclined lines, mostly bright) and core
  breaks (thin, dark, jagged, near horizontal; many in the brittle zone
  650-950 m), unlogged bubble-free patches, and per-image exposure, gamma,
  blur and sensor noise. Some sections hold no melt at all.
* **Label table**: every feature of a section is logged with the same offset
  (up to ``max_offset_mm``), as real logs are, rounded to 0.1 mm, plus a few
  rows outside every imaged section. ``truth.csv`` keeps the true intervals.

Images are rendered in row chunks in float32, so a full-scale section
(~30,700 x 1,600 px) needs about 50 MB for the result and a few tens of MB of
scratch. Each section draws from its own random stream ``(seed, bag)``: the
same seed gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from meltloc import BUBBLE_FREE, MELT_LAYER, MELT_LENS, UNCERTAIN
from meltloc.atomic import write_csv
from meltloc.errors import MeltlocError
from meltloc.geometry import DepthScale
from meltloc.imageio import write_image
from meltloc.labels import write_labels
from meltloc.manifest import write_manifest
from meltloc.progress import progress

SECTION_M = 1.65
BAG_M = 0.55
FIRST_TOP_M = 13.75
FIRST_BAG = 26
CLATHRATE_M = 1150.0
BRITTLE_M = (650.0, 950.0)
CRACK = "crack"
STYLES = ("wide", "hard", "classic")
"""Synthetic looks: ``wide`` (default: varied), ``hard`` (the hard end of every range), ``classic`` (the first round's)."""

# Per style: the ranges each section's look is drawn from. Darkness is the
# fraction by which a melt layer darkens the ice around it (1 = black);
# ``p_faint``/``p_medium`` are the shares of faint (0.2-0.4) and medium
# (0.4-0.75) layers, the rest is dark (0.75-1). Edges are the width of the
# boundary ramp in mm; tilt is the shift of a boundary from the core's axis to
# its side in mm (so twice that across the core).
_STYLE_RANGES = {
    "classic": dict(p_faint=0.0, p_medium=0.0, dark=(0.88, 1.0), p_diffuse=0.25, sharp_mm=(0.03, 0.08),
                    diffuse_mm=(0.3, 0.8), p_thick=0.0, tilt_mm=(0.0, 0.6), wave_mm=0.25, p_near_end=0.0,
                    end_gap_mm=3.0, p_any_depth=0.0, gain=(0.75, 1.3), gamma=(0.8, 1.25), blur_px=(0.3, 1.2),
                    noise=(1.0, 4.0), vignette=(0.1, 0.35), column_fpn=0.0, row_flicker=0.0, p_16bit=0.0,
                    breaks=(1.2, 7.0), cracks=(1.5, 3.0), break_angle=(2.0, 20.0), side_wobble_mm=0.0, chips=0.0),
    "wide": dict(p_faint=0.3, p_medium=0.3, dark=(0.75, 1.0), p_diffuse=0.45, sharp_mm=(0.03, 0.1),
                 diffuse_mm=(0.2, 2.0), p_thick=0.15, tilt_mm=(0.0, 2.0), wave_mm=0.6, p_near_end=0.2,
                 end_gap_mm=2.5, p_any_depth=0.5, gain=(0.45, 1.6), gamma=(0.6, 1.6), blur_px=(0.3, 2.5),
                 noise=(1.0, 7.0), vignette=(0.05, 0.6), column_fpn=0.04, row_flicker=0.03, p_16bit=0.3,
                 breaks=(2.5, 9.0), cracks=(2.5, 4.0), break_angle=(0.5, 20.0), side_wobble_mm=0.6, chips=3.0),
    "hard": dict(p_faint=0.45, p_medium=0.35, dark=(0.75, 1.0), p_diffuse=0.7, sharp_mm=(0.05, 0.15),
                 diffuse_mm=(0.5, 2.0), p_thick=0.25, tilt_mm=(0.75, 2.0), wave_mm=1.0, p_near_end=0.3,
                 end_gap_mm=2.5, p_any_depth=0.7, gain=(0.45, 1.6), gamma=(0.6, 1.6), blur_px=(1.0, 2.5),
                 noise=(3.0, 8.0), vignette=(0.3, 0.6), column_fpn=0.06, row_flicker=0.04, p_16bit=0.3,
                 breaks=(4.0, 10.0), cracks=(3.5, 5.0), break_angle=(0.5, 10.0), side_wobble_mm=1.0, chips=5.0),
}
_CHUNK_ROWS = 2048
_MARGIN_ROWS = 16


def bag_top_m(bag: int) -> float:
    """Depth of the top of a bag: ``13.75 + 0.55 (bag - 26)`` m."""
    return FIRST_TOP_M + (bag - FIRST_BAG) * BAG_M


def bag_at(depth_m: float) -> int:
    """The bag holding a depth."""
    return FIRST_BAG + int(np.floor((depth_m - FIRST_TOP_M) / BAG_M + 1e-9))


def age_b2k(depth_m: float) -> float:
    """A rough age-depth model for the label table (years before 2000): 7.2 a/m near 125 m."""
    return 7.2 * depth_m


@dataclass
class SynthConfig:
    """Settings of a synthetic core.

    Attributes:
        px_per_cm: scan resolution (EastGRIP: 186 px/cm).
        first_bag: bag of the first section; sections follow every 3 bags.
        image_format: ``png``, ``bmp`` or ``tif``.
        max_offset_mm: largest misalignment of a section's labels.
        label_jitter_mm: per-boundary scatter of the hand-picked depths.
        melt_fraction: probability that a section above 1150 m holds melt.
        style: the range each section's look is drawn from (:data:`STYLES`):
            ``classic`` (the first round's single look: near-black layers,
            mostly sharp edges, small tilt, one camera), ``wide`` (faint to
            black layers, sharp to diffuse edges, thick faint layers, tilt up to
            4 mm across the core, layers near the core ends, bubbles of any
            depth in 100-1150 m, wide camera settings with vignetting, column
            fixed-pattern noise and row flicker, 8- and 16-bit files, more
            cracks and breaks, wobbly and chipped core sides) or ``hard`` (the
            hard end of the wide ranges: mostly faint, diffuse, tilted layers).
    """

    px_per_cm: float = 186.0
    first_bag: int = 227
    image_format: str = "png"
    max_offset_mm: float = 10.0
    label_jitter_mm: float = 0.03
    melt_fraction: float = 0.85
    style: str = "wide"

    def __post_init__(self) -> None:
        if self.style not in STYLES:
            raise MeltlocError(f"style must be one of {', '.join(STYLES)}, not {self.style!r}")
        if self.image_format.lower().lstrip(".") not in ("png", "bmp", "tif", "tiff"):
            raise MeltlocError(f"image format must be png, bmp or tif, not {self.image_format!r}")
        if (self.first_bag - FIRST_BAG) % 3:
            raise MeltlocError(f"first bag must be 26 + 3k (a section's first bag), not {self.first_bag}")
        self.image_format = self.image_format.lower().lstrip(".")

    @property
    def px_per_mm(self) -> float:
        return self.px_per_cm / 10.0


@dataclass
class Feature:
    """One drawn feature: its boundaries per column (rows, NaN where absent).

    ``residual`` is the brightness factor inside a dark feature (0 = black);
    ``brightness`` is added for bright cracks. ``edge_px`` is the width of the
    boundary ramp. ``raw_type`` is how the label table logs it (None: not logged).
    """

    kind: str
    top: np.ndarray
    bottom: np.ndarray
    edge_px: float = 1.0
    residual: float = 0.0
    brightness: float = 0.0
    raw_type: str | None = None
    point: bool = False

    @property
    def darkness(self) -> float:
        """Fraction by which the feature darkens the ice around it (1 = black)."""
        return 1.0 - self.residual

    @property
    def row_from(self) -> float:
        return float(np.nanmean(self.top)) if self.kind in (MELT_LAYER, UNCERTAIN) else float(np.nanmin(self.top))

    @property
    def row_to(self) -> float:
        return float(np.nanmean(self.bottom)) if self.kind in (MELT_LAYER, UNCERTAIN) else float(np.nanmax(self.bottom))

    @property
    def window(self) -> tuple[int, int]:
        pad = self.edge_px + 2
        return int(np.floor(np.nanmin(self.top) - pad)), int(np.ceil(np.nanmax(self.bottom) + pad)) + 1


@dataclass
class Section:
    """A drawn section: the image, its manifest depths, geometry and features."""

    image: np.ndarray
    name: str
    bag: int
    top_m: float
    bottom_m: float
    scale: DepthScale
    left_col: int
    right_col: int
    offset_mm: float
    features: list[Feature] = field(default_factory=list)
    px_per_mm: float = 1.0


def _smooth_noise(rng: np.random.Generator, n: int, corr: float, amp: float) -> np.ndarray:
    """1-D smooth noise of length n, correlation length ``corr`` samples, std ~ ``amp``."""
    if n <= 0:
        return np.zeros(0, np.float32)
    step = max(corr, 1.0)
    knots = rng.standard_normal(int(np.ceil(n / step)) + 3).astype(np.float32)
    x = np.arange(n, dtype=np.float32) / step
    out = np.interp(x, np.arange(knots.size, dtype=np.float32), knots)
    return (out * amp).astype(np.float32)


class _Drawer:
    """Draws one section; all lengths in pixels unless named ``_mm``/``_m``."""

    def __init__(self, cfg: SynthConfig, rng: np.random.Generator, bag: int):
        self.cfg, self.rng, self.bag = cfg, rng, bag
        self.R = _STYLE_RANGES[cfg.style]
        self.classic = cfg.style == "classic"
        self.mm = cfg.px_per_mm
        self.top_m = bag_top_m(bag)
        self.depth_m = self.top_m + SECTION_M / 2
        r = rng
        length_px = SECTION_M * (1 + r.uniform(-0.006, 0.006)) * 1000 * self.mm
        self.core_w = r.uniform(80, 88) * self.mm
        margin_l, margin_r = r.uniform(1.5, 6) * self.mm, r.uniform(1.5, 6) * self.mm
        self.W = int(round(self.core_w + margin_l + margin_r))
        top0 = r.uniform(5, 20) * self.mm
        self.H = int(round(top0 + length_px + r.uniform(5, 20) * self.mm))
        self.left0 = margin_l
        self.tilt = np.tan(np.radians(r.uniform(-0.04, 0.04)))  # columns per row
        cols = np.arange(self.W, dtype=np.float32) + 0.5
        self.cols = cols
        self.cmid = self.left0 + self.core_w / 2
        # Hand-cut ends: sloped and rough.
        self.top_end = (top0 + r.uniform(-1, 1) * self.mm * (cols - self.cmid) / (self.core_w / 2)
                        + _smooth_noise(r, self.W, 8 * self.mm, 0.4 * self.mm))
        bottom0 = top0 + length_px
        self.bottom_end = (bottom0 + r.uniform(-1, 1) * self.mm * (cols - self.cmid) / (self.core_w / 2)
                           + _smooth_noise(r, self.W, 8 * self.mm, 0.4 * self.mm))
        self.row0 = top0
        inside = self._core_columns_at(self.H / 2)
        self.scale = DepthScale(self.top_m, self.top_m + SECTION_M,
                                float(self.top_end[inside].mean()), float(self.bottom_end[inside].mean()))
        self.features: list[Feature] = []
        # Core sides that are not ruler-straight, with chips out of the edges (rows -> columns inward).
        self.side_left = np.zeros(self.H, np.float32)
        self.side_right = np.zeros(self.H, np.float32)
        if not self.classic:
            for side in (self.side_left, self.side_right):
                side += np.abs(_smooth_noise(r, self.H, r.uniform(20, 80) * self.mm, self.R["side_wobble_mm"] * self.mm))
                rows = np.arange(self.H, dtype=np.float32)
                for _ in range(r.poisson(self.R["chips"])):
                    yc, half = r.uniform(0, self.H), r.uniform(2.5, 15) * self.mm
                    depth = r.uniform(0.5, 3.0) * self.mm
                    side += depth * np.sqrt(np.clip(1 - ((rows - yc) / half) ** 2, 0, None))

    def _core_columns_at(self, row: float) -> np.ndarray:
        """Columns inside the core at a row (the core is slightly tilted)."""
        left = self.left0 + (row - self.row0) * self.tilt
        return (self.cols > left + 2) & (self.cols < left + self.core_w - 2)

    # ------------------------------------------------------------------ features
    def _free_spot(self, height_px: float, taken: list[tuple[float, float]], gap_px: float,
                   lo: float | None = None, hi: float | None = None) -> float | None:
        lo = self.scale.top_row + 3 * self.mm if lo is None else lo
        hi = self.scale.bottom_row - 3 * self.mm - height_px if hi is None else hi
        for _ in range(50):
            y = self.rng.uniform(lo, hi)
            if all(y + height_px + gap_px < a or y > b + gap_px for a, b in taken):
                taken.append((y, y + height_px))
                return y
        return None

    def _band(self, y0: float, thick: float, max_tilt_mm: float, wave_mm: float,
              tilt_mm: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Boundaries of a band crossing the full width: tilted, wavy, thickness varying a little.

        ``tilt_mm`` (signed) is the boundary's shift from the axis to the side; None draws it within ``max_tilt_mm``.
        """
        r, c = self.rng, self.cols - self.cmid
        if tilt_mm is None:
            tilt_mm = r.uniform(-max_tilt_mm, max_tilt_mm)
        tilt = tilt_mm * self.mm / (self.core_w / 2)
        lam = r.uniform(20, 80) * self.mm
        wave = r.uniform(0, wave_mm) * self.mm * np.sin(2 * np.pi * c / lam + r.uniform(0, 2 * np.pi))
        mid = y0 + thick / 2 + tilt * c + wave
        half = thick / 2 * (1 + 0.15 * np.sin(2 * np.pi * c / r.uniform(30, 90) / self.mm + r.uniform(0, 6.3)))
        top, bottom = mid - half, mid + half
        # Re-centre so the mean over the core is exactly the drawn interval.
        inside = self._core_columns_at(y0)
        shift_top = y0 - top[inside].mean()
        shift_bottom = y0 + thick - bottom[inside].mean()
        return (top + shift_top).astype(np.float32), (bottom + shift_bottom).astype(np.float32)

    def _patch(self, yc: float, thick: float, width: float, cc: float, ragged: float) -> tuple[np.ndarray, np.ndarray]:
        """A lens/patch: elliptic outline over ``width`` columns around ``cc`` (NaN elsewhere)."""
        u = (self.cols - cc) / (width / 2)
        shape = np.sqrt(np.clip(1 - u ** 2, 0, None))
        if ragged > 0:
            shape = shape * (1 + _smooth_noise(self.rng, self.W, 2 * self.mm, ragged))
        half = thick / 2 * shape
        top = np.where(np.abs(u) < 1, yc - half, np.nan).astype(np.float32)
        bottom = np.where(np.abs(u) < 1, yc + half, np.nan).astype(np.float32)
        return top, bottom

    def _varied_layer(self, thick_mm: float, taken: list[tuple[float, float]]) -> None:
        """A melt layer of the wide/hard styles: any darkness, sharp to diffuse, tilted, possibly near an end."""
        r, mm, R = self.rng, self.mm, self.R
        if r.random() < R["p_thick"]:
            thick_mm = r.uniform(5.0, 15.0)
        u = r.random()
        if u < R["p_faint"]:
            darkness = r.uniform(0.2, 0.4)
            thick_mm = max(thick_mm, r.uniform(1.0, 3.0))  # a faint band under 1 mm is not seen by anyone
        elif u < R["p_faint"] + R["p_medium"]:
            darkness = r.uniform(0.4, 0.75)
        else:
            darkness = r.uniform(*R["dark"])
        thick = thick_mm * mm
        gap = R["end_gap_mm"] * mm
        lo = hi = None
        if r.random() < R["p_near_end"]:  # within 10 cm of a core end
            if r.random() < 0.5:
                lo, hi = self.scale.top_row + gap, self.scale.top_row + 100 * mm
            else:
                lo, hi = self.scale.bottom_row - 100 * mm - thick, self.scale.bottom_row - gap - thick
        else:
            lo, hi = self.scale.top_row + gap, self.scale.bottom_row - gap - thick
        y0 = self._free_spot(thick, taken, 4 * mm, lo, hi)
        if y0 is None:
            return
        tilt_mm = r.uniform(*R["tilt_mm"]) * r.choice([-1.0, 1.0])
        top, bottom = self._band(y0, thick, 0.0, R["wave_mm"], tilt_mm=tilt_mm)
        edge_mm = r.uniform(*R["diffuse_mm"]) if r.random() < R["p_diffuse"] else r.uniform(*R["sharp_mm"])
        edge_mm = min(edge_mm, 0.8 * thick_mm + 0.1)
        self.features.append(Feature(MELT_LAYER, top, bottom, max(edge_mm * mm, 1.0), residual=1.0 - darkness,
                                     raw_type="meltLayer"))

    def draw_features(self) -> None:
        r, mm = self.rng, self.mm
        taken: list[tuple[float, float]] = []
        bubbly = self.depth_m < CLATHRATE_M
        # Melt layers.
        n_layers = 0
        if bubbly and r.random() < self.cfg.melt_fraction:
            n_layers = int(r.choice([1, 2, 3, 4, 5, 6], p=[0.2, 0.25, 0.2, 0.15, 0.12, 0.08]))
        for _ in range(n_layers):
            thick_mm = float(np.clip(np.exp(r.normal(np.log(2.3), 0.8)), 0.5, 15.0))
            if self.classic:
                thick = thick_mm * mm
                y0 = self._free_spot(thick, taken, 4 * mm)
                if y0 is None:
                    continue
                top, bottom = self._band(y0, thick, max_tilt_mm=0.6, wave_mm=0.25)
                diffuse = r.random() < 0.25
                edge = (r.uniform(0.3, 0.8) if diffuse else r.uniform(0.03, 0.08)) * mm
                self.features.append(Feature(MELT_LAYER, top, bottom, max(edge, 1.0), residual=r.uniform(0.0, 0.12),
                                             raw_type="meltLayer"))
                continue
            self._varied_layer(thick_mm, taken)
        # Melt lenses.
        for _ in range(int(r.choice([0, 1, 2, 3], p=[0.45, 0.3, 0.15, 0.1])) if bubbly else 0):
            thick, width = r.uniform(0.6, 3.0) * mm, r.uniform(8, 40) * mm
            y0 = self._free_spot(thick, taken, 3 * mm)
            if y0 is None:
                continue
            cc = r.uniform(self.left0 + width / 2, self.left0 + self.core_w - width / 2)
            top, bottom = self._patch(y0 + thick / 2, thick, width, cc, ragged=0.1)
            self.features.append(Feature(MELT_LENS, top, bottom, max(0.05 * mm, 1.0),
                                         residual=r.uniform(0.0, 0.15 if self.classic else 0.5),
                                         raw_type="meltLens", point=True))
        # Uncertain entries: faint bands or faint patches.
        for _ in range(int(r.choice([0, 1, 2], p=[0.55, 0.3, 0.15])) if bubbly else 0):
            thick = r.uniform(0.5, 3.0) * mm
            y0 = self._free_spot(thick, taken, 3 * mm)
            if y0 is None:
                continue
            if r.random() < 0.6:
                top, bottom = self._band(y0, thick, 0.6, 0.3)
                raw = "meltLayer uncertain"
            else:
                width = r.uniform(10, 40) * mm
                cc = r.uniform(self.left0 + width / 2, self.left0 + self.core_w - width / 2)
                top, bottom = self._patch(y0 + thick / 2, thick, width, cc, ragged=0.2)
                raw = "meltLens uncertain"
            self.features.append(Feature(UNCERTAIN, top, bottom, r.uniform(0.2, 0.6) * mm,
                                         residual=r.uniform(0.35, 0.6), raw_type=raw, point=True))
        # Bubble-free patches: some logged, some not (confounders either way).
        for _ in range(int(r.choice([0, 1, 2, 3], p=[0.35, 0.35, 0.2, 0.1]))):
            thick, width = r.uniform(4, 20) * mm, r.uniform(0.3, 0.8) * self.core_w
            y0 = self._free_spot(thick, taken, 3 * mm)
            if y0 is None:
                continue
            cc = r.uniform(self.left0 + width / 2, self.left0 + self.core_w - width / 2)
            top, bottom = self._patch(y0 + thick / 2, thick, width, cc, ragged=0.35)
            logged = r.random() < 0.5
            self.features.append(Feature(BUBBLE_FREE, top, bottom, r.uniform(1.0, 3.0) * mm,
                                         residual=r.uniform(0.25, 0.55),
                                         raw_type="indication of bubble free layer or patch" if logged else None,
                                         point=True))
        # Cracks (thin inclined lines, mostly bright) and breaks (dark, jagged, near horizontal).
        brittle = BRITTLE_M[0] <= self.depth_m <= BRITTLE_M[1]
        R = self.R
        n_breaks = r.poisson(R["breaks"][1] if brittle else R["breaks"][0])
        n_cracks = r.poisson(R["cracks"][1] if brittle else R["cracks"][0])
        for i in range(n_breaks + n_cracks):
            is_break = i < n_breaks
            angle = np.radians(r.uniform(*R["break_angle"]) if is_break else r.uniform(8, 45)) * r.choice([-1, 1])
            thick = (r.uniform(0.1, 0.5) if is_break else r.uniform(0.05, 0.3)) * mm
            c = self.cols - self.cmid
            y_mid = r.uniform(self.scale.top_row + 5 * mm, self.scale.bottom_row - 5 * mm)
            centre = y_mid + np.tan(angle) * c
            if is_break:
                centre = centre + _smooth_noise(r, self.W, 3 * mm, 0.25 * mm)
                span = np.ones(self.W, bool)
            else:
                a, b = sorted(r.uniform(self.left0, self.left0 + self.core_w, 2))
                span = (self.cols >= min(a, self.left0 + 0.3 * self.core_w)) & (self.cols <= max(b, self.left0 + 0.7 * self.core_w))
            half = thick / 2 / max(np.cos(angle), 0.3)
            top = np.where(span, centre - half, np.nan).astype(np.float32)
            bottom = np.where(span, centre + half, np.nan).astype(np.float32)
            bright = (not is_break) and r.random() < 0.8
            self.features.append(Feature(CRACK, top, bottom, 1.0, residual=r.uniform(0.0, 0.2),
                                         brightness=r.uniform(0.3, 0.9) if bright else 0.0))

    # ------------------------------------------------------------------ appearance
    def draw_appearance(self) -> None:
        r, mm, d = self.rng, self.mm, self.depth_m
        R = self.R
        if not self.classic and d < CLATHRATE_M and r.random() < R["p_any_depth"]:
            d = r.uniform(100.0, CLATHRATE_M)  # the bubbles of any depth of the bubbly ice
        # Bubbles per mm^2 of image and their radius, by depth.
        if d < 60:
            density, radius_mm, haze = 2.0, 0.32, 0.40
        elif d < CLATHRATE_M:
            f = (d - 60) / (CLATHRATE_M - 60)
            density, radius_mm, haze = 1.4 - 1.0 * f, 0.26 - 0.10 * f, 0.28 - 0.12 * f
        else:
            density, radius_mm, haze = 0.08, 0.08, 0.06
        self.haze = haze
        density *= r.uniform(0.8, 1.2)
        area_mm2 = (self.H / mm) * (self.core_w / mm)
        n = r.poisson(density * area_mm2)
        big = r.random(n) < 0.25
        self.bub_row = r.uniform(0, self.H, n).astype(np.float32)
        self.bub_col = r.uniform(self.left0 - 2 * mm, self.left0 + self.core_w + 2 * mm, n).astype(np.float32)
        self.bub_amp = r.uniform(0.2, 0.8, n).astype(np.float32)
        self.bub_big = big
        self.sigma_small = max(0.5, radius_mm * 0.6 * mm)
        self.sigma_big = max(0.7, radius_mm * 1.4 * mm)
        order = np.argsort(self.bub_row, kind="stable")
        for name in ("bub_row", "bub_col", "bub_amp", "bub_big"):
            setattr(self, name, getattr(self, name)[order])
        # cm-scale banding of the haze along depth, and deep-ice cloudy bands.
        self.banding = 1 + _smooth_noise(r, self.H, r.uniform(4, 15) * mm, 0.18) \
            + _smooth_noise(r, self.H, r.uniform(15, 40) * mm, 0.12)
        if d >= CLATHRATE_M:
            self.banding += np.clip(_smooth_noise(r, self.H, 6 * mm, 2.5), 0, None)
        # Illumination: across the width (uneven, brighter centre) and slowly along the length.
        c = (self.cols - self.cmid) / (self.core_w / 2)
        self.illum_col = (1 - r.uniform(*R["vignette"]) * c ** 2 + r.uniform(-0.15, 0.15) * c
                          + _smooth_noise(r, self.W, 10 * mm, 0.04)).astype(np.float32)
        self.illum_row = (1 + _smooth_noise(r, self.H, r.uniform(150, 500) * mm, 0.1)).astype(np.float32)
        # Camera: exposure, gamma, focus blur, noise, black level.
        self.gain = r.uniform(*R["gain"])
        self.gamma = r.uniform(*R["gamma"])
        self.blur = r.uniform(*R["blur_px"]) * max(self.cfg.px_per_cm / 186.0, 0.35) + 0.3
        self.noise = r.uniform(*R["noise"])
        self.black = r.uniform(0.0, 5.0)
        # Sensor: column fixed-pattern gain, row-to-row flicker of the line scan, 16-bit files.
        self.column_gain = np.ones(self.W, np.float32)
        self.row_gain = np.ones(self.H, np.float32)
        self.bits16 = False
        if not self.classic:
            self.column_gain += (r.standard_normal(self.W) * r.uniform(0, R["column_fpn"])).astype(np.float32)
            flicker = r.standard_normal(self.H).astype(np.float32) * r.uniform(0, R["row_flicker"])
            self.row_gain += cv2.GaussianBlur(flicker[:, None], (0, 0), 1.0)[:, 0]
            self.bits16 = self.cfg.image_format != "bmp" and r.random() < R["p_16bit"]

    # ------------------------------------------------------------------ rendering
    def _coverage(self, f: Feature, rows: np.ndarray) -> np.ndarray:
        """Fraction of each pixel (rows x columns) covered by the feature (box filter of width ``edge_px``)."""
        e = f.edge_px
        y = rows[:, None].astype(np.float32) + 0.5
        lo = np.maximum(y - e / 2, f.top[None, :])
        hi = np.minimum(y + e / 2, f.bottom[None, :])
        cov = np.clip((hi - lo) / e, 0, 1)
        return np.nan_to_num(cov, nan=0.0)

    def render(self, seed: int) -> np.ndarray:
        out = np.empty((self.H, self.W), np.uint16 if self.bits16 else np.uint8)
        for k, r0 in enumerate(range(0, self.H, _CHUNK_ROWS)):
            r1 = min(self.H, r0 + _CHUNK_ROWS)
            a0, a1 = max(0, r0 - _MARGIN_ROWS), min(self.H, r1 + _MARGIN_ROWS)
            block = self._render_rows(a0, a1)
            if self.blur > 0.35:
                block = cv2.GaussianBlur(block, (0, 0), self.blur, borderType=cv2.BORDER_REFLECT)
            block = block[r0 - a0:r0 - a0 + (r1 - r0)]
            noise_rng = np.random.default_rng([seed, self.bag, k])
            block += noise_rng.standard_normal(block.shape, dtype=np.float32) * self.noise
            np.clip(block, 0, 255, out=block)
            out[r0:r1] = np.round(block * 257.0).astype(np.uint16) if self.bits16 else block.astype(np.uint8)
        return out

    def _render_rows(self, a0: int, a1: int) -> np.ndarray:
        rows = np.arange(a0, a1)
        n = a1 - a0
        # Bubbles: Gaussian splats of two sizes.
        i0, i1 = np.searchsorted(self.bub_row, [a0 - 4 * self.sigma_big, a1 + 4 * self.sigma_big])
        ice = np.full((n, self.W), 0, np.float32)
        for big, sigma in ((False, self.sigma_small), (True, self.sigma_big)):
            sel = slice(i0, i1)
            m = self.bub_big[sel] == big
            rr = np.clip(np.round(self.bub_row[sel][m] - a0).astype(np.int64), -10**6, 10**6)
            cc = np.round(self.bub_col[sel][m]).astype(np.int64)
            ok = (rr >= 0) & (rr < n) & (cc >= 0) & (cc < self.W)
            imp = np.zeros((n, self.W), np.float32)
            np.add.at(imp, (rr[ok], cc[ok]), self.bub_amp[sel][m][ok] * (2 * np.pi * sigma ** 2))
            ice += cv2.GaussianBlur(imp, (0, 0), sigma, borderType=cv2.BORDER_CONSTANT)
        np.minimum(ice, 1.2, out=ice)
        ice += (self.haze * self.banding[a0:a1])[:, None]
        # Dark features multiply the ice; bright cracks add light.
        bright = np.zeros_like(ice)
        for f in self.features:
            w0, w1 = f.window
            if w1 <= a0 or w0 >= a1:
                continue
            s0, s1 = max(w0, a0), min(w1, a1)
            cov = self._coverage(f, rows[s0 - a0:s1 - a0])
            if f.brightness > 0:
                bright[s0 - a0:s1 - a0] += cov * f.brightness
            else:
                ice[s0 - a0:s1 - a0] *= 1 - cov * (1 - f.residual)
        ice += bright
        # The core: hand-cut ends (sub-pixel coverage) and tilted sides.
        y = rows[:, None].astype(np.float32) + 0.5
        core = np.clip(np.minimum(y + 0.5, self.bottom_end[None, :]) - np.maximum(y - 0.5, self.top_end[None, :]), 0, 1)
        left = self.left0 + (rows - self.row0) * self.tilt
        right = left + self.core_w - self.side_right[a0:a1]
        left = left + self.side_left[a0:a1]
        x = self.cols[None, :]
        core *= np.clip(np.minimum(x + 0.5, right[:, None]) - np.maximum(x - 0.5, left[:, None]), 0, 1)
        ice *= core
        ice *= self.illum_col[None, :]
        ice *= self.illum_row[a0:a1, None]
        if not self.classic:
            ice *= self.column_gain[None, :]
            ice *= self.row_gain[a0:a1, None]
        # Camera response.
        np.clip(ice * self.gain, 0, 1, out=ice)
        cv2.pow(ice, self.gamma, ice)
        ice *= 255 - self.black
        ice += self.black
        return ice


def draw_section(bag: int, seed: int, cfg: SynthConfig) -> Section:
    """Draw one section (image and truth) from its own random stream ``(seed, bag)``."""
    rng = np.random.default_rng([seed, bag])
    drawer = _Drawer(cfg, rng, bag)
    drawer.draw_features()
    drawer.draw_appearance()
    offset_mm = float(rng.uniform(-cfg.max_offset_mm, cfg.max_offset_mm))
    image = drawer.render(seed)
    # Columns covered by ice along the whole core.
    lefts = drawer.left0 + (np.array([drawer.scale.top_row, drawer.scale.bottom_row]) - drawer.row0) * drawer.tilt
    left_col = int(np.ceil(lefts.max()))
    right_col = int(np.floor(lefts.min() + drawer.core_w)) - 1
    return Section(image=image, name=f"{bag}.{cfg.image_format}", bag=bag, top_m=drawer.top_m,
                   bottom_m=drawer.top_m + SECTION_M, scale=drawer.scale, left_col=left_col, right_col=right_col,
                   offset_mm=offset_mm, features=drawer.features, px_per_mm=cfg.px_per_mm)


def truth_rows(section: Section) -> list[dict]:
    """The true intervals of a section (every drawn feature), rows and meters."""
    out = []
    for f in section.features:
        r0, r1 = f.row_from, f.row_to
        d0, d1 = (float(v) for v in section.scale.row_to_depth([r0, r1]))
        out.append({"image": section.name, "type": f.kind, "depth_from_m": round(d0, 6), "depth_to_m": round(d1, 6),
                    "row_from": round(r0, 2), "row_to": round(r1, 2), "thickness_mm": round((d1 - d0) * 1000, 3),
                    "offset_mm": round(section.offset_mm, 4), "logged": f.raw_type is not None,
                    "darkness": round(f.darkness, 3) if f.kind in (MELT_LAYER, MELT_LENS) else np.nan,
                    "edge_mm": round(f.edge_px / section.px_per_mm, 3)})
    return sorted(out, key=lambda rec: rec["row_from"])


def label_rows(section: Section, rng: np.random.Generator, jitter_mm: float) -> list[dict]:
    """Label-table rows as a person logs them: misaligned by the section's offset, 0.1 mm resolution."""
    out = []
    for f in section.features:
        if f.raw_type is None:
            continue
        d0, d1 = section.scale.row_to_depth([f.row_from, f.row_to])
        d0, d1 = d0 - section.offset_mm / 1000, d1 - section.offset_mm / 1000
        d0 += rng.normal(0, jitter_mm) / 1000
        d1 += rng.normal(0, jitter_mm) / 1000
        if f.point:
            mid = (d0 + d1) / 2
            d0, d1 = mid, (mid if f.kind == MELT_LENS else np.nan)
        d0 = round(float(d0), 4)
        d1 = round(float(d1), 4) if np.isfinite(d1) else np.nan
        d1 = max(d1, d0) if np.isfinite(d1) else d1
        age = age_b2k(d0)
        out.append({"bag": bag_at(d0) if f.kind in (MELT_LAYER, MELT_LENS) else None,
                    "depth from": d0, "depth to": d1, "age (b2k)": round(age, 3),
                    "age (CE)": round(2000 - age, 1), "type of feature": f.raw_type})
    return out


def _outside_rows(first_top_m: float, last_bottom_m: float, rng: np.random.Generator) -> list[dict]:
    """Logged features in core that was not imaged (real logs cover far more core)."""
    out = []
    for depth in (first_top_m - rng.uniform(0.2, 1.5), last_bottom_m + rng.uniform(0.2, 1.5)):
        if depth <= FIRST_TOP_M:
            continue
        d0 = round(depth, 4)
        out.append({"bag": bag_at(d0), "depth from": d0, "depth to": round(d0 + 0.0021, 4),
                    "age (b2k)": round(age_b2k(d0), 3), "age (CE)": round(2000 - age_b2k(d0), 1),
                    "type of feature": "meltLayer"})
    return out


def write_core(out: str | Path, n_sections: int, seed: int, config: SynthConfig | None = None,
               show_progress: bool = False) -> str:
    """Write a synthetic core to ``out`` and return a one-paragraph summary.

    Writes ``images/<bag>.<fmt>``, ``sections.tab`` (PANGAEA format),
    ``sections.csv``, ``features.csv`` (label table, misaligned per section),
    ``truth.csv`` (every drawn feature, true depths and rows) and
    ``truth_sections.csv`` (per image: true end rows, sides, scale, offset).
    """
    cfg = config or SynthConfig()
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    label_rng = np.random.default_rng([seed, 7])
    manifest, labels, truth, sections = [], [], [], []
    bags = [cfg.first_bag + 3 * k for k in range(n_sections)]
    for bag in progress(bags, "synth", total=len(bags), enabled=show_progress, unit="section"):
        sec = draw_section(bag, seed, cfg)
        write_image(out / "images" / sec.name, sec.image)
        manifest.append({"image": sec.name, "top_m": round(sec.top_m, 4), "bottom_m": round(sec.bottom_m, 4)})
        labels.extend(label_rows(sec, label_rng, cfg.label_jitter_mm))
        rows = truth_rows(sec)
        truth.extend(rows)
        sections.append({"image": sec.name, "top_m": round(sec.top_m, 4), "bottom_m": round(sec.bottom_m, 4),
                         "top_row": round(sec.scale.top_row, 3), "bottom_row": round(sec.scale.bottom_row, 3),
                         "left_col": sec.left_col, "right_col": sec.right_col, "height": sec.image.shape[0],
                         "width": sec.image.shape[1], "px_per_m": round(sec.scale.px_per_m, 3),
                         "offset_mm": round(sec.offset_mm, 4),
                         "melt_layers": sum(r["type"] == MELT_LAYER for r in rows)})
        del sec
    labels.extend(_outside_rows(bag_top_m(bags[0]), bag_top_m(bags[-1]) + SECTION_M, label_rng))
    table = pd.DataFrame(manifest)
    write_manifest(table, out / "sections.tab", out / "sections.csv",
                   citation=f"meltloc synth --sections {n_sections} --px-per-cm {cfg.px_per_cm:g} --seed {seed} "
                            f"--style {cfg.style}")
    label_df = pd.DataFrame(labels).sort_values("depth from", kind="stable")
    write_labels(label_df, out / "features.csv")
    truth_df = pd.DataFrame(truth, columns=["image", "type", "depth_from_m", "depth_to_m", "row_from", "row_to",
                                            "thickness_mm", "offset_mm", "logged", "darkness", "edge_mm"])
    write_csv(truth_df, out / "truth.csv")
    write_csv(pd.DataFrame(sections), out / "truth_sections.csv")
    n_melt = int((truth_df["type"] == MELT_LAYER).sum())
    return (f"wrote {n_sections} sections ({bag_top_m(bags[0]):.2f}-{bag_top_m(bags[-1]) + SECTION_M:.2f} m, "
            f"{cfg.px_per_cm:g} px/cm, {cfg.style} style) to {out}: {n_melt} melt layers, "
            f"{int((truth_df['type'] == MELT_LENS).sum())} lenses, {len(label_df)} label rows")
