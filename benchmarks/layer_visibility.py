"""How visible is each true melt layer of a synthetic test set, and which did each head find?

    python benchmarks/layer_visibility.py /tmp/data2/hard_test --seed 99 --first-bag 1211 --style hard \
        --weights weights/regression.pt /tmp/runs/reg24.pt [--out visibility.csv]

For every melt layer `meltloc synth` drew (its geometry redrawn from the same seed, the pixels read from the
written image) it measures

* ``contrast``: 1 - (mean brightness inside the band) / (mean of 3 mm of ice on both sides), following the
  layer's drawn boundaries column by column (an oracle that knows its tilt and waviness);
* ``contrast_flat``: the same over whole rows (what a plain row mean sees of a tilted layer);
* ``noise``: the scatter of the oracle statistic at 60 random places of the same section clear of any drawn
  feature (bubbles, haze and sensor noise), and ``snr`` = contrast / noise, ``snr_flat`` likewise;

and, for each checkpoint, the best IoU of a detection at the head's operating threshold (``<name>_iou``) and
the best score of any detection with IoU >= 0.5 (``<name>_score``). It prints recall at IoU 0.5 by
visibility (oracle SNR < 5, 5-8, >= 8) for each head, and writes the per-layer table.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import meltloc  # noqa: E402
from meltloc import MELT_LAYER  # noqa: E402
from meltloc.imageio import read_image  # noqa: E402
from meltloc.synth import SynthConfig, _Drawer  # noqa: E402

REF_MM, NOISE_PLACES = 3.0, 60


def layer_visibility(img: np.ndarray, f, occupied: np.ndarray, top_row: float, bottom_row: float, mm: float,
                     rng: np.random.Generator) -> dict:
    h = img.shape[0]
    cols = np.flatnonzero(np.isfinite(f.top) & np.isfinite(f.bottom))
    span = cols[-1] - cols[0]
    cols = cols[(cols > cols[0] + 0.1 * span) & (cols < cols[-1] - 0.1 * span)]  # central 80 % of the width
    centre = (f.top[cols] + f.bottom[cols]) / 2
    half = float(np.mean(f.bottom[cols] - f.top[cols])) / 2
    inner = max(half - f.edge_px / 2, half * 0.5, 1.0)
    gap = half + f.edge_px / 2 + 0.3 * mm
    k = int(gap + REF_MM * mm + 2)
    ks = np.arange(-k, k + 1)

    def contrast(rows: np.ndarray) -> float:
        rr = np.clip(np.round(rows[None, :] + ks[:, None]).astype(int), 0, h - 1)
        profile = img[rr, cols[None, :]].mean(axis=1)
        inside = profile[np.abs(ks) <= inner].mean()
        around = profile[(np.abs(ks) >= gap) & (np.abs(ks) <= gap + REF_MM * mm)].mean()
        return float(1 - inside / max(around, 1e-3))

    noise = []
    lo, hi = int(top_row + 10 * mm), int(bottom_row - 10 * mm)
    for _ in range(3000):
        if len(noise) == NOISE_PLACES:
            break
        off = rng.integers(lo, hi) - centre.mean()
        a, b = int(centre.min() + off - k), int(centre.max() + off + k)
        if a >= 0 and b < h and not occupied[a:b].any():
            noise.append(contrast(centre + off))
    scatter = float(np.std(noise)) if len(noise) > 5 else float("nan")
    c, c_flat = contrast(centre), contrast(np.full_like(centre, centre.mean()))
    return {"contrast": round(c, 3), "contrast_flat": round(c_flat, 3), "noise": round(scatter, 3),
            "snr": round(c / scatter, 2), "snr_flat": round(c_flat / scatter, 2),
            "tilt_mm": round(float(np.ptp(centre)) / mm, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", type=Path, help="a `meltloc synth` output (images/, sections.csv)")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--first-bag", type=int, required=True)
    ap.add_argument("--style", required=True)
    ap.add_argument("--px-per-cm", type=float, default=186.0)
    ap.add_argument("--weights", type=Path, nargs="+", required=True)
    ap.add_argument("--out", type=Path, default=Path("visibility.csv"))
    args = ap.parse_args()
    if args.out.exists():
        ap.error(f"{args.out} exists already: choose another --out")
    cfg = SynthConfig(px_per_cm=args.px_per_cm, first_bag=args.first_bag, style=args.style)
    mm = cfg.px_per_cm / 10
    detectors = {w.stem: meltloc.load_detector(w) for w in args.weights}
    sections = pd.read_csv(args.folder / "sections.csv")
    rng = np.random.default_rng(0)
    rows = []
    for _, s in sections.iterrows():
        bag = int(str(s.image).split(".")[0])
        drawer = _Drawer(cfg, np.random.default_rng([args.seed, bag]), bag)
        drawer.draw_features()
        path = args.folder / "images" / s.image
        img = read_image(path).astype(np.float32)
        occupied = np.zeros(img.shape[0], bool)
        for f in drawer.features:
            a, b = f.window
            occupied[max(a - int(3 * mm), 0):min(b + int(3 * mm), img.shape[0])] = True
        section = meltloc.read_section(path, top_m=float(s.top_m), bottom_m=float(s.bottom_m))
        found = {}
        for name, det in detectors.items():
            table = det.detect(section, min_score=0.05)
            table["operating"] = table["score"] >= det.detector.score_threshold
            found[name] = table[table["type"] == MELT_LAYER]
        for f in drawer.features:
            if f.kind != MELT_LAYER:
                continue
            top_m, bottom_m = (float(v) for v in drawer.scale.row_to_depth([f.row_from, f.row_to]))
            rec = {"image": s.image, "darkness": round(f.darkness, 3),
                   "thickness_mm": round((f.row_to - f.row_from) / mm, 2), "edge_mm": round(f.edge_px / mm, 2),
                   **layer_visibility(img, f, occupied, drawer.scale.top_row, drawer.scale.bottom_row, mm, rng)}
            for name, table in found.items():
                inter = (np.minimum(bottom_m, table["depth_to_m"]) - np.maximum(top_m, table["depth_from_m"])).clip(0)
                union = (bottom_m - top_m) + (table["depth_to_m"] - table["depth_from_m"]) - inter
                iou = inter / union.where(union > 0, np.nan)
                rec[f"{name}_iou"] = round(float(iou[table["operating"]].max()), 2) if table["operating"].any() else 0.0
                rec[f"{name}_score"] = round(float(table["score"][iou >= 0.5].max()), 2) if (iou >= 0.5).any() else 0.0
            rows.append(rec)
        print(f"{s.image}: {len(rows)} layers so far", flush=True)
    out = pd.DataFrame(rows).fillna({c: 0.0 for c in rows[0] if c.endswith(("_iou", "_score"))})
    out.to_csv(args.out, index=False)
    bins = pd.cut(out["snr"], [-np.inf, 5, 8, np.inf], right=False, labels=["snr < 5", "5-8", ">= 8"])
    print(f"\n{len(out)} layers; per-layer table in {args.out}")
    print("recall at IoU 0.5 by oracle visibility (layers):", bins.value_counts(sort=False).to_dict())
    for name in detectors:
        recall = (out[f"{name}_iou"] >= 0.5).groupby(bins, observed=False).mean().round(2).to_dict()
        print(f"  {name}: {recall}")


if __name__ == "__main__":
    main()
