"""Where the regression ensemble's time at detect goes, section by section at one torch thread: cutting the
strip, its networks each normalising the strip itself (as before the fifteenth round) and sharing one normalised
strip (now; the answers are checked to be the same tensors), decoding, and the whole prediction and decoding of
each shipped detector.

Rows marked "(before)" undo, in the same run, the sixteenth round's speed-ups: the strip cut by one OpenCV
``INTER_AREA`` resize instead of :func:`meltloc.strips.area_resize` (checked to differ by at most one grey
level), and YOLO's tiles fed in the default layout instead of channels-last. Both ways are warmed up first, and
which of them runs first alternates from section to section. OpenCV and torch run one thread each (CPU time as
``detect`` spends it per image with a worker on each core).

    python benchmarks/regression_parts_speed.py /tmp/data2/hard_test [--limit 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from meltloc.heads import load_detector  # noqa: E402
from meltloc.heads.base import section_strip  # noqa: E402
from meltloc.heads.regression.net import decode_strip, predict_strip, predict_strip_mean  # noqa: E402
from meltloc.imageio import list_images, read_image  # noqa: E402
from meltloc.manifest import read_manifest  # noqa: E402
from meltloc.section import load_section  # noqa: E402


@contextlib.contextmanager
def before():
    """The detectors as they ran before the sixteenth round's speed-ups (see the module's docstring)."""
    opencv = mock.patch("meltloc.strips.area_resize",
                        lambda image, width, n_rows: cv2.resize(image, (width, n_rows), interpolation=cv2.INTER_AREA))
    with opencv, mock.patch("meltloc.heads.yolo.infer.INPUT_LAYOUT", torch.contiguous_format):
        yield


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("core", type=Path, help="a meltloc synth folder (images/, sections.tab)")
    ap.add_argument("--limit", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    manifest = read_manifest(args.core / "sections.tab")
    regression = load_detector(REPO / "weights" / "regression.pt")
    yolo = load_detector(REPO / "weights" / "yolo.pt")
    networks, cfg = [regression.model, *regression.members], regression.cfg
    sections = [load_section(p, manifest, image=read_image(p)) for p in list_images(args.core / "images")[:args.limit]]
    for way in (before, contextlib.nullcontext):  # first calls build caches; not timed
        with way():
            for d in (regression, yolo):
                d.decode(d.predict(sections[0]), d.threshold_for(None))
    seconds: dict[str, list[float]] = {k: [] for k in ("strip (before)", "strip", "networks, each normalising",
                                                       "networks, one normalisation", "decoding",
                                                       "regression ensemble, whole (before)", "YOLO, whole (before)",
                                                       "regression ensemble, whole", "YOLO, whole")}

    def timed(key, call):
        t0 = time.perf_counter()
        out = call()
        seconds[key].append(time.perf_counter() - t0)
        return out

    def the_old_way(section):
        with before():
            old = timed("strip (before)", lambda: section_strip(section, cfg.px_per_mm, cfg.width, cfg.inset))
            for key, d in (("regression ensemble, whole (before)", regression), ("YOLO, whole (before)", yolo)):
                timed(key, lambda: d.decode(d.predict(section), d.threshold_for(None)))
        return old

    for repeat in range(args.repeats):
        for i, section in enumerate(sections):
            old_first = (i + repeat) % 2 == 0
            old = the_old_way(section) if old_first else None
            strip = timed("strip", lambda: section_strip(section, cfg.px_per_mm, cfg.width, cfg.inset))
            answers = timed("networks, each normalising", lambda: [predict_strip(m, strip.pixels) for m in networks])
            probs, boxes = timed("networks, one normalisation", lambda: predict_strip_mean(networks, strip.pixels))
            assert torch.equal(probs, torch.stack([a[0] for a in answers]).mean(dim=0))
            assert torch.equal(boxes, torch.stack([a[1] for a in answers]).mean(dim=0))
            timed("decoding", lambda: decode_strip(probs, boxes, cfg.classes, regression.threshold_for(None),
                                                   cfg.nms_iou))
            for key, d in (("regression ensemble, whole", regression), ("YOLO, whole", yolo)):
                timed(key, lambda: d.decode(d.predict(section), d.threshold_for(None)))
            old = old if old_first else the_old_way(section)
            assert np.abs(strip.pixels.astype(int) - old.pixels.astype(int)).max() <= 1
    for key, values in seconds.items():
        print(f"{key}: {np.median(values):.3f} s (median of {len(values)})")
    for when in (" (before)", ""):
        ratio = np.median(seconds[f"YOLO, whole{when}"]) / np.median(seconds[f"regression ensemble, whole{when}"])
        print(f"YOLO / regression ensemble{when}: {ratio:.2f} x (medians)")


if __name__ == "__main__":
    main()
