"""Join `meltloc convert` outputs of different sections into one, each section keeping its own split.

    python benchmarks/merge_converted.py OUT CONVERTED [CONVERTED ...]

Copies each output's YOLO tiles and labels (train and val), its strips, and joins strips.csv,
intervals.csv and yolo/tiles.csv. Strips that an output lacks stay missing (training reads the val
strips only). Used in the twenty-fourth round to add 8 hard sections to conv24 without redrawing
its split: alignment, strips and tiles are made section by section, so a section's tiles are the
same whichever output it is converted in. The result is for training (no alignment.csv or coco/).
Refuses an existing OUT and a section in two outputs. Builds OUT aside and renames it at the end
(``folder_aside.py``), so a failed copy leaves no half-made OUT.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
from folder_aside import built_aside

FOLDERS = ("strips", "yolo/images/train", "yolo/images/val", "yolo/labels/train", "yolo/labels/val")
TABLES = ("strips.csv", "intervals.csv", "yolo/tiles.csv")


def merge(out: Path, parts: list[Path]) -> pd.DataFrame:
    if out.exists():
        raise SystemExit(f"error: {out} exists; merge into a new folder")
    for part in parts:
        missing = [name for name in TABLES if not (part / name).is_file()]
        if missing:
            raise SystemExit(f"error: {part} is not a convert output (no {', '.join(missing)})")
    tables = {name: [pd.read_csv(part / name) for part in parts] for name in TABLES}
    for part, strips in zip(parts, tables["strips.csv"]):
        if not {"image", "split"} <= set(strips.columns):
            raise SystemExit(f"error: {part / 'strips.csv'} lacks its image or split column")
    images = pd.concat(tables["strips.csv"])["image"]
    if images.duplicated().any():
        raise SystemExit(f"error: section {images[images.duplicated()].iloc[0]} is in two outputs")
    with built_aside(out) as partial:
        for sub in FOLDERS:
            (partial / sub).mkdir(parents=True)
            for part in parts:
                for f in sorted((part / sub).iterdir()) if (part / sub).is_dir() else []:
                    shutil.copy2(f, partial / sub / f.name)
        for name, frames in tables.items():
            pd.concat(frames).to_csv(partial / name, index=False)
    return pd.concat(tables["strips.csv"])


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        raise SystemExit(__doc__.strip().splitlines()[2].strip())
    try:
        table = merge(Path(argv[1]), [Path(p) for p in argv[2:]])
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise SystemExit(f"error: {e}") from None
    splits = ", ".join(f"{n} {s}" for s, n in table["split"].value_counts().items())
    print(f"merged {len(table)} sections from {len(argv) - 2} outputs into {argv[1]}: {splits}")


if __name__ == "__main__":
    main(sys.argv)
