"""Merge several `meltloc synth` outputs into one core folder (images linked, manifests and label tables joined).

    python benchmarks/merge_cores.py OUT CORE [CORE ...]

Writes OUT/images/ (hard links, or copies across file systems), OUT/sections.csv, OUT/features.csv and
OUT/truth.csv. Image names must not repeat across the cores (synth names images by bag, so cores at
different depths never collide). Refuses an existing OUT.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pandas as pd


def merge(out: Path, cores: list[Path]) -> None:
    if out.exists():
        raise SystemExit(f"error: {out} exists; merge into a new folder")
    (out / "images").mkdir(parents=True)
    sections, features, truth = [], [], []
    seen: set[str] = set()
    for core in cores:
        for image in sorted((core / "images").iterdir()):
            if image.name in seen:
                raise SystemExit(f"error: {image.name} is in two cores; give cores at different depths")
            seen.add(image.name)
            try:
                os.link(image, out / "images" / image.name)
            except OSError:
                shutil.copy2(image, out / "images" / image.name)
        sections.append(pd.read_csv(core / "sections.csv"))
        features.append(pd.read_csv(core / "features.csv"))
        truth.append(pd.read_csv(core / "truth.csv"))
    pd.concat(sections).to_csv(out / "sections.csv", index=False)
    pd.concat(features).sort_values("depth from", kind="stable").to_csv(out / "features.csv", index=False)
    pd.concat(truth).to_csv(out / "truth.csv", index=False)
    print(f"merged {len(seen)} images from {len(cores)} cores into {out}")


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    merge(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
