"""Two checkpoints' time per section, interleaved on the same sections in one process: the ratio that holds on a noisy machine.

    python benchmarks/head_speed.py /tmp/data2/hard_test --weights weights/regression.pt weights/yolo.pt \
        [--threads 1] [--limit 8] [--repeats 2]

The sections (a synth folder: ``images/``, ``sections.tab``) are read and their cores found once; then, for
each section in turn, each checkpoint predicts and decodes at its operating threshold (cutting its own strip,
as in ``meltloc detect``), the order of the two alternating from section to section and from repeat to
repeat. ``--threads 1`` is how ``detect`` runs the networks on a 2-core machine (one thread per worker
process, or one beside the image decoder). It prints each checkpoint's median seconds per section and the
median and range of the per-section ratio (the second over the first).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meltloc.heads import load_detector  # noqa: E402
from meltloc.imageio import list_images, read_image  # noqa: E402
from meltloc.manifest import read_manifest  # noqa: E402
from meltloc.section import load_section  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("core", type=Path, help="a meltloc synth folder (images/, sections.tab)")
    ap.add_argument("--weights", type=Path, nargs=2, required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    manifest = read_manifest(args.core / "sections.tab")
    sections = [load_section(p, manifest, image=read_image(p)) for p in list_images(args.core / "images")[:args.limit]]
    detectors = [load_detector(w) for w in args.weights]
    for d in detectors:  # first calls build caches; not timed
        d.decode(d.predict(sections[0]), d.threshold_for(None))
    seconds = np.zeros((2, args.repeats, len(sections)))
    for rep in range(args.repeats):
        for i, section in enumerate(sections):
            for k in ((0, 1) if (i + rep) % 2 == 0 else (1, 0)):
                t0 = time.perf_counter()
                detectors[k].decode(detectors[k].predict(section), detectors[k].threshold_for(None))
                seconds[k, rep, i] = time.perf_counter() - t0
    for w, s in zip(args.weights, seconds):
        print(f"{w}: {np.median(s):.3f} s per section (median of {s.size}, {args.threads} thread(s))")
    ratio = (seconds[1] / seconds[0]).ravel()
    print(f"{args.weights[1].name} / {args.weights[0].name}: {np.median(ratio):.2f} x "
          f"(per section {ratio.min():.2f}-{ratio.max():.2f})")


if __name__ == "__main__":
    main()
