"""Seconds per full-scale section of the YOLO head, split by stage (run by hand; results go in the README).

    python benchmarks/yolo_speed.py IMAGES_DIR SECTIONS_FILE --weights yolo.pt [--limit N] [--threads T]

For every image, in one process: read/decode, core finding, resampling to
the strip, then the YOLO tiles (letterbox, network, NMS, merge). Prints one
line per image and the mean seconds per section of each stage.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from meltloc.heads import load_detector, section_strip  # noqa: E402
from meltloc.geometry import DepthScale, find_core  # noqa: E402
from meltloc.imageio import list_images, read_image  # noqa: E402
from meltloc.manifest import read_manifest  # noqa: E402
from meltloc.heads.yolo.infer import detect_strip  # noqa: E402
from meltloc.section import Section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", type=Path)
    ap.add_argument("sections", type=Path)
    ap.add_argument("--weights", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=0, help="only the first N images")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images = list_images(args.images)[: args.limit or None]
    manifest = read_manifest(args.sections)
    detector = load_detector(args.weights)
    if detector.head != "yolo":
        sys.exit(f"{args.weights} is a '{detector.head}' checkpoint; use benchmarks/detect_speed.py")
    cfg = detector.cfg
    # Warm-up: one strip-sized batch through the network.
    detect_strip(detector.model, np.full((cfg.tile_rows * 4, cfg.width), 100, np.uint8), cfg, 0.5)
    stages = {"read": [], "core": [], "strip": [], "yolo": []}
    for path in images:
        t0 = time.perf_counter()
        im = read_image(path)
        t1 = time.perf_counter()
        bounds = find_core(im)
        t2 = time.perf_counter()
        rec = manifest.find(path.name)
        scale = DepthScale(rec.top_m, rec.bottom_m, bounds.top_row, bounds.bottom_row) if rec is not None else None
        strip = section_strip(Section(path.name, path, im, bounds, scale), cfg.px_per_mm, cfg.width, cfg.inset)
        t3 = time.perf_counter()
        found = detect_strip(detector.model, strip.pixels, cfg, detector.score_threshold)
        t4 = time.perf_counter()
        for key, value in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            stages[key].append(value)
        print(f"{path.name}: {im.shape[0]}x{im.shape[1]} px, strip {strip.pixels.shape[0]} rows, "
              f"{len(found)} detection(s); read {t1 - t0:.2f} s, core {t2 - t1:.2f} s, strip {t3 - t2:.2f} s, "
              f"yolo {t4 - t3:.2f} s", flush=True)
        del im
    total = sum(np.mean(v) for v in stages.values())
    print(f"{len(images)} section(s), torch threads {torch.get_num_threads()}: "
          + ", ".join(f"{k} {np.mean(v):.2f} s" for k, v in stages.items()) + f"; total {total:.2f} s per section")


if __name__ == "__main__":
    main()
