"""The slice-classifier baselines end to end through the CLI (run by hand; results go in the README).

    python benchmarks/classifiers.py --train-data CONV_TRAIN --test-images IMAGES --test-sections SECTIONS \\
        --truth TRUTH_CSV --test-data CONV_TEST --work DIR [--heads simple-cnn enhanced-cnn resnet34 vgg16]

For each head: ``meltloc train --head H --data CONV_TRAIN`` with the defaults
(skipped when DIR/H.pt exists, unless --retrain), ``meltloc detect`` on the
test images (seconds per section = the detect run's seconds / images),
``meltloc evaluate --json`` against the truth, and the seed's slice accuracy
(:func:`meltloc.heads.classifiers.slices.slice_accuracy`) on CONV_TEST's test split
(the same sections, converted with every image in test). Writes
DIR/H.detections.csv, DIR/H.eval.json, DIR/results.json and prints a
Markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from meltloc.checkpoint import load_checkpoint  # noqa: E402
from meltloc.heads.classifiers.config import HEADS  # noqa: E402
from meltloc.heads.classifiers.slices import slice_accuracy  # noqa: E402


def cli(*args: object, log: Path) -> subprocess.CompletedProcess:
    """Run ``python cli.py ARGS``, appending its output to ``log``; stop on failure."""
    cmd = [sys.executable, str(REPO / "cli.py"), *map(str, args)]
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        result = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, text=True)
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {' '.join(cmd)}; see {log}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-data", type=Path, required=True)
    ap.add_argument("--test-images", type=Path, required=True)
    ap.add_argument("--test-sections", type=Path, required=True)
    ap.add_argument("--truth", type=Path, required=True)
    ap.add_argument("--test-data", type=Path, required=True, help="convert output of the test core (split test)")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--heads", nargs="+", default=list(HEADS), choices=HEADS)
    ap.add_argument("--retrain", action="store_true")
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    results_path = args.work / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for head in args.heads:
        log = args.work / f"{head}.log"
        weights = args.work / f"{head}.pt"
        t0 = time.time()
        if args.retrain or not weights.exists():
            cli("train", "--head", head, "--data", args.train_data, "--out", weights, "--overwrite", log=log)
        train_wall = time.time() - t0
        det = args.work / f"{head}.detections.csv"
        t0 = time.time()
        run = cli("detect", args.test_images, "--sections", args.test_sections, "--weights", weights,
                  "--out", det, "--quiet", "--overwrite", log=log)
        detect_wall = time.time() - t0
        text = log.read_text()
        found = re.findall(r"(\d+) image\(s\) in ([\d.]+) s", text)
        n_images, detect_s = (int(found[-1][0]), float(found[-1][1])) if found else (0, float("nan"))
        ev = args.work / f"{head}.eval.json"
        cli("evaluate", "--pred", det, "--truth", args.truth, "--json", ev, "--no-per-image", log=log)
        overall = json.loads(ev.read_text())["overall"]
        t0 = time.time()
        acc_test = slice_accuracy(weights, args.test_data, split="test")
        acc_s = time.time() - t0
        ck = load_checkpoint(weights)
        results[head] = {
            "slice_accuracy_test": acc_test, "slice_accuracy_val": ck.get("slice_accuracy_val"),
            "f1": overall.get("f1"), "precision": overall.get("precision"), "recall": overall.get("recall"),
            "map": overall.get("map"), "ap@0.5": overall.get("ap@0.5"), "boundary_mm": overall.get("boundary_mm"),
            "n_truth": overall.get("n_truth"), "n_pred": overall.get("n_pred"), "tp": overall.get("tp"),
            "seconds_per_section": detect_s / max(1, n_images), "n_test_images": n_images,
            "detect_wall_s": detect_wall, "slice_accuracy_s": acc_s,
            "train_seconds": ck["train"].get("seconds"), "train_wall_s": train_wall,
            "parameters": ck["train"].get("parameters"),
            "trainable_parameters": ck["train"].get("trainable_parameters"),
            "epochs": ck["train"].get("epochs"), "best_epoch": (ck.get("best") or {}).get("epoch"),
            "score_threshold": ck.get("score_threshold"), "val": ck["train"].get("threshold_val"),
            "input": [ck["config"]["input_rows"], ck["config"]["input_cols"]], "source": ck["train"].get("source"),
        }
        results_path.write_text(json.dumps(results, indent=2))
    print("| head | slice acc. (test) | F1 @0.5 | mean AP | boundary mm | s / section | train min | params |")
    print("|---|---|---|---|---|---|---|---|")
    for head, r in results.items():
        fmt = lambda v, d=3: "n/a" if v is None else f"{v:.{d}f}"  # noqa: E731
        print(f"| {head} | {fmt(r['slice_accuracy_test'])} | {fmt(r['f1'])} | {fmt(r['map'])} | "
              f"{fmt(r['boundary_mm'], 2)} | {fmt(r['seconds_per_section'], 1)} | "
              f"{fmt((r['train_seconds'] or 0) / 60, 1)} | {r['parameters']:,} |")


if __name__ == "__main__":
    main()
