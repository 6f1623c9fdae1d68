"""``meltloc compare`` with YOLO's decoding replaced by flipped copies of the strip (test-time augmentation), for
the record of the fifteenth round (not kept: README, docs/generalisation_log.md).

    TTA=width python benchmarks/yolo_flip_tta.py compare --data conv_dev_hard24 --images dev_hard24/images \
        --truth dev_hard24/truth.csv --out OUT --weights weights/yolo.pt --quiet

``TTA=width``: the strip and its mirror across the width (2 passes); ``TTA=both``: also the strip upside down and
upside down mirrored (4 passes; upside down, the tiles fall elsewhere). Each pass keeps its boxes down to the
ensemble's floor, and the passes are fused as an ensemble's members are (:func:`meltloc.heads.yolo.ensemble.fuse`:
1-D weighted box fusion, a band's score the sum of its boxes' scores over the number of passes), then cut at the
checkpoint's operating threshold. Every other argument is ``meltloc``'s own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import meltloc.heads.yolo.ensemble as ensemble  # noqa: E402
from meltloc.heads.yolo.infer import detect_strip  # noqa: E402

MODE = os.environ.get("TTA", "width")


def detect_members(models, pixels, cfg, score_threshold, device="cpu"):
    """:func:`meltloc.heads.yolo.ensemble.detect_members` with every network run on the flipped views too."""
    floor = min(ensemble.FLOOR, score_threshold)
    n = pixels.shape[0]
    answers = []
    for model in models:
        answers.append(detect_strip(model, pixels, cfg, floor, device))
        answers.append(detect_strip(model, np.ascontiguousarray(pixels[:, ::-1]), cfg, floor, device))
        if MODE == "both":
            for view in (pixels[::-1], pixels[::-1, ::-1]):
                found = detect_strip(model, np.ascontiguousarray(view), cfg, floor, device)
                answers.append([(name, score, n - b, n - a) for name, score, a, b in found])
    return [f for f in ensemble.fuse(answers, cfg.merge_iou) if f[1] >= score_threshold]


if __name__ == "__main__":
    if MODE not in ("width", "both"):
        sys.exit("TTA must be width or both")
    ensemble.detect_members = detect_members
    from meltloc.cli import main

    sys.argv[0] = "meltloc"
    main()
