"""An experiment, not part of meltloc: move the ends of a head's melt layers with a refining verifier.

The verifier is one trained by ``benchmarks/candidate_verifier.py --refine`` (its ``verifier.pt``), or several
(their shifts averaged: an ensemble of seeds); nothing is rescored. The detections are scored before and after against the set's synth ``truth.csv``.

    python benchmarks/verifier_refine_table.py --verifier /tmp/verifier/verifier.pt [more.pt ...] \\
        --data /tmp/data2 --set dev_hard --detections yolo_dev_hard.csv

The detections are any ``meltloc detect`` table of the set's images (e.g. the shipped YOLO's at its own
threshold). The crops are cut from the shipped regression ensemble's normalised strip, as in training.
"""

from __future__ import annotations

import argparse
import pickle
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import candidate_verifier as cv  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--verifier", type=Path, nargs="+", action="extend", required=True,
                    help="verifier.pt of a --refine run; with several, their shifts are averaged")
    ap.add_argument("--data", type=Path, required=True, help="the folder holding the sets")
    ap.add_argument("--set", nargs="+", required=True, help="synth folders under --data")
    ap.add_argument("--detections", nargs="+", type=Path, required=True, help="one detect table per set")
    args = ap.parse_args()
    if len(args.set) != len(args.detections):
        sys.exit("error: give one --detections table per --set")
    tables = []
    for name, path in zip(args.set, args.detections):
        folder = args.data / name
        if not (folder / "truth.csv").is_file():
            sys.exit(f"error: {folder} is not a synth folder (no truth.csv)")
        if not path.is_file():
            sys.exit(f"error: no detect table {path}")
        table = pd.read_csv(path)
        missing = {"image", "type", "depth_from_m", "depth_to_m", "score"} - set(table.columns)
        if missing:
            sys.exit(f"error: {path} is not a meltloc detect table (no {', '.join(sorted(missing))} column)")
        images = {p.name for p in (folder / "images").iterdir()} if (folder / "images").is_dir() else set()
        if not images:
            sys.exit(f"error: no images in {folder / 'images'}")
        strange = sorted(set(table["image"]) - images)
        if strange:
            sys.exit(f"error: {path} holds images that are not in {folder / 'images'}: {', '.join(strange[:3])}")
        tables.append((name, folder, table))
    nets = []
    for path in args.verifier:
        if not path.is_file():
            sys.exit(f"error: no verifier file {path}")
        net = cv.Verifier(outputs=3)
        try:
            net.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
        except (RuntimeError, OSError, KeyError, TypeError, AttributeError, pickle.UnpicklingError) as exc:
            sys.exit(f"error: {path} is not the verifier.pt of a candidate_verifier.py --refine run "
                     f"({type(exc).__name__})")
        nets.append(net.eval())
    cfg = cv.load_detector(cv.WEIGHTS).cfg
    for name, folder, table in tables:
        truth = pd.read_csv(folder / "truth.csv")
        truth = truth[truth["type"].isin(cv.SCORED)]
        cut = cv.strips(folder, cfg)
        start = time.perf_counter()
        shifts = np.mean([cv.verifier_outputs(net, table, cut, soft=True)["shift_rows"] for net in nets], axis=0)
        after = cv.refined(table, cut, shifts)
        seconds = time.perf_counter() - start
        n = int((table["type"] == "melt_layer").sum())
        print(f"{name}: {n} melt layers on {len(cut)} sections refined in {seconds:.2f} s "
              f"({seconds / len(cut):.3f} s a section, 4 passes x {len(nets)} verifier(s), "
              f"{torch.get_num_threads()} threads)")
        for label, t in (("as detected", table), ("refined", after)):
            o = cv.evaluate_intervals(t, truth).overall
            print(f"{name} {label:>12}: F1 {o['f1']:.3f}  mean AP {o['map']:.3f}  boundary {o['boundary_mm']:.3f} mm  "
                  f"tp/fp/fn {[o[k] for k in ('tp', 'fp', 'fn')]}", flush=True)


if __name__ == "__main__":
    main()
