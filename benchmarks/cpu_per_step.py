"""CPU seconds per section for each step of detect, one thread each, and the best that 2 cores could do with them.

    meltloc synth /tmp/bench/bmp --sections 3 --px-per-cm 186 --style classic --format bmp
    git show 0ed3e73:weights/regression.pt > /tmp/regression_seventh.pt   # one network (the seventh round's)
    python benchmarks/cpu_per_step.py /tmp/bench/bmp --weights weights/regression.pt /tmp/regression_seventh.pt \
        weights/yolo.pt [--repeats 3]

For every image of a synth folder (``images/``, ``sections.tab``), ``--repeats`` times: the CPU time
(``time.process_time``, one torch and one OpenCV thread) of reading and decoding it, of finding its core, and
of each checkpoint's prediction and decoding (which cuts the checkpoint's own strip). With every step of a
section on one core and the next section's on the other, perfectly overlapped, a section cannot take less wall
time than half its CPU time: it prints that bound as a ratio to the decode time, the figure the archive speed
goals are set in (README, "Speed on a whole archive").
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meltloc.geometry import find_core  # noqa: E402
from meltloc.heads import load_detector  # noqa: E402
from meltloc.imageio import list_images, read_image  # noqa: E402
from meltloc.manifest import read_manifest  # noqa: E402
from meltloc.section import load_section  # noqa: E402


def cpu(fn):
    t0 = time.process_time()
    value = fn()
    return value, time.process_time() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("core", type=Path, help="a meltloc synth folder (images/, sections.tab)")
    ap.add_argument("--weights", type=Path, nargs="+", required=True)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    manifest = read_manifest(args.core / "sections.tab")
    names = [w.name if [v.name for v in args.weights].count(w.name) == 1 else str(w) for w in args.weights]
    detectors = {name: load_detector(w) for name, w in zip(names, args.weights)}
    rows = []
    for _ in range(args.repeats):
        for path in list_images(args.core / "images"):
            row = {}
            image, row["decode"] = cpu(lambda: read_image(path))
            _, row["core"] = cpu(lambda: find_core(image))
            section = load_section(path, manifest, image=image)
            for name, d in detectors.items():
                _, row[name] = cpu(lambda: d.decode(d.predict(section), d.threshold_for(None)))
            rows.append(row)
    median = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
    print(f"{len(rows)} calls each; median CPU seconds per section: "
          + ", ".join(f"{k} {v:.3f}" for k, v in median.items()))
    for name in detectors:
        total = median["decode"] + median["core"] + median[name]
        print(f"{name}: {total:.3f} s of CPU per section; on 2 cores at best {total / 2:.3f} s = "
              f"{total / 2 / median['decode']:.2f} x decode")


if __name__ == "__main__":
    main()
