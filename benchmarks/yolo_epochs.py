"""A benchmark helper, not part of meltloc: one YOLO training run with every epoch's weights kept, each epoch turned
into a meltloc checkpoint, and the validation sections of a convert output copied out as a set of their own.
Used in the twenty-sixth round (rule R25) to score every third epoch of the shipped recipe on development sets.

    python benchmarks/yolo_epochs.py train DATA OUT RUNS [--seed S] [--epochs E]
        `meltloc train --head yolo`'s training with YOLO's defaults (one torch thread, CPU), but ultralytics keeps
        RUNS/train/weights/epoch<N-1>.pt for each epoch N (about 30 MB each: they hold the optimizer too)
    python benchmarks/yolo_epochs.py checkpoint EPOCH_FILE BASE OUT [--threshold T]
        a meltloc checkpoint with BASE's metadata (a meltloc YOLO checkpoint of the same run) and the epoch file's
        network (ultralytics' EMA weights), at score threshold T (0.5)
    python benchmarks/yolo_epochs.py val-sections CONVERTED SOURCE OUT
        CONVERTED's val sections copied from SOURCE (the set it was converted from: images/, sections.csv,
        truth.csv) into a new folder OUT

The epoch files are ultralytics pickles: `checkpoint` unpickles them, so give it only files this machine wrote.
Nothing is overwritten: OUT (and for `train`, RUNS) must not exist.
"""

from __future__ import annotations

import argparse
import pickle
import shutil
import sys
from pathlib import Path

import pandas as pd
from folder_aside import built_aside


def train(data: Path, out: Path, runs: Path, seed: int, epochs: int) -> None:
    import meltloc.heads.yolo.train as yolo_train
    from meltloc.heads.yolo.config import YoloSettings

    overrides = yolo_train.train_overrides
    yolo_train.train_overrides = lambda *a, **k: {**overrides(*a, **k), "save_period": 1}
    yolo_train.train(data, out, YoloSettings(seed=seed, epochs=epochs, threads=1, device="cpu", runs=str(runs)))


def checkpoint(epoch_file: Path, base: Path, out: Path, threshold: float) -> int:
    import torch

    from meltloc.checkpoint import save_checkpoint
    from meltloc.heads.yolo.env import import_ultralytics
    from meltloc.heads.yolo.network import network_payload

    import_ultralytics()
    import ultralytics.nn.tasks  # noqa: F401  (the pickled classes)

    run = torch.load(epoch_file, weights_only=False, map_location="cpu")  # a pickle: own files only
    ck = {k: v for k, v in torch.load(base, weights_only=True).items() if k not in ("format", "version")}
    epoch = int(run["epoch"]) + 1
    ck["model"] = network_payload(run["ema"].float())
    ck["score_threshold"] = threshold
    ck["epoch"] = epoch
    ck["train"] = {**ck["train"], "weights": str(epoch_file)}
    save_checkpoint(out, ck)
    return epoch


def val_sections(converted: Path, source: Path, out: Path) -> list[str]:
    strips = pd.read_csv(converted / "strips.csv")
    val = strips.loc[strips["split"] == "val", "image"].tolist()
    if not val:
        raise SystemExit(f"error: {converted / 'strips.csv'} lists no val section")
    with built_aside(out) as partial:
        (partial / "images").mkdir()
        for name in val:
            shutil.copy2(source / "images" / name, partial / "images" / name)
        for table in ("sections.csv", "truth.csv"):
            rows = pd.read_csv(source / table)
            rows[rows["image"].isin(val)].to_csv(partial / table, index=False)
    return val


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("train")
    t.add_argument("data", type=Path)
    t.add_argument("out", type=Path)
    t.add_argument("runs", type=Path)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=60)
    c = sub.add_parser("checkpoint")
    c.add_argument("epoch_file", type=Path)
    c.add_argument("base", type=Path)
    c.add_argument("out", type=Path)
    c.add_argument("--threshold", type=float, default=0.5)
    v = sub.add_parser("val-sections")
    v.add_argument("converted", type=Path)
    v.add_argument("source", type=Path)
    v.add_argument("out", type=Path)
    args = parser.parse_args(argv)
    out = args.out
    if out.exists():
        raise SystemExit(f"error: {out} exists; nothing is overwritten")
    if args.what == "train" and args.runs.exists():  # meltloc's training clears a run folder's old weights
        raise SystemExit(f"error: {args.runs} exists; its run files would be replaced")
    try:
        if args.what == "train":
            train(args.data, out, args.runs, args.seed, args.epochs)
        elif args.what == "checkpoint":
            print(f"wrote {out}: epoch {checkpoint(args.epoch_file, args.base, out, args.threshold)}")
        else:
            print(f"copied {len(val_sections(args.converted, args.source, out))} val sections into {out}")
    except (RuntimeError, pickle.UnpicklingError) as e:
        raise SystemExit(f"error: a file is not a readable torch checkpoint ({e})") from None
    except (OSError, KeyError, pd.errors.ParserError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
