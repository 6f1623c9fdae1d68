"""One section as every approach sees it: the image, where the core is, and its depth scale.

This is the common input of convert, detect and every head ("a section in,
scored depth intervals out").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meltloc.geometry import CoreBounds, DepthScale, find_core
from meltloc.imageio import read_image
from meltloc.manifest import Manifest


@dataclass
class Section:
    """A loaded section image.

    Attributes:
        name: image file name (the key of every output table).
        path: where it was read from.
        image: 2-D uint8/uint16 array, depth down the rows.
        bounds: the core's ends and sides.
        scale: depth <-> row map, or None when the image is not in the manifest.
    """

    name: str
    path: Path | None
    image: np.ndarray
    bounds: CoreBounds
    scale: DepthScale | None

    @property
    def px_per_m(self) -> float | None:
        return None if self.scale is None else self.scale.px_per_m


def load_section(path: str | Path, manifest: Manifest | None = None, image: np.ndarray | None = None) -> Section:
    """Read an image, find its core and pin the depth scale from the manifest.

    Args:
        path: the image file.
        manifest: section depths; the image is looked up by name (or unique stem).
        image: the decoded image, when already read.

    Raises:
        ImageReadError: the file cannot be read.
        GeometryError: no plausible core in it.
    """
    path = Path(path)
    if image is None:
        image = read_image(path)
    bounds = find_core(image)
    scale = None
    if manifest is not None:
        rec = manifest.find(path.name)
        if rec is not None:
            scale = DepthScale(float(rec["top_m"]), float(rec["bottom_m"]), bounds.top_row, bounds.bottom_row)
    return Section(path.name, path, image, bounds, scale)
