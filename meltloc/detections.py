"""A head's detections as rows in meters: one row per band, inside the core, none degenerate.

Every head's output goes through :func:`clean_detections` on its way to a
table (:func:`to_depths`), so ``detect``, ``compare`` and the Python API
write the same rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the registry imports this module: it stays free of numpy, pandas and cv2
    from meltloc.section import Section


@dataclass(frozen=True)
class Detection:
    """One detected feature in image rows (``row_from`` < ``row_to``)."""

    type: str
    score: float
    row_from: float
    row_to: float


MIN_THICKNESS_MM = 0.3
"""Thinner detections are dropped: the thinnest melt layers logged are ~0.5 mm."""


def core_rows(section: Section, min_thickness_mm: float = MIN_THICKNESS_MM) -> tuple[float, float, float]:
    """The core's top and bottom rows in ``section``'s image, and the fewest image rows a kept detection spans
    (``min_thickness_mm`` at the image's rows per mm; nominal without a depth scale)."""
    from meltloc.strips import nominal_px_per_mm

    px_per_mm = (section.scale.px_per_m / 1000 if section.scale is not None
                 else nominal_px_per_mm(section.bounds))
    return section.bounds.top_row, section.bounds.bottom_row, min_thickness_mm * px_per_mm


def clean_detections(section: Section, detections: list[Detection],
                     min_thickness_mm: float = MIN_THICKNESS_MM) -> list[Detection]:
    """One row per band, inside the core, none degenerate; every head's output goes through here.

    Each detection is clipped to the core's ends; what is then thinner than
    ``min_thickness_mm`` is dropped (a sliver at a cut end is not a layer);
    a detection lying mostly (> 50 %) inside a higher-scored one of its type
    is dropped, and where a lens and a melt layer overlap only the higher-scored
    of the two is kept (one band is reported once, as what the head thinks it
    most likely is). Order is kept.
    """
    from meltloc import MELT_LAYER, MELT_LENS

    top, bottom, min_rows = core_rows(section, min_thickness_mm)
    kept = []
    for d in detections:
        r0, r1 = max(d.row_from, top), min(d.row_to, bottom)
        if r1 - r0 < min_rows:
            continue
        kept.append(Detection(d.type, d.score, float(r0), float(r1)))
    inside = set()
    ranked = sorted(range(len(kept)), key=lambda i: -kept[i].score)
    for n, i in enumerate(ranked):
        d = kept[i]
        for j in ranked[:n]:
            e = kept[j]
            if j in inside or e.type != d.type:
                continue
            overlap = min(d.row_to, e.row_to) - max(d.row_from, e.row_from)
            if overlap > 0.5 * (d.row_to - d.row_from):
                inside.add(i)
                break
    # A lens and a layer over the same rows: the higher-scored wins (ties: the layer).
    pair = {MELT_LAYER: MELT_LENS, MELT_LENS: MELT_LAYER}
    ranked = [i for i in sorted(range(len(kept)), key=lambda i: (-kept[i].score, kept[i].type != MELT_LAYER))
              if i not in inside]
    winners: list[Detection] = []
    for i in ranked:
        d = kept[i]
        if d.type in pair and any(e.type == pair[d.type] and d.row_from < e.row_to and e.row_from < d.row_to
                                  for e in winners):
            inside.add(i)
            continue
        winners.append(d)
    return [d for i, d in enumerate(kept) if i not in inside]


def to_depths(section: Section, detections: list[Detection]) -> list[dict]:
    """Detection rows as CONTRACT.md has them, after :func:`clean_detections` (depths empty without a manifest entry)."""
    rows = []
    for d in clean_detections(section, detections):
        if section.scale is not None:
            d0, d1 = (float(v) for v in section.scale.row_to_depth([d.row_from, d.row_to]))
            thickness = (d1 - d0) * 1000
        else:
            d0 = d1 = thickness = float("nan")
        rows.append({"image": section.name, "depth_from_m": d0, "depth_to_m": d1, "thickness_mm": thickness,
                     "type": d.type, "score": d.score, "row_from": d.row_from, "row_to": d.row_to})
    rows.sort(key=lambda r: r["row_from"])
    return rows
