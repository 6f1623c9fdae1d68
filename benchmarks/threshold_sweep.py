"""F1 of detections cut at a range of score thresholds, per set and pooled (fifteenth round).

    meltloc detect dev_hard/images --sections dev_hard/sections.tab --weights weights/yolo.pt --min-score 0.05 \
        --out low_yolo_dev_hard.csv
    python benchmarks/threshold_sweep.py sweep.csv --set yolo dev_hard low_yolo_dev_hard.csv dev_hard/truth.csv \
        [--set HEAD NAME PRED TRUTH ...]

Each set's detections (one decoding at a low threshold) are cut at every threshold from 0.30 to 0.80 and scored
by ``meltloc evaluate``; it prints, per head, F1 per set and pooled (true and false positives and misses summed
over the sets), and writes every count to the CSV.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

CLI = Path(__file__).resolve().parents[1] / "cli.py"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", type=Path, help="CSV of the counts (head, set, threshold, tp, fp, fn, f1)")
    ap.add_argument("--set", nargs=4, action="append", required=True, metavar=("HEAD", "NAME", "PRED", "TRUTH"))
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cut, scores = Path(tmp) / "cut.csv", Path(tmp) / "scores.json"
        for head, name, pred, truth in args.set:
            table = pd.read_csv(pred)
            for threshold in np.round(np.arange(0.30, 0.801, 0.05), 2):
                table[table["score"] >= threshold].to_csv(cut, index=False)
                run = subprocess.run([sys.executable, str(CLI), "evaluate", "--pred", str(cut), "--truth", truth,
                                      "--json", str(scores), "--overwrite"], capture_output=True, text=True)
                if run.returncode != 0:  # meltloc's own one-line error, naming the set
                    sys.exit(f"{name} ({pred}): {run.stderr.strip().splitlines()[-1] if run.stderr.strip() else 'evaluate failed'}")
                o = json.loads(scores.read_text())["overall"]
                rows.append({"head": head, "set": name, "threshold": threshold, "tp": o["tp"], "fp": o["fp"],
                             "fn": o["fn"], "f1": o["f1"]})
    table = pd.DataFrame(rows)
    table.to_csv(args.out, index=False)
    for head, part in table.groupby("head", sort=False):
        f1 = part.pivot(index="threshold", columns="set", values="f1")
        pooled = part.groupby("threshold")[["tp", "fp", "fn"]].sum()
        f1["pooled"] = 2 * pooled["tp"] / (2 * pooled["tp"] + pooled["fp"] + pooled["fn"])
        print(f"{head}\n{f1.round(3).to_string()}\n")


if __name__ == "__main__":
    main()
