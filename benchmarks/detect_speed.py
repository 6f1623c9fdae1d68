"""Detect speed and memory on full-scale sections (run by hand; results go in the README).

    python benchmarks/detect_speed.py IMAGES_DIR SECTIONS_FILE [--weights weights/regression.pt] [--repeat 1]

For every image it times, in one process:
  decode  - read and decode the image only (the physical limit),
  then the detect path split into read/decode, core finding, resampling to
  the strip and the model (+ decoding and NMS),
and reports seconds per section, the ratio of the detect path to decode
alone, and peak / per-image resident memory (to see that nothing grows).
"""

from __future__ import annotations

import argparse
import resource
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
from meltloc.section import Section  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", type=Path)
    ap.add_argument("sections", type=Path)
    ap.add_argument("--weights", type=Path, default=REPO / "weights" / "regression.pt")
    ap.add_argument("--limit", type=int, default=0, help="only the first N images")
    args = ap.parse_args()
    import os

    torch.set_num_threads(max(1, (os.cpu_count() or 2) - 1))  # as meltloc detect does
    images = list_images(args.images)
    if args.limit:
        images = images[: args.limit]
    manifest = read_manifest(args.sections)
    detector = load_detector(args.weights)
    # Warm up (first torch call, allocator).
    first = read_image(images[0])
    b = find_core(first)
    rec = manifest.find(images[0].name)
    detector.detect(Section(images[0].name, images[0], first, b, DepthScale(rec.top_m, rec.bottom_m, b.top_row, b.bottom_row)))
    del first
    decode, stages, rss = [], {"read": [], "core": [], "strip": [], "model": []}, []
    for path in images:
        t0 = time.perf_counter()
        im = read_image(path)
        decode.append(time.perf_counter() - t0)
        del im
        t0 = time.perf_counter()
        im = read_image(path)
        t1 = time.perf_counter()
        bounds = find_core(im)
        t2 = time.perf_counter()
        rec = manifest.find(path.name)
        section = Section(path.name, path, im, bounds, DepthScale(rec.top_m, rec.bottom_m, bounds.top_row, bounds.bottom_row))
        cfg = getattr(detector, "cfg", None)
        if detector.head == "regression":
            from meltloc.heads.regression.net import detect_strip

            strip = section_strip(section, cfg.px_per_mm, cfg.width, cfg.inset)
            t3 = time.perf_counter()
            detect_strip(detector.model, strip.pixels, detector.score_threshold)
            t4 = time.perf_counter()
        else:
            t3 = t2
            detector.detect(section)
            t4 = time.perf_counter()
        stages["read"].append(t1 - t0)
        stages["core"].append(t2 - t1)
        stages["strip"].append(t3 - t2)
        stages["model"].append(t4 - t3)
        del im, section
        rss.append(rss_mb())
    total = np.sum([stages[k] for k in stages], axis=0)
    # The real command: detect_images decodes the next image while the model works on this one.
    import tempfile

    from meltloc.detect import detect_images

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        detect_images(images, detector, Path(tmp) / "d.csv", manifest, show_progress=False)
        pipeline = (time.perf_counter() - t0) / len(images)
    shape = read_image(images[0]).shape
    print(f"{len(images)} sections of about {shape[0]} x {shape[1]} px, head {detector.head}, "
          f"{torch.get_num_threads()} torch threads")
    print(f"decode only        : {np.mean(decode):.3f} s/section")
    for k, v in stages.items():
        print(f"  {k:<17}: {np.mean(v):.3f} s/section")
    print(f"stages in sequence : {np.mean(total):.3f} s/section  (ratio to decode: {np.mean(total) / np.mean(decode):.2f})")
    print(f"meltloc detect     : {pipeline:.3f} s/section  (ratio to decode: {pipeline / np.mean(decode):.2f}; "
          f"decoding overlaps the model)")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS           : {peak:.0f} MB; RSS after each image: first {rss[0]:.0f} MB, last {rss[-1]:.0f} MB, "
          f"max {max(rss):.0f} MB")


if __name__ == "__main__":
    main()
