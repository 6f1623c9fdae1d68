"""A benchmark helper, not part of meltloc: YOLO's training with a look share limited to focus blur.

`meltloc train --head yolo`'s training with YOLO's defaults (one torch thread, CPU), except that a share of the
training tiles is blurred along depth (a Gaussian of sigma drawn uniformly from SIGMA_MIN_MM to SIGMA_MAX_MM) and
nothing else of the look augmentation (gain, gamma, fades, noise, ...) is applied. The blur comes last, after
ultralytics' own augmentation and the drawn layers and breaks, so the network sees blurred core breaks
(unlabelled) beside blurred melt layers (labelled at their true rows: a blur moves no boundary). Used in the
twenty-seventh round (rule R26).

    python benchmarks/yolo_blur_look.py DATA OUT RUNS [--seed S] [--epochs E] [--share P]
        [--sigma-min-mm A] [--sigma-max-mm B]

Why along depth only: a strip row averages about 22 image columns across the core (64 columns from about 1,430)
but under two image rows along it, so a camera's focus blur reaches a strip almost wholly along depth (sigma 4
image px at 186 px/cm is about 2.2 strip rows and 0.2 strip columns).

The checkpoint's training record says ``look`` = P (meltloc's own look share) and, under ``benchmark_look``, what
the look really was. RUNS records only the share, so `meltloc train --resume` on it would go on with meltloc's full
look change, not this blur: run this script again instead. Nothing is overwritten: OUT and RUNS must not exist.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np


def depth_blur(sigma_mm: tuple[float, float]):
    """A stand-in for :func:`meltloc.strip_dataset.change_look` (same call) that only blurs along depth."""
    lo, hi = sigma_mm

    def look(crop: np.ndarray, intervals: np.ndarray, rng: np.random.Generator, rows_per_mm: float) -> np.ndarray:
        sigma_rows = rng.uniform(lo, hi) * rows_per_mm
        return cv2.GaussianBlur(crop.astype(np.float32), (1, 0), sigmaX=0.1, sigmaY=sigma_rows)

    return look


def train(data: Path, out: Path, runs: Path, seed: int, epochs: int, share: float, sigma_mm: tuple[float, float]):
    import meltloc.heads.yolo.look as yolo_look
    from meltloc.checkpoint import load_checkpoint, save_checkpoint
    from meltloc.heads.yolo.config import YoloSettings
    from meltloc.heads.yolo.train import train as yolo_train

    yolo_look.change_look = depth_blur(sigma_mm)  # ultralytics runs with workers=0: the tiles are made here
    yolo_train(data, out, YoloSettings(seed=seed, epochs=epochs, threads=1, device="cpu", runs=str(runs),
                                       look=share))
    ck = {k: v for k, v in load_checkpoint(out).items() if k not in ("format", "version")}
    ck["train"]["benchmark_look"] = (f"benchmarks/yolo_blur_look.py: share {share} of the training tiles blurred "
                                     f"along depth, sigma {sigma_mm[0]}-{sigma_mm[1]} mm; no other look")
    save_checkpoint(out, ck)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("data", type=Path, help="a meltloc convert output")
    parser.add_argument("out", type=Path, help="the checkpoint to write (must not exist)")
    parser.add_argument("runs", type=Path, help="ultralytics' run folder (must not exist)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--share", type=float, default=0.4, help="share of the training tiles blurred (0.4)")
    parser.add_argument("--sigma-min-mm", type=float, default=0.05)
    parser.add_argument("--sigma-max-mm", type=float, default=0.4)
    args = parser.parse_args(argv)
    if not 0 < args.share <= 1:
        raise SystemExit(f"error: --share is a share of the tiles (0-1], not {args.share}")
    if not 0 < args.sigma_min_mm <= args.sigma_max_mm < float("inf"):
        raise SystemExit("error: the blur's sigma needs 0 < --sigma-min-mm <= --sigma-max-mm (finite)")
    if args.epochs < 1:
        raise SystemExit(f"error: --epochs is at least 1, not {args.epochs}")
    if args.out.resolve() == args.runs.resolve() or args.out.resolve().is_relative_to(args.runs.resolve()):
        raise SystemExit("error: OUT (the checkpoint) cannot be RUNS or lie inside it")
    if args.out.exists():
        raise SystemExit(f"error: {args.out} exists; nothing is overwritten")
    if args.runs.exists():  # meltloc's training clears a run folder's old weights
        raise SystemExit(f"error: {args.runs} exists; its run files would be replaced")
    if not (args.data / "yolo").is_dir():
        raise SystemExit(f"error: {args.data} is no meltloc convert output (no yolo/ folder)")
    from meltloc.errors import MeltlocError

    try:
        train(args.data, args.out, args.runs, args.seed, args.epochs, args.share,
              (args.sigma_min_mm, args.sigma_max_mm))
    except (MeltlocError, OSError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
