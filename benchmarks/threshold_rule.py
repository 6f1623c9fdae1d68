"""Which operating threshold each rule picks on the validation sections, and what it scores on test sets.

    python benchmarks/threshold_rule.py --tests /tmp/data2/hard_test /tmp/data2/wide_test /tmp/data2/classic_test \
        --run /tmp/runs/reg24.pt /tmp/data2/conv24 --run /tmp/runs/reg_big20.pt /tmp/data2/conv_big20 \
        --out /tmp/runs/threshold_rule.csv

For each regression checkpoint and the convert output it was trained on, the
validation sections' melt-layer F1 (IoU 0.5) at every threshold of the grid,
then the threshold of two rules:

* ``plain``: the F1-best, ties to the one nearest 0.5 (meltloc's rule before
  the sixth round);
* ``one_layer``: of the thresholds within 1 / (validation layers) of the best
  F1, the one nearest 0.5 (:func:`meltloc.heads.training.choose_threshold`).

and each test set's F1 at both (every test section predicted once, decoded at
both thresholds, cleaned as ``meltloc detect`` cleans). Test sets are
``meltloc synth`` folders (``images/``, ``sections.csv``, ``truth.csv``).
Reading the test sections once takes about 2 GB of memory for 36 full-scale
sections.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import meltloc  # noqa: E402
from meltloc import MELT_LAYER  # noqa: E402
from meltloc.api import COLUMNS  # noqa: E402
from meltloc.checkpoint import load_checkpoint  # noqa: E402
from meltloc.detections import to_depths  # noqa: E402
from meltloc.heads.regression import RegressionHead  # noqa: E402
from meltloc.heads.regression.net import decode_strip, predict_strip_mean  # noqa: E402
from meltloc.heads.training import (PREFERRED_THRESHOLD, THRESHOLD_GRID, choose_threshold,  # noqa: E402
                                    detections_table, truth_table)
from meltloc.metrics import evaluate_intervals  # noqa: E402
from meltloc.strip_dataset import load_strips  # noqa: E402


def validation_curve(weights: Path, data: Path):
    """(threshold -> detections on the validation strips, validation truth)."""
    head = RegressionHead(load_checkpoint(weights, expect_head="regression"))  # an ensemble's every network
    cfg = head.cfg
    val = load_strips(data, cfg.classes, ("val",))
    if not val:
        raise SystemExit(f"{data}: no validation strips")
    with torch.inference_mode():
        pred = [(s, predict_strip_mean([head.model, *head.members], s.pixels)) for s in val]

    def at(thr: float) -> pd.DataFrame:
        found = {id(s): decode_strip(p, b, cfg.classes, thr, cfg.nms_iou) for s, (p, b) in pred}
        return detections_table(val, lambda s: found[id(s)])

    return at, truth_table(val, data)


def plain_rule(at, truth) -> float:
    """The F1-best threshold of the grid, ties to the one nearest 0.5."""
    f1 = {}
    for thr in THRESHOLD_GRID:
        value = evaluate_intervals(at(float(thr)), truth).overall["f1"]
        f1[float(thr)] = float(value) if np.isfinite(value) else -1.0
    best = max(f1.values())
    return min((t for t, v in f1.items() if v >= best - 1e-9), key=lambda t: abs(t - PREFERRED_THRESHOLD))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tests", nargs="+", type=Path, required=True, help="synth folders to score on")
    parser.add_argument("--run", nargs=2, action="append", metavar=("WEIGHTS", "DATA"), required=True,
                        help="a regression checkpoint and the convert output it was trained on")
    parser.add_argument("--out", type=Path, required=True, help="CSV to write (must not exist)")
    args = parser.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; not overwriting it")
    tests = {}
    for folder in args.tests:
        secs = pd.read_csv(folder / "sections.csv")
        tests[folder.name] = ([meltloc.read_section(folder / "images" / s.image, top_m=s.top_m, bottom_m=s.bottom_m)
                               for s in secs.itertuples()], pd.read_csv(folder / "truth.csv"))
    rows = []
    for weights, data in args.run:
        weights, data = Path(weights), Path(data)
        at, truth = validation_curve(weights, data)
        plain = plain_rule(at, truth)
        one_layer, _ = choose_threshold(at, truth)
        row = {"weights": weights.name, "val_layers": int((truth["type"] == MELT_LAYER).sum()),
               "threshold_plain": plain, "threshold_one_layer": one_layer}
        for rule, thr in (("plain", plain), ("one_layer", one_layer)):
            row[f"val_f1_{rule}"] = round(float(evaluate_intervals(at(thr), truth).overall["f1"]), 3)
        detector = meltloc.load_detector(weights).detector
        for name, (sections, test_truth) in tests.items():
            thresholds = sorted({plain, one_layer})
            found = {thr: [] for thr in thresholds}
            with torch.inference_mode():
                for sec in sections:
                    for thr, dets in zip(thresholds, detector.detect_many(sec, thresholds)):
                        found[thr].append(pd.DataFrame(to_depths(sec, dets), columns=COLUMNS))
            for rule, thr in (("plain", plain), ("one_layer", one_layer)):
                table = pd.concat(found[thr], ignore_index=True)
                row[f"{name}_f1_{rule}"] = round(float(evaluate_intervals(table, test_truth).overall["f1"]), 3)
        print(row, flush=True)
        rows.append(row)
    pd.DataFrame(rows).to_csv(args.out, index=False)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
