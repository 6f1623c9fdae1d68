"""An experiment, not part of meltloc: rescore a head's candidates with an end refiner's networks.

The networks of an end refiner (``weights/end_refiner.pt``, or one packed by ``pack_end_refiner.py``) were trained
by ``candidate_verifier.py --refine`` to say whether a candidate is a melt layer as well as where its ends lie.
Here their logits (averaged over the crop as is and flipped three ways, and over the networks) are combined with
the head's score (``--weights``: the shipped regression ensemble by default, or the shipped YOLO),
``w_score * logit(score) + w_verifier * logit + bias``; the three weights and the operating
threshold are fitted on a calibration set (``--cal``; it should be one that no network was trained on and no
choice was made on: the script cannot check that), and then applied unchanged to the development sets (``--dev``),
with every melt layer's ends moved by the networks' averaged shifts. Each development set is reported beside the
same candidates with their ends moved and not rescored, at the head's own threshold (F1) and over all candidates
(mean AP).

Two differences from ``meltloc detect --refine-ends``: the candidates are decoded once, down to ``--min-score``,
and then cut at the head's threshold (for the regression ensemble this can give other intervals than decoding at
its threshold: on ``dev_hard24`` the baseline here is F1 0.793 where ``detect --refine-ends`` gives 0.810); and
the ends are moved by ``candidate_verifier.refined`` (clipped to the strip, the rows not cleaned again), not by
``meltloc.heads.ends``.

    python benchmarks/verifier_rescore.py --data /tmp/data2 --work /tmp/rescore --cal cal24 \\
        --dev dev_hard dev_hard24 dev_wide6 dev_classic12
"""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import candidate_verifier as cv  # noqa: E402
from meltloc.errors import MeltlocError  # noqa: E402
from meltloc.heads.ends import load_end_refiner  # noqa: E402


def outputs(nets, table: pd.DataFrame, cut: dict) -> tuple[np.ndarray, np.ndarray]:
    """Per row: the networks' mean flips-averaged logit (NaN for rows that are not melt layers) and their mean end
    shifts in strip rows."""
    each = [cv.verifier_outputs(net, table, cut, soft=True) for net in nets]
    return np.mean([o["flips"] for o in each], axis=0), np.mean([o["shift_rows"] for o in each], axis=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the folder holding the sets")
    ap.add_argument("--work", type=Path, required=True, help="candidate cache and results.json")
    ap.add_argument("--end-refiner", type=Path, default=cv.REPO / "weights" / "end_refiner.pt",
                    help="the end refiner whose networks rescore (default: the shipped one)")
    ap.add_argument("--weights", type=Path, default=cv.WEIGHTS, help="the head whose candidates are rescored")
    ap.add_argument("--cal", required=True, help="the set the combination and threshold are fitted on")
    ap.add_argument("--dev", nargs="+", required=True, help="the sets they are judged on")
    ap.add_argument("--min-score", type=float, default=0.1, help="the candidates' lowest score")
    args = ap.parse_args()
    if args.cal in args.dev:
        sys.exit(f"error: {args.cal} is the calibration set; it cannot also be judged on (--dev)")
    for name in [args.cal, *args.dev]:
        if not (args.data / name / "truth.csv").is_file():
            sys.exit(f"error: {args.data / name} is not a synth folder (no truth.csv)")
    try:
        refiner = load_end_refiner(args.end_refiner)
    except MeltlocError as exc:
        sys.exit(f"error: {exc}")
    nets = refiner.nets
    args.work.mkdir(parents=True, exist_ok=True)
    cfg = cv.load_detector(cv.WEIGHTS).cfg  # the crops are cut as in training: the ensemble's normalised strip
    if cfg.normalisation != "local" or any(getattr(cfg, k) != getattr(refiner.cfg, k)
                                           for k in ("px_per_mm", "width", "inset", "norm_window_mm")) \
            or (refiner.cfg.crop_rows, refiner.cfg.shift_unit_rows) != (cv.CROP_ROWS, cv.OFFSET_ROWS):
        sys.exit(f"error: {args.end_refiner} looks at another strip or crop than the ones cut here")
    try:
        shipped_threshold = float(torch.load(args.weights, weights_only=True, map_location="cpu")["score_threshold"])
    except (OSError, RuntimeError, KeyError, TypeError, ValueError, pickle.UnpicklingError) as exc:
        sys.exit(f"error: {args.weights} is not a meltloc head's checkpoint with an operating threshold "
                 f"({type(exc).__name__})")

    def prepared(name):
        folder = args.data / name
        cache = args.work / f"detections_{args.weights.stem}_{args.min_score:g}_{name.replace('/', '_')}.csv"
        if not cache.exists():
            cv.detect_images([folder / "images"], cache, weights=args.weights, sections=cv.manifest_of(folder),
                             score_threshold=args.min_score, workers=2)
        table = pd.read_csv(cache)
        truth = pd.read_csv(folder / "truth.csv")
        cut = cv.strips(folder, cfg)
        v, shifts = outputs(nets, table, cut)
        return table, truth, cut, v, shifts

    table, truth, cut, v, shifts = prepared(args.cal)
    melt = (table["type"] == "melt_layer").values
    y = cv.label(table[melt].reset_index(drop=True), truth)
    features = np.stack([cv.logit(table["score"].values[melt]), v[melt]], 1)[y >= 0]
    w = cv.fit_combination(features, y[y >= 0])
    moved = cv.refined(cv.rescore(table, v, w), cut, shifts)
    truth = truth[truth["type"].isin(cv.SCORED)]
    best_f1, _, threshold = max((cv.evaluate_intervals(moved[moved["score"] >= t], truth).overall["f1"],
                                 -abs(t - 0.5), round(float(t), 2)) for t in np.arange(0.2, 0.9, 0.05))
    print(f"{args.cal}: {len(features)} labelled candidates ({int(y[y >= 0].sum())} layers); combination "
          f"{np.round(w, 3).tolist()}; threshold {threshold} (F1 {best_f1:.3f} there, ends moved); "
          f"{len(nets)} network(s)", flush=True)
    results = {"combination": w.tolist(), "threshold": threshold, "cal_f1": best_f1, "dev": {}}
    for name in args.dev:
        table, truth, cut, v, shifts = prepared(name)
        truth = truth[truth["type"].isin(cv.SCORED)]
        rows = {"ends moved": cv.scored(cv.refined(table, cut, shifts), truth, shipped_threshold),
                "rescored, ends moved": cv.scored(cv.refined(cv.rescore(table, v, w), cut, shifts), truth,
                                                  threshold)}
        results["dev"][name] = rows
        for k, r in rows.items():
            print(f"{name:14s} {k:>21}: mean AP {r['map']:.3f}  F1 {r['f1']:.3f}  boundary {r['boundary_mm']:.3f} mm"
                  f"  tp/fp/fn {r['tp_fp_fn']}", flush=True)
    (args.work / "results.json").write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
