"""Boundaries re-measured on the image, half-way across each band's edge: tried in the thirteenth round, not kept.

    python benchmarks/boundary_refinement.py /tmp/data2/conv_dev_hard /tmp/data2/dev_hard \
        --weights weights/yolo.pt weights/regression.pt

After a head decodes, each melt-layer detection's top and bottom are measured again on the full-resolution image:
the core's central columns (a tenth left out at each side) are cut into bands about 1 cm wide, so that a layer
tilted by a few millimetres is nearly level inside each; in each band the row profile around the detection gives
the ice level above and below (the median over 1.5 mm beyond a margin), the darkest level inside, and the
outermost rows where the profile crosses half-way between the two (scanning in from the ice; the profile
smoothed over a fifth of the detection's thickness); the top and bottom are the trimmed means over the bands.
A detection keeps the head's rows when fewer than half the bands show the layer (contrast under 8 % of the ice)
or the new interval overlaps the head's by IoU under 0.5. Lenses are left as they are.

It prints, for each checkpoint on the convert output's test split (the drawn truth of the synth folder beside
it), F1, mean AP and boundary error (overall and by thickness) with the head's own boundaries and re-measured.
Run on development sections only (``dev_hard``: 8 hard-style sections of seed 131 from bag 1502; see
benchmarks/generalisation.sh), never on a test set: the README records why it is not used.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meltloc.detections import Detection, to_depths  # noqa: E402

BAND_MM = 10.0
"""Column band width across the core, mm (8 bands on an 8 cm core)."""
INSET = 0.1
"""Fraction of the core width left out at each side (rounded, chipped sides)."""
MIN_CONTRAST = 0.08
"""A band's darkest level must lie this far (fraction of its ice level) below the ice to be measured."""
MIN_IOU = 0.5
"""The re-measured interval must overlap the head's by at least this IoU, or the head's is kept."""


def _px_per_mm(section) -> float:
    from meltloc.strips import nominal_px_per_mm

    return section.scale.px_per_m / 1000 if section.scale is not None else nominal_px_per_mm(section.bounds)


def _band_edges(profile: np.ndarray, lo: int, hi: int, top_ref: slice, bottom_ref: slice) -> tuple[float, float] | None:
    """Half-way crossings (profile row coordinates, pixel i spans [i, i+1)) of one band's profile: the darkest level
    in ``[lo, hi)`` against the ice level of each reference stretch, each crossing the outermost one (scanning in
    from the reference, so bubbles seen through a layer do not cut it); None when the band is too faint there or an
    edge is not found."""
    dark_row = lo + int(np.argmin(profile[lo:hi]))
    dark = float(profile[dark_row])
    above = profile[top_ref]
    below = profile[bottom_ref]
    ice_top = float(np.median(above)) if above.size else float(np.median(below))
    ice_bottom = float(np.median(below)) if below.size else ice_top
    for ice in (ice_top, ice_bottom):
        if ice - dark < max(3.0, MIN_CONTRAST * ice):
            return None
    half_top, half_bottom = dark + 0.5 * (ice_top - dark), dark + 0.5 * (ice_bottom - dark)
    start, stop = top_ref.stop, bottom_ref.start
    down = np.flatnonzero(profile[start:dark_row + 1] < half_top)
    up = np.flatnonzero(profile[dark_row:stop][::-1] < half_bottom)
    if down.size == 0 or up.size == 0:
        return None
    j = start + int(down[0])  # first row under half, scanning down from above; row j - 1 is at or over it
    if j == 0:
        return None
    top = j - 0.5 + (profile[j - 1] - half_top) / max(profile[j - 1] - profile[j], 1e-6)
    j = stop - 1 - int(up[0])  # last row under half, scanning up from below; row j + 1 is at or over it
    if j + 1 >= profile.size:
        return None
    bottom = j + 0.5 + (half_bottom - profile[j]) / max(profile[j + 1] - profile[j], 1e-6)
    return float(top), float(bottom)


def refine_boundaries(section, detections: list[Detection], band_mm: float = BAND_MM) -> list[Detection]:
    """Melt-layer detections with their top and bottom re-measured on the image (see the module docstring).

    Order, types and scores are kept; a detection that cannot be measured keeps its rows.
    """
    from meltloc import MELT_LAYER

    if not detections:
        return []
    image, bounds = section.image, section.bounds
    px_per_mm = _px_per_mm(section)
    cut = int(round(INSET * bounds.width_cols))
    c0, c1 = bounds.left_col + cut, bounds.right_col + 1 - cut
    n_bands = max(1, int(round((c1 - c0) / (band_mm * px_per_mm))))
    edges = np.linspace(c0, c1, n_bands + 1).round().astype(int)
    core_top, core_bottom = int(np.ceil(bounds.top_row)), int(np.floor(bounds.bottom_row))
    out = []
    for d in detections:
        if d.type != MELT_LAYER or c1 - c0 < n_bands:
            out.append(d)
            continue
        out.append(_refine_one(image, d, edges, px_per_mm, core_top, core_bottom))
    return out


