"""COCO detection annotations of the core strips: one JSON per split, ``DIR/coco/{train,val,test}.json``.

* ``images``: one per strip, the whole strip: ``file_name`` is
  ``<stem>.png`` relative to ``DIR/strips`` (``info.image_root``), with
  ``height`` = strip rows and ``width`` = strip columns; ``image`` names the
  original section image.
* ``annotations``: ``bbox = [0, top, width, bottom - top]`` in strip pixel
  coordinates (full strip width x the interval's rows), ``area`` = its area,
  a rectangular polygon as ``segmentation``, ids from 1. Positives have
  ``iscrowd = 0``; ignore regions (``uncertain``, ``bubble_free``) are
  ``iscrowd = 1``, one per category, so COCOeval ignores detections of
  either class in them.
* ``categories``: 1 ``melt_layer``, 2 ``melt_lens`` (the YOLO class + 1).

Boxes are the intervals exactly (no minimum height), so the box IoU that
pycocotools computes equals the 1-D interval IoU.
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path

import numpy as np

from meltloc import MELT_LAYER, MELT_LENS, __version__
from meltloc.atomic import write_text

CATEGORIES = [{"id": 1, "name": MELT_LAYER, "supercategory": "melt"},
              {"id": 2, "name": MELT_LENS, "supercategory": "melt"}]
CATEGORY_ID = {c["name"]: c["id"] for c in CATEGORIES}


def box_annotation(ann_id: int, image_id: int, category_id: int, top: float, bottom: float, width: int,
                   iscrowd: int = 0) -> dict:
    """One full-width box annotation between strip rows ``top`` and ``bottom``."""
    top, bottom = float(top), float(max(bottom, top))
    h = bottom - top
    return {"id": ann_id, "image_id": image_id, "category_id": category_id,
            "bbox": [0.0, round(top, 3), float(width), round(h, 3)], "area": round(float(width) * h, 3),
            "iscrowd": int(iscrowd),
            "segmentation": [[0.0, top, float(width), top, float(width), bottom, 0.0, bottom]]}


def coco_split(strips: list[dict], split: str) -> dict:
    """The COCO dict of one split.

    Args:
        strips: one dict per strip: ``image`` (original name), ``stem``, ``rows``,
            ``width``, ``positives`` ((M, 2) strip rows), ``types`` (M names),
            ``ignore`` ((K, 2) strip rows).
        split: its name (goes into ``info``).
    """
    images, annotations = [], []
    ann_id = 1
    for image_id, s in enumerate(strips, start=1):
        rows, width = int(s["rows"]), int(s["width"])
        images.append({"id": image_id, "file_name": f"{s['stem']}.png", "height": rows, "width": width,
                       "image": s["image"]})
        for (a, b), kind in zip(np.asarray(s["positives"], dtype=np.float64).reshape(-1, 2), s["types"]):
            top, bottom = max(0.0, a), min(float(rows), b)
            if bottom < top:
                continue
            annotations.append(box_annotation(ann_id, image_id, CATEGORY_ID[kind], top, bottom, width))
            ann_id += 1
        for a, b in np.asarray(s["ignore"], dtype=np.float64).reshape(-1, 2):
            top, bottom = max(0.0, a), min(float(rows), b)
            if bottom < top:
                continue
            for cat in CATEGORIES:
                annotations.append(box_annotation(ann_id, image_id, cat["id"], top, bottom, width, iscrowd=1))
                ann_id += 1
    info = {"description": f"meltloc convert: melt layers in core strips ({split} split)",
            "version": __version__, "year": _dt.date.today().year,
            "date_created": _dt.date.today().isoformat(), "image_root": "../strips",
            "contributor": "meltloc"}
    return {"info": info, "licenses": [], "images": images, "annotations": annotations, "categories": CATEGORIES}


def write_coco(path: str | Path, dataset: dict) -> None:
    """Write a COCO dict as JSON, atomically."""
    write_text(path, json.dumps(dataset, separators=(",", ":")))
