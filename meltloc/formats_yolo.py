"""YOLO detection dataset: core strips tiled along depth, 1-D intervals as full-width boxes.

Layout under ``DIR/yolo/`` (ultralytics' own)::

    data.yaml                      path, train, val, test (absolute) and names
    images/{train,val,test}/<stem>_<start>.png   tiles (grey, tile_rows x strip width)
    labels/{train,val,test}/<stem>_<start>.txt   one line per box: "cls xc yc w h" (normalised)
    tiles.csv                      tile, image, split, start, rows, boxes (start = first strip row)

Choices, and why:

* **Tiles**: 640 strip rows (64 mm at 10 px/mm) with 25 % overlap (a stride
  of 480 rows); the last tile ends at the strip's end. A 640 x 64 tile keeps
  scale 1 at ``imgsz=640``, and every layer up to 160 rows (16 mm, thicker
  than the thickest melt layer) lies whole in at least one tile.
* **Boxes** span the full strip width (``xc = 0.5, w = 1``; lenses too, since
  the log gives no lateral position) and are at least 6 rows high (0.6 mm at
  10 px/mm), widened about their centre and kept inside the tile.
  ultralytics' ``box_candidates`` drops training boxes 2 px high or less
  (and those with aspect ratio >= 100) *after* augmentation; with the
  default ``scale=0.5`` a box may shrink to half its height, so 6 rows keep
  3 px > 2. A 64 px-wide box is never near the aspect-ratio limit
  (64 / 3 ~ 21; a 150-row layer gives 150 / 64).
* **Boxes cut by a tile edge** are kept when at least half of the box lies
  in the tile; otherwise the overlapping tile holds it whole.
* **Ignore regions** (``uncertain``, ``bubble_free``): YOLO cannot ignore,
  so a tile touching one is left out of the dataset, in every split (a
  detection there would count as a false positive in ultralytics' own
  validation too); ``meltloc evaluate`` scores the test sections with the
  ignore regions from ``intervals.csv``.
* **Classes**: 0 ``melt_layer``, 1 ``melt_lens``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from meltloc import MELT_LAYER, MELT_LENS
from meltloc.atomic import write_text
from meltloc.imageio import write_image

CLASSES = (MELT_LAYER, MELT_LENS)


@dataclass(frozen=True)
class TileConfig:
    """Tiling of strips for YOLO.

    Attributes:
        rows: strip rows per tile.
        overlap: fraction of a tile shared with the next one.
        min_box_rows: smallest box height in strip rows (see the module docstring).
        min_visible: a box cut by a tile edge is kept when this fraction of it lies in the tile.
    """

    rows: int = 640
    overlap: float = 0.25
    min_box_rows: float = 6.0
    min_visible: float = 0.5

    def __post_init__(self) -> None:
        if self.rows < 8:
            raise ValueError(f"tile rows must be at least 8, not {self.rows}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"tile overlap must be in [0, 1), not {self.overlap}")


def tile_starts(n_rows: int, tile_rows: int, overlap: float) -> list[int]:
    """First strip row of every tile: a stride of ``tile_rows * (1 - overlap)``, the last tile ending at the end.

    >>> tile_starts(1500, 640, 0.25)
    [0, 480, 860]
    """
    if n_rows <= tile_rows:
        return [0]
    stride = max(1, int(round(tile_rows * (1 - overlap))))
    starts = list(range(0, n_rows - tile_rows + 1, stride))
    if starts[-1] + tile_rows < n_rows:
        starts.append(n_rows - tile_rows)
    return starts


def tile_boxes(intervals: np.ndarray, classes: np.ndarray, start: int, tile_rows: int,
               config: TileConfig = TileConfig()) -> list[tuple[int, float, float]]:
    """Boxes of one tile, in tile rows: (class, top, bottom).

    Args:
        intervals: (M, 2) strip rows [from, to] of the positives.
        classes: (M,) class indices.
        start: the tile's first strip row.
        tile_rows: the tile's height.
    """
    out = []
    for (a, b), cls in zip(np.asarray(intervals, dtype=np.float64).reshape(-1, 2), classes):
        a, b = a - start, b - start
        length = max(b - a, 1e-9)
        top, bottom = max(a, 0.0), min(b, float(tile_rows))
        if bottom <= top or (bottom - top) / length < config.min_visible:
            continue
        if bottom - top < config.min_box_rows:
            centre = 0.5 * (top + bottom)
            half = 0.5 * min(config.min_box_rows, tile_rows)
            centre = float(np.clip(centre, half, tile_rows - half))
            top, bottom = centre - half, centre + half
        out.append((int(cls), float(top), float(bottom)))
    return out


def yolo_line(cls: int, top: float, bottom: float, tile_rows: int) -> str:
    """A YOLO label line for a full-width box between tile rows ``top`` and ``bottom``."""
    return f"{cls} 0.5 {0.5 * (top + bottom) / tile_rows:.6f} 1 {(bottom - top) / tile_rows:.6f}"


def parse_yolo_line(line: str, tile_rows: int) -> tuple[int, float, float]:
    """(class, top, bottom) in tile rows from a YOLO label line: the inverse of :func:`yolo_line`."""
    cls, _xc, yc, _w, h = line.split()
    yc, h = float(yc) * tile_rows, float(h) * tile_rows
    return int(cls), yc - h / 2, yc + h / 2


def write_strip_tiles(pixels: np.ndarray, stem: str, image: str, split: str, intervals: np.ndarray,
                      classes: np.ndarray, ignore: np.ndarray, root: Path,
                      config: TileConfig = TileConfig()) -> tuple[list[dict], list[Path], int]:
    """Write the tiles of one strip; return their tiles.csv rows, the files written and the tiles left out.

    Args:
        pixels: the strip (rows x width).
        stem: file stem for the tiles.
        image: the original image name (for tiles.csv).
        split: train, val or test.
        intervals, classes: positives in strip rows and their class indices.
        ignore: (K, 2) ignore regions in strip rows.
        root: ``DIR/yolo``.
    """
    n_rows = pixels.shape[0]
    ignore = np.asarray(ignore, dtype=np.float64).reshape(-1, 2)
    rows, files, dropped = [], [], 0
    for start in tile_starts(n_rows, config.rows, config.overlap):
        height = min(config.rows, n_rows - start)
        if ignore.size and np.any((ignore[:, 1] > start) & (ignore[:, 0] < start + height)):
            dropped += 1
            continue
        name = f"{stem}_{start:06d}"
        boxes = tile_boxes(intervals, classes, start, height, config)
        image_path = root / "images" / split / f"{name}.png"
        label_path = root / "labels" / split / f"{name}.txt"
        write_image(image_path, pixels[start:start + height])
        write_text(label_path, "".join(yolo_line(c, t, b, height) + "\n" for c, t, b in boxes))
        files += [image_path, label_path]
        rows.append({"tile": f"{split}/{name}.png", "image": image, "split": split, "start": start,
                     "rows": height, "boxes": len(boxes)})
    return rows, files, dropped


def write_data_yaml(root: Path) -> Path:
    """``data.yaml`` with absolute paths, for ``ultralytics.YOLO.train(data=...)``."""
    import yaml

    root = Path(root).resolve()
    data: dict = {"path": root.as_posix()}
    for split in ("train", "val", "test"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        data[split] = (root / "images" / split).as_posix()
    data["names"] = dict(enumerate(CLASSES))
    path = root / "data.yaml"
    write_text(path, yaml.safe_dump(data, sort_keys=False))
    return path
