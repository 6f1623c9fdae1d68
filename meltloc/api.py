"""meltloc from Python: a detector, a section, melt intervals in meters.

    >>> import meltloc
    >>> detector = meltloc.load_detector()                          # the shipped weights
    >>> section = meltloc.read_section("datasets/sample/images/227.png",
    ...                                sections="datasets/sample/sections.tab")
    >>> table = detector.detect(section)                             # a DataFrame, depths in meters
    >>> table[["depth_from_m", "depth_to_m", "type", "score"]]      # doctest: +SKIP

A section can also come from an array already in memory
(:func:`section_from_array`, with the depths of its core's ends), and
:func:`detect_images` does what ``meltloc detect`` does (a CSV and a status
file for a whole archive). The rows are those ``meltloc detect`` writes
(CONTRACT.md): one per band, inside the core, nothing thinner than 0.3 mm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from meltloc.errors import MeltlocError
from meltloc.section import Section

COLUMNS = ["image", "depth_from_m", "depth_to_m", "thickness_mm", "type", "score", "row_from", "row_to"]
"""The columns of :meth:`Localizer.detect` (``meltloc detect``'s, CONTRACT.md)."""


class Localizer:
    """A trained head behind one call: a section in, melt intervals in meters out.

    Attributes:
        head: the head's name (``regression``, ``yolo``, ...).
        score_threshold: the operating threshold chosen on validation.
        detector: the underlying :class:`~meltloc.heads.base.Head` (intervals in image rows).
        end_refiner: the :class:`~meltloc.heads.ends.EndRefiner` moving each melt layer's ends after the head
            (``refine_ends`` of :func:`load_detector`), or None.
    """

    def __init__(self, detector, weights: Path, end_refiner=None):
        self.detector = detector
        self.weights = Path(weights)
        self.end_refiner = end_refiner

    @property
    def head(self) -> str:
        return self.detector.head

    @property
    def score_threshold(self) -> float:
        return self.detector.score_threshold

    def detect(self, section: Section, min_score: float | None = None) -> pd.DataFrame:
        """The melt layers and lenses of ``section``, by depth (empty depths when it has no depth scale).

        Args:
            section: from :func:`read_section` or :func:`section_from_array`.
            min_score: keep detections scoring at least this (None: the head's operating threshold).
        """
        import torch

        from meltloc.detections import to_depths

        with torch.inference_mode():
            found = self.detector.detect(section, score_threshold=min_score)
            if self.end_refiner is not None:
                found = self.end_refiner.refine(section, found)
            rows = to_depths(section, found)
        return pd.DataFrame(rows, columns=COLUMNS)

    def __repr__(self) -> str:
        refined = "" if self.end_refiner is None else f", end_refiner={str(self.end_refiner.path)!r}"
        return f"Localizer(head={self.head!r}, weights={str(self.weights)!r}{refined})"


def load_detector(weights: str | Path | None = None, device: str = "auto",
                  refine_ends: bool | str | Path = False) -> Localizer:
    """The localizer a checkpoint holds (default: the shipped ``weights/regression.pt``).

    Args:
        refine_ends: True: move each melt layer's ends with the shipped end refiner after the head
            (``meltloc detect --refine-ends``); a path: with that end refiner's file; False: as the head gives them.

    Raises:
        CheckpointError: missing or foreign file (weights or end refiner), or a head this version does not have.
        MeltlocError: ``device`` is not on this machine.
    """
    from meltloc.device import resolve_device
    from meltloc.heads import load_detector as load_head
    from meltloc.heads.ends import load_end_refiner
    from meltloc.shipped import DEFAULT_WEIGHTS

    weights = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    path = _end_refiner_path(refine_ends)
    refiner = load_end_refiner(path) if path is not None else None
    return Localizer(load_head(weights, resolve_device(device)), weights, refiner)


def _end_refiner_path(refine_ends) -> Path | None:
    """The end refiner's file ``refine_ends`` names: itself if a path, the shipped one if yes, None if no.

    Raises:
        MeltlocError: an empty path, or neither a path nor a yes/no (True, False, 1, 0, None).
    """
    import os

    from meltloc.shipped import end_refiner_file

    if isinstance(refine_ends, (str, os.PathLike)):
        if not str(refine_ends).strip():
            raise MeltlocError("refine_ends: an empty path; give the end refiner's file, True or False")
        return end_refiner_file(True, refine_ends)
    if refine_ends is None or isinstance(refine_ends, (bool, np.bool_)) \
            or (isinstance(refine_ends, (int, np.integer)) and refine_ends in (0, 1)):
        return end_refiner_file(bool(refine_ends))
    raise MeltlocError(f"refine_ends is True, False or the end refiner's file, not {refine_ends!r}")


def read_section(path: str | Path, sections: str | Path | None = None, top_m: float | None = None,
                 bottom_m: float | None = None) -> Section:
    """A section image from a file, with its depths from a manifest (``sections``) or given directly.

    Args:
        path: the image file (PNG, BMP, TIFF, JPEG; 8 or 16 bit).
        sections: a section manifest (PANGAEA .tab or CSV); the image is looked up by name.
        top_m, bottom_m: the depths of the core's top and bottom end in the image (instead of ``sections``).

    Raises:
        ImageReadError: the file cannot be read.
        GeometryError: no plausible core in it.
        MeltlocError: both or half of the depth sources given; ``sections`` does not list the image.
    """
    from meltloc.imageio import read_image

    path = Path(path)
    if sections is not None and (top_m is not None or bottom_m is not None):
        raise MeltlocError("give the depths either from a manifest (sections) or as top_m and bottom_m, not both")
    if sections is not None:
        from meltloc.manifest import read_manifest
        from meltloc.section import load_section

        manifest = read_manifest(sections)
        if manifest.find(path.name) is None:
            raise MeltlocError(f"{path.name} is not in the manifest {sections}")
        return load_section(path, manifest)
    return section_from_array(read_image(path), top_m, bottom_m, name=path.name, path=path)


def section_from_array(image: np.ndarray, top_m: float | None = None, bottom_m: float | None = None,
                       name: str = "section", path: str | Path | None = None) -> Section:
    """A section from a 2-D image array (depth down the rows), its core found in it.

    Args:
        image: 2-D uint8 or uint16 array (an RGB array is made grey).
        top_m, bottom_m: depths of the core's top and bottom end; without them the rows get no depths.
        name: the section's name in output tables.

    Raises:
        GeometryError: no plausible core in the image.
        MeltlocError: only one depth given, or ``bottom_m <= top_m``.
    """
    from meltloc.geometry import DepthScale, find_core

    image = np.asarray(image)
    if image.ndim == 3:
        import cv2

        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    if image.ndim != 2:
        raise MeltlocError(f"a section image is 2-D (rows x columns), not of shape {image.shape}")
    if (top_m is None) != (bottom_m is None):
        raise MeltlocError("give both top_m and bottom_m, or neither")
    bounds = find_core(image)
    scale = None
    if top_m is not None:
        if not float(bottom_m) > float(top_m):
            raise MeltlocError(f"bottom_m ({bottom_m}) must be deeper than top_m ({top_m})")
        scale = DepthScale(float(top_m), float(bottom_m), bounds.top_row, bounds.bottom_row)
    return Section(name, Path(path) if path is not None else None, image, bounds, scale)


def detect_images(inputs: Sequence[str | Path], out: str | Path, weights: str | Path | None = None,
                  sections: str | Path | None = None, device: str = "auto", refine_ends: bool | str | Path = False,
                  **options):
    """What ``meltloc detect`` does: every image of ``inputs`` (files or folders), the detections CSV (or
    XLSX) at ``out`` and the status of every image beside it.

    Options are those of :func:`meltloc.detect.detect_images` (``overlays``, ``resume``, ``workers``,
    ``exposures``, ``recursive``, ``score_threshold``, ``overwrite``, ...); ``refine_ends`` is that of
    :func:`load_detector` (``--refine-ends`` / ``--end-refiner``). As with the CLI, an existing
    ``out`` is replaced only with ``overwrite=True``, and no input is ever written onto.

    Raises:
        OutputError: ``out`` exists (without ``overwrite`` or ``resume``), or is an input.

    Returns:
        A :class:`meltloc.detect.DetectSummary` (its ``table`` holds the rows written).
    """
    from meltloc.detect import check_outputs
    from meltloc.detect import detect_images as run
    from meltloc.manifest import read_manifest

    options.setdefault("workers", 1)
    options.setdefault("overwrite", False)  # as the CLI: an existing output is replaced only when asked
    given = (*inputs, sections, weights, _end_refiner_path(refine_ends))
    check_outputs(Path(out), inputs=given, overwrite=options["overwrite"], resume=options.get("resume", False),
                  option="out")
    localizer = load_detector(weights, device, refine_ends)
    manifest = read_manifest(sections) if sections is not None else None
    return run([Path(p) for p in inputs], localizer.detector, Path(out), manifest, weights=localizer.weights,
               device=localizer.detector.device, end_refiner=localizer.end_refiner, **options)
