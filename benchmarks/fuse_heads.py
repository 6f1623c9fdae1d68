"""Two heads' detections as one (fifteenth round, not kept): each detection of the first (YOLO) keeps its score
and type, and its boundaries become the weighted mean with the second head's best-overlapping detection of the
same type (IoU >= 0.5), if any.

    python benchmarks/fuse_heads.py OUT/detections/yolo.csv OUT/detections/regression.csv fused.csv 0.5
    meltloc evaluate --pred fused.csv --truth dev_hard/truth.csv

The last argument is the first head's weight (0-1), or ``score`` for the weights of the two scores.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd


def main() -> None:
    if len(sys.argv) != 5 or (sys.argv[4] != "score" and not 0.0 <= _number(sys.argv[4]) <= 1.0):
        sys.exit("usage: fuse_heads.py FIRST.csv SECOND.csv OUT.csv WEIGHT (0-1, or score)")
    first, second, out, weight = sys.argv[1:5]
    if Path(out).resolve() in (Path(first).resolve(), Path(second).resolve()):
        sys.exit(f"{out}: is one of the inputs; write the fused detections to another file")
    a_table, b_table = pd.read_csv(first), pd.read_csv(second)
    rows, moved = [], 0
    for _, det in a_table.iterrows():
        others = b_table[(b_table["image"] == det["image"]) & (b_table["type"] == det["type"])]
        top, bottom = det["depth_from_m"], det["depth_to_m"]
        if len(others):
            inter = (np.minimum(bottom, others["depth_to_m"]) - np.maximum(top, others["depth_from_m"])).clip(lower=0)
            iou = (inter / (np.maximum(bottom, others["depth_to_m"]) - np.minimum(top, others["depth_from_m"]))).values
            k = int(np.argmax(iou))
            if iou[k] >= 0.5:
                other = others.iloc[k]
                w = det["score"] / (det["score"] + other["score"]) if weight == "score" else float(weight)
                top = w * top + (1 - w) * other["depth_from_m"]
                bottom = w * bottom + (1 - w) * other["depth_to_m"]
                moved += 1
        rows.append({**det.to_dict(), "depth_from_m": top, "depth_to_m": bottom,
                     "thickness_mm": (bottom - top) * 1000.0})
    columns = [c for c in a_table.columns if c not in ("row_from", "row_to")]  # rows of the first head only
    pd.DataFrame(rows, columns=columns).to_csv(out, index=False)
    print(f"{moved} of {len(a_table)} detections moved; written to {out}")


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return -1.0


if __name__ == "__main__":
    main()