def _refine_one(image: np.ndarray, d: Detection, edges: np.ndarray, px_per_mm: float, core_top: int,
                core_bottom: int) -> Detection:
    thick = d.row_to - d.row_from
    margin = max(1.0 * px_per_mm, 0.5 * thick)
    ref = 1.5 * px_per_mm
    w0 = max(core_top, int(np.floor(d.row_from - margin - ref)))
    w1 = min(core_bottom, int(np.ceil(d.row_to + margin + ref)))
    a, b = d.row_from - w0, d.row_to - w0  # the detection in window rows
    lo, hi = max(0, int(np.floor(a))), min(w1 - w0, int(np.ceil(b)))
    if hi - lo < 1 or w1 - w0 < 4:
        return d
    top_ref = slice(0, max(0, int(np.floor(a - margin))))
    bottom_ref = slice(min(w1 - w0, int(np.ceil(b + margin))), w1 - w0)
    window = image[w0:w1].astype(np.float32)
    smooth = max(3, int(round(0.2 * thick)) | 1)  # texture inside a thick layer averaged away; thin ones kept sharp
    tops, bottoms = [], []
    for k in range(len(edges) - 1):
        profile = window[:, edges[k]:edges[k + 1]].mean(axis=1)
        profile = _smooth(profile, smooth)
        found = _band_edges(profile, lo, hi, top_ref, bottom_ref)
        if found is not None:
            tops.append(found[0])
            bottoms.append(found[1])
    if len(tops) < max(1, (len(edges) - 1 + 1) // 2):
        return d
    top, bottom = _trimmed_mean(tops) + w0, _trimmed_mean(bottoms) + w0
    inter = min(bottom, d.row_to) - max(top, d.row_from)
    union = max(bottom, d.row_to) - min(top, d.row_from)
    if bottom <= top or union <= 0 or inter / union < MIN_IOU:
        return d
    return replace(d, row_from=float(top), row_to=float(bottom))


def _smooth(profile: np.ndarray, width: int) -> np.ndarray:
    """Running mean over ``width`` rows, the window's ends averaged over what they have (no zero padding)."""
    kernel = np.ones(width, np.float32)
    return np.convolve(profile, kernel, mode="same") / np.convolve(np.ones_like(profile), kernel, mode="same")


def _trimmed_mean(values: list[float]) -> float:
    v = np.sort(np.asarray(values, dtype=np.float64))
    cut = 1 if v.size >= 5 else 0
    return float(v[cut:v.size - cut].mean())


def main() -> None:
    from meltloc.compare import AP_MIN_SCORE, load_heads, load_test_set
    from meltloc.imageio import read_image
    from meltloc.metrics import evaluate_intervals
    from meltloc.section import load_section

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="a meltloc convert output whose test split holds the sections")
    ap.add_argument("synth", type=Path, help="the synth folder (images/, truth.csv) of those sections")
    ap.add_argument("--weights", type=Path, nargs="+", required=True)
    args = ap.parse_args()
    test = load_test_set(args.data, images=args.synth / "images", truth=args.synth / "truth.csv")
    heads = load_heads(args.weights)
    rows = {(h.label, kind, call): [] for h in heads for kind in ("head", "re-measured") for call in ("op", "ap")}
    for path in test.images:
        section = load_section(path, test.manifest, image=read_image(path))
        for h in heads:
            prediction = h.detector.predict(section)
            for call, threshold in (("op", None), ("ap", AP_MIN_SCORE)):
                found = h.detector.decode(prediction, h.detector.threshold_for(threshold))
                rows[(h.label, "head", call)] += to_depths(section, found)
                rows[(h.label, "re-measured", call)] += to_depths(section, refine_boundaries(section, found))
    for h in heads:
        for kind in ("head", "re-measured"):
            o = evaluate_intervals(pd.DataFrame(rows[(h.label, kind, "op")]), test.truth).overall
            ranked = evaluate_intervals(pd.DataFrame(rows[(h.label, kind, "ap")]), test.truth).overall
            bins = " ".join(f"{k[len('boundary_mm_'):]} {o[k]:.3f}" for k in o if k.startswith("boundary_mm_"))
            print(f"{h.label:12s} {kind:12s} F1 {o['f1']:.3f} (P {o['precision']:.2f} / R {o['recall']:.2f}) "
                  f"mean AP {ranked['map']:.3f} boundary {o['boundary_mm']:.3f} mm ({bins})")


if __name__ == "__main__":
    main()
