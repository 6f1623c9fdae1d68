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
from meltloc.imageio import to_uint8

DEFAULT_PX_PER_MM = 10.0
DEFAULT_WIDTH = 64
DEFAULT_INSET = 0.05


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
    down = n_rows < (r1 - r0) or width < (c1 - c0)
    pixels = cv2.resize(crop, (width, n_rows), interpolation=cv2.INTER_AREA if down else cv2.INTER_LINEAR)
    return Strip(to_uint8(pixels), float(r0), (r1 - r0) / n_rows, c0, c1)


def nominal_px_per_mm(bounds: CoreBounds, section_m: float = SECTION_LENGTH_M) -> float:
    """Scale of an image without a manifest entry, assuming a nominal 1.65 m section."""
    return bounds.length_rows / (section_m * 1000.0)
