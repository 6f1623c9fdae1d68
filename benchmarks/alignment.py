"""Benchmark: label alignment on synthetic cores with known offsets (run by hand).

Synthesises cores with ``meltloc synth`` into ``FOLDER/<px_per_cm>/`` (kept
and reused on a second run with the same settings), aligns every section's
label table with meltloc's method (:func:`meltloc.alignment.align_section`,
the same call ``meltloc convert`` makes) and with the seed project's method
as published (:func:`meltloc.alignment.seed_shift`: +/-200 px, layers padded
+/-20 px, row mean x row median), and prints, per scale and method, the share
of sections holding a melt layer whose recovered shift lies within 0.25 mm
and 0.5 mm of the truth (``offset_mm`` in ``truth_sections.csv``).

Both methods get the same label rows (the melt layers that may fall in the
section) and the same depth -> row map (meltloc's core ends), so only the
shift search differs. The seed worked at 186 px/cm, so its +/-200 px and
+/-20 px are also run scaled to millimetres (``seed (px scaled)``) at other
scales.

Usage::

    python benchmarks/alignment.py /tmp/meltloc-bench                # 30 sections at 186 and at 60 px/cm
    python benchmarks/alignment.py /tmp/meltloc-bench --sections 40 --scales 186 60 --seed 0

A full-scale section takes ~4 s to synthesise and ~33 MB of PNG: use /tmp.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from meltloc import MELT_LAYER
from meltloc.alignment import AlignConfig, align_section, seed_shift
from meltloc.convert import near_section
from meltloc.geometry import DepthScale
from meltloc.labels import read_labels
from meltloc.manifest import read_manifest
from meltloc.section import load_section
from meltloc.synth import SynthConfig, write_core

SEED_PX_PER_CM = 186.0


def synthesise(folder: Path, sections: int, px_per_cm: float, seed: int, first_bag: int) -> Path:
    """The core for one scale, made unless a matching one is already there."""
    out = folder / f"{px_per_cm:g}"
    stamp = out / "benchmark.txt"
    want = f"sections={sections} px_per_cm={px_per_cm:g} seed={seed} first_bag={first_bag}\n"
    if stamp.is_file() and stamp.read_text() == want:
        return out
    t0 = time.time()
    write_core(out, n_sections=sections, seed=seed, config=SynthConfig(px_per_cm=px_per_cm, first_bag=first_bag),
               show_progress=True)
    stamp.write_text(want)
    print(f"synthesised {sections} sections at {px_per_cm:g} px/cm in {time.time() - t0:.0f} s")
    return out


def run_scale(core: Path, config: AlignConfig) -> pd.DataFrame:
    """Per section: true offset and the shifts (mm) of each method."""
    manifest = read_manifest(core / "sections.tab")
    labels = read_labels(core / "features.csv").table
    truth = pd.read_csv(core / "truth_sections.csv").set_index("image")
    extents = labels[["depth_from_m", "depth_to_m"]].to_numpy(dtype=np.float64)
    is_layer = (labels["type"] == MELT_LAYER).to_numpy()
    rows = []
    for rec in manifest.table.itertuples():
        section = load_section(core / "images" / rec.image)
        scale = DepthScale(rec.top_m, rec.bottom_m, section.bounds.top_row, section.bounds.bottom_row)
        px_per_mm = scale.px_per_m / 1000
        layers = extents[near_section(extents, rec.top_m, rec.bottom_m, config.search_mm) & is_layer]
        t0 = time.perf_counter()
        ours = align_section(rec.image, section.image, section.bounds, scale, layers, config)
        t_ours = time.perf_counter() - t0
        table_rows = scale.depth_to_row(layers)
        t0 = time.perf_counter()
        seed_px = seed_shift(section.image, table_rows) if len(layers) else 0
        t_seed = time.perf_counter() - t0
        factor = px_per_mm * 10 / SEED_PX_PER_CM
        seed_scaled_px = seed_shift(section.image, table_rows, search_px=int(round(200 * factor)),
                                    pad_px=int(round(20 * factor))) if len(layers) else 0
        rows.append({"image": rec.image, "layers": len(layers), "melt_layers": int(truth.loc[rec.image, "melt_layers"]),
                     "truth_mm": float(truth.loc[rec.image, "offset_mm"]), "ours_mm": ours.shift_mm,
                     "confidence": ours.confidence, "flag": ours.flag, "seed_mm": seed_px / px_per_mm,
                     "seed_scaled_mm": seed_scaled_px / px_per_mm, "t_ours_s": t_ours, "t_seed_s": t_seed})
        del section
    return pd.DataFrame(rows)


def figures(df: pd.DataFrame, column: str) -> dict:
    """Share within 0.25 / 0.5 mm, median and 95th percentile of |error|, over sections holding a melt layer."""
    held = df[df["melt_layers"] > 0]
    err = (held[column] - held["truth_mm"]).abs()
    return {"sections": len(held), "within_0.25mm": float((err <= 0.25).mean()),
            "within_0.5mm": float((err <= 0.5).mean()), "median_mm": float(err.median()),
            "p95_mm": float(err.quantile(0.95)), "max_mm": float(err.max())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path, help="where to synthesise the cores (reused when already there)")
    parser.add_argument("--sections", type=int, default=30, help="sections per scale (default 30)")
    parser.add_argument("--scales", type=float, nargs="+", default=[186.0, 60.0], help="px/cm (default 186 60)")
    parser.add_argument("--seed", type=int, default=0, help="synth seed (default 0)")
    parser.add_argument("--first-bag", type=int, default=227, help="first bag (default 227, 124.30 m)")
    parser.add_argument("--search-mm", type=float, default=15.0, help="our search range (default 15)")
    parser.add_argument("--details", action="store_true", help="print every section")
    args = parser.parse_args()

    config = AlignConfig(search_mm=args.search_mm)
    table = []
    for px_per_cm in args.scales:
        core = synthesise(args.folder, args.sections, px_per_cm, args.seed, args.first_bag)
        df = run_scale(core, config)
        df.to_csv(core / "benchmark_alignment.csv", index=False)
        if args.details:
            with pd.option_context("display.width", 200, "display.max_rows", None):
                print(df.round(3).to_string(index=False))
        methods = [("meltloc", "ours_mm"), ("seed (as published)", "seed_mm")]
        if px_per_cm != SEED_PX_PER_CM:
            methods.append(("seed (px scaled)", "seed_scaled_mm"))
        for name, col in methods:
            table.append({"px_per_cm": px_per_cm, "method": name, **figures(df, col)})
        held = df[df["melt_layers"] > 0]
        wrong = held[(held["ours_mm"] - held["truth_mm"]).abs() > 0.25]
        outside = ", ".join(f"{r.image} ({r.confidence:.2f})" for r in wrong.itertuples())
        print(f"{px_per_cm:g} px/cm: meltloc {df['t_ours_s'].mean():.2f} s/section, "
              f"seed {df['t_seed_s'].mean():.2f} s/section; confidence of the sections within 0.25 mm: "
              f"min {held.drop(wrong.index)['confidence'].min():.2f}" + (f"; outside: {outside}" if outside else ""))
    out = pd.DataFrame(table)
    with pd.option_context("display.width", 200):
        print(out.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


if __name__ == "__main__":
    main()
