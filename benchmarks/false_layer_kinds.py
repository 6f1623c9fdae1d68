"""A benchmark helper, not part of meltloc: what each false melt layer of a detection table lies on.

Each ``melt_layer`` row that meets no true melt layer at IoU 0.5 (depth intervals in the same image) is put with
the truth feature it overlaps most (``crack`` rows of synth's truth are cracks and core breaks; ``uncertain`` and
``bubble_free`` rows are features a person would not log as melt), or with ``none`` when it overlaps nothing:

    python benchmarks/false_layer_kinds.py DEV/truth.csv run_a.csv run_b.csv ...

prints, for each table, its melt-layer rows and the count of its false ones by the kind they lie on. It counts
rows as they are; ``meltloc evaluate`` leaves rows on ``uncertain`` features out of its false layers.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from meltloc.metrics import pairwise_iou

IOU = 0.5


def false_layer_kinds(pred: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    """Counts of ``pred``'s false melt layers by the truth feature type each overlaps most (``none``: nothing)."""
    kinds: list[str] = []
    layers = pred[pred["type"] == "melt_layer"]
    by_image = {name: rows for name, rows in truth.groupby("image")}
    for row in layers.itertuples(index=False):
        here = by_image.get(row.image)
        if here is None or here.empty:
            kinds.append("none")
            continue
        iou = pairwise_iou(np.array([[row.depth_from_m, row.depth_to_m]]),
                           here[["depth_from_m", "depth_to_m"]].to_numpy())[0]
        if ((here["type"].to_numpy() == "melt_layer") & (iou >= IOU)).any():
            continue
        kinds.append(str(here["type"].iloc[int(np.argmax(iou))]) if (iou > 0).any() else "none")
    return pd.Series(kinds, dtype=object).value_counts()


def _read(path: Path) -> pd.DataFrame:
    """A table with the columns this needs, or one line on what is wrong."""
    try:
        table = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise SystemExit(f"error: {path}: cannot read: {exc}") from None
    missing = {"image", "type", "depth_from_m", "depth_to_m"} - set(table.columns)
    if missing:
        raise SystemExit(f"error: {path}: no column {', '.join(sorted(missing))}")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("truth", type=Path, help="synth's truth.csv of the set")
    parser.add_argument("tables", type=Path, nargs="+", help="detection tables (meltloc detect's CSV)")
    args = parser.parse_args(argv)
    truth = _read(args.truth)
    for table in args.tables:
        pred = _read(table)
        kinds = false_layer_kinds(pred, truth)
        n_layers = int((pred["type"] == "melt_layer").sum())
        listed = ", ".join(f"{kind} {count}" for kind, count in kinds.items()) or "none false"
        print(f"{table.name}: {n_layers} melt-layer rows; false ones on: {listed}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
