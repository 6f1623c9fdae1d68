"""How far a test set's F1 would move with other sections of the same kind: a bootstrap over sections.

    python benchmarks/section_bootstrap.py /tmp/data2/hard_test/truth.csv \
        /tmp/runs/cmp_hard_test/detections/regression.csv /tmp/runs/cmp_hard_test/detections/yolo.csv

Each detections table (``meltloc detect`` or ``compare``'s ``detections/<head>.csv``, at the head's operating
threshold) is matched to the truth once, section by section (true and false layers, misses at IoU 0.5, as
``meltloc evaluate`` counts them). The test set's sections are those the truth names (any feature) or a table
detects in; they are then drawn with replacement, as many as the test set holds,
``--draws`` times; each draw's F1 pools the drawn sections' counts. It prints each table's F1 with the central
90 % of the draws, and for every pair the difference in F1 on the same draws (the second minus the first) with
its 90 % interval and how often it is above zero: whether one head's lead on 12 sections would hold on others.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def section_counts(detections: Path, truth: Path) -> pd.DataFrame:
    """Per section (index ``image``): melt-layer ``tp``, ``fp``, ``fn`` at IoU 0.5."""
    from meltloc.evaluate import evaluate_files

    result = evaluate_files(detections, truth)
    return result.per_image.set_index("image")[["tp", "fp", "fn"]].astype(int)


def f1_of(counts: np.ndarray) -> np.ndarray:
    """F1 from summed (tp, fp, fn) along the last axis."""
    tp, fp, fn = counts[..., 0], counts[..., 1], counts[..., 2]
    return np.where(tp > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("truth", type=Path, help="the drawn truth (synth's truth.csv)")
    ap.add_argument("detections", type=Path, nargs="+", help="detections tables, one per head")
    ap.add_argument("--draws", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    tables = [section_counts(d, args.truth) for d in args.detections]
    # every section the truth names, also one where no head detects anything and nothing is to be found
    sections = sorted(set().union(*(t.index for t in tables), pd.read_csv(args.truth)["image"]))
    counts = np.stack([t.reindex(sections, fill_value=0).to_numpy() for t in tables])      # (heads, sections, 3)
    rng = np.random.default_rng(args.seed)
    draws = rng.integers(0, len(sections), size=(args.draws, len(sections)))
    f1 = f1_of(counts[:, draws].sum(axis=2))                                                 # (heads, draws)
    full = f1_of(counts.sum(axis=1))
    print(f"{len(sections)} sections, {args.draws} draws with replacement")
    for path, value, dist in zip(args.detections, full, f1):
        lo, hi = np.percentile(dist, [5, 95])
        print(f"{path}: F1 {value:.3f} (90 % of draws {lo:.3f}-{hi:.3f})")
    for i, j in itertools.combinations(range(len(tables)), 2):
        diff = f1[j] - f1[i]
        lo, hi = np.percentile(diff, [5, 95])
        print(f"{args.detections[j].name} - {args.detections[i].name}: {full[j] - full[i]:+.3f} "
              f"(90 % {lo:+.3f} to {hi:+.3f}; above 0 in {100 * np.mean(diff > 0):.0f} % of draws)")


if __name__ == "__main__":
    main()
