"""Where the files shipped with meltloc are: the sample core and the trained weights.

In the source tree (editable install, ``python cli.py``), else where
``pip install .`` put them (``<prefix>/share/meltloc/``, see pyproject.toml).
"""

from __future__ import annotations

import sys
import sysconfig
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def shipped(relative: str) -> Path:
    """A shipped file by its path relative to the repository root."""
    for base in (_REPO, Path(sys.prefix) / "share" / "meltloc", Path(sysconfig.get_path("data")) / "share" / "meltloc"):
        if (base / relative).exists():
            return base / relative
    return _REPO / relative


SAMPLE_IMAGES = shipped("datasets/sample/images")
SAMPLE_SECTIONS = shipped("datasets/sample/sections.tab")
SAMPLE_LOG = shipped("datasets/sample/features.csv")
SAMPLE_TRUTH = shipped("datasets/sample/truth.csv")
SAMPLE_AGE_SCALE = shipped("datasets/sample/age_scale_made_up.csv")
DEFAULT_WEIGHTS = shipped("weights/regression.pt")
YOLO_WEIGHTS = shipped("weights/yolo.pt")
END_REFINER_WEIGHTS = shipped("weights/end_refiner.pt")


def end_refiner_file(refine_ends: bool, end_refiner: str | Path | None = None) -> Path | None:
    """The end refiner a run uses (``--refine-ends`` / ``--end-refiner``): ``end_refiner`` when given (it implies
    refining), else the shipped one when ``refine_ends``, else None."""
    if end_refiner is not None:
        return Path(end_refiner)
    return END_REFINER_WEIGHTS if refine_ends else None
