"""The YOLO dataset of a ``meltloc convert`` output (``DIR/yolo/``: each section's strip cut along depth into
``tile_rows`` x ``width`` tiles, every interval a full-width box) as ultralytics trains on it: its working
scale and tiling, the run's train list and ``data.yaml``, and the boxes ultralytics' pipeline keeps.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from meltloc.errors import DatasetError
from meltloc.formats_yolo import CLASSES, TileConfig
from meltloc.heads.yolo.config import MIN_BOX_PX, STRIDE, YoloConfig, YoloSettings, train_overrides


def round_up(value: float, multiple: int = STRIDE) -> int:
    return int(math.ceil(value / multiple - 1e-9) * multiple)


def read_tiling(data_dir: Path) -> tuple[int, float]:
    """Tile rows and overlap of a convert output, from ``yolo/tiles.csv`` (convert's defaults if it says nothing)."""
    path = data_dir / "yolo" / "tiles.csv"
    default = TileConfig()
    if not path.is_file():
        return default.rows, default.overlap
    tiles = pd.read_csv(path)
    if tiles.empty:
        return default.rows, default.overlap
    rows = int(tiles["rows"].max())
    steps = [int(s) for _, g in tiles.groupby("image") for s in np.diff(np.sort(g["start"].to_numpy()))]
    steps = [s for s in steps if 0 < s < rows]
    if not steps:
        return rows, default.overlap
    stride = pd.Series(steps).mode().min()  # the regular stride (gaps of dropped tiles and the last tile differ)
    return rows, float(round(1.0 - float(stride) / rows, 6))


def dataset_config(data_dir: str | Path, imgsz: int | None = None) -> YoloConfig:
    """The working scale and tiling of a convert output, and the network input for them.

    Raises:
        DatasetError: not a convert output with a YOLO dataset, or ``imgsz`` too small for its thinnest box.
    """
    from meltloc.strip_dataset import read_strip_table

    data_dir = Path(data_dir)
    table = read_strip_table(data_dir)
    if not (data_dir / "yolo" / "images" / "train").is_dir():
        raise DatasetError("no yolo/images/train: run 'meltloc convert' (it writes the YOLO dataset)", data_dir)
    tile_rows, overlap = read_tiling(data_dir)
    cfg = YoloConfig(px_per_mm=float(table["px_per_mm"].iloc[0]), width=int(table["width"].iloc[0]),
                     tile_rows=tile_rows, tile_overlap=overlap)
    if "inset" in table.columns:
        cfg.inset = float(table["inset"].iloc[0])
    cfg.imgsz = round_up(tile_rows) if imgsz is None else int(imgsz)
    if cfg.imgsz % STRIDE:
        raise DatasetError(f"imgsz {cfg.imgsz} is not a multiple of {STRIDE}")
    r = cfg.tile_scale
    cfg.input_hw = (round_up(cfg.tile_rows * r), round_up(cfg.width * r))
    thinnest = smallest_box_rows(data_dir / "yolo" / "labels" / "train", tile_rows)
    if thinnest is not None:
        cfg.min_box_rows = round(thinnest, 3)
        if thinnest * r <= MIN_BOX_PX:
            raise DatasetError(
                f"at imgsz {cfg.imgsz} the thinnest box ({thinnest:.1f} strip rows) is {thinnest * r:.1f} px high: "
                f"ultralytics drops boxes of 2 px or less in training; use imgsz >= "
                f"{round_up(MIN_BOX_PX * 1.01 * max(tile_rows, cfg.width) / thinnest)} or a larger "
                "'meltloc convert --min-box-rows'", data_dir)
    return cfg


def smallest_box_rows(label_dir: Path, tile_rows: int) -> float | None:
    """The smallest box height, in strip rows, in a folder of YOLO label files (None: no box)."""
    smallest = None
    for path in label_dir.glob("*.txt") if label_dir.is_dir() else []:
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) == 5:
                h = float(parts[4]) * tile_rows
                smallest = h if smallest is None else min(smallest, h)
    return smallest


def split_has_tiles(data_dir: Path, split: str) -> bool:
    folder = data_dir / "yolo" / "images" / split
    return folder.is_dir() and any(folder.iterdir())


def linked_tiles(data_dir: Path, dest: Path) -> Path:
    """``dest`` holding links to the convert output's ``yolo/images/<split>`` and ``yolo/labels/<split>`` folders.

    ultralytics writes its label cache beside the label folders (``labels/train.cache``); reading the tiles
    through these links puts it in ``dest`` instead of the convert output, which training only reads.
    """
    root = (Path(data_dir) / "yolo").resolve()
    for kind in ("images", "labels"):
        for split_dir in sorted(p for p in (root / kind).iterdir() if p.is_dir()) if (root / kind).is_dir() else []:
            link = dest / kind / split_dir.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            link.symlink_to(split_dir, target_is_directory=True)
    return dest


def train_list(data_dir: Path, run_dir: Path, positive_repeats: int = 1, tiles: Path | None = None,
               split: str = "train", name: str | None = None) -> Path:
    """``<name or split>.txt`` in the run folder: every tile of the split once, those holding a box
    ``positive_repeats`` times; paths under ``tiles`` (see :func:`linked_tiles`) when given, else in the convert
    output.

    A list, not a folder: ultralytics resolves a folder's links, not the paths a list names."""
    root = (data_dir / "yolo").resolve()
    listed = tiles if tiles is not None else root
    lines = []
    for image in sorted((root / "images" / split).iterdir()):
        label = root / "labels" / split / (image.stem + ".txt")
        has_box = label.is_file() and label.stat().st_size > 0
        lines += [(listed / "images" / split / image.name).as_posix()] * (
            max(1, int(positive_repeats)) if has_box else 1)
    path = run_dir / f"{name or split}.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_run_data_yaml(data_dir: Path, run_dir: Path, positive_repeats: int = 1) -> Path:
    """A ``data.yaml`` for this run with paths resolved from ``data_dir``, read through links in the run folder
    (:func:`linked_tiles`: ultralytics' label caches land there). Written again on ``--resume``, so a moved
    convert folder still works.

    The train split is :func:`train_list`. Without val tiles, the train tiles stand in (and ultralytics'
    validation is switched off by the caller).
    """
    import yaml

    run_dir.mkdir(parents=True, exist_ok=True)
    tiles = linked_tiles(data_dir, run_dir / "tiles")
    val = "val" if split_has_tiles(data_dir, "val") else "train"
    data = {"path": tiles.as_posix(), "train": train_list(data_dir, run_dir, positive_repeats, tiles).as_posix(),
            "val": train_list(data_dir, run_dir, 1, tiles, val, name="val").as_posix(),
            "names": dict(enumerate(CLASSES))}
    path = run_dir / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def count_kept_labels(data_dir: str | Path, settings: YoloSettings | None = None, split: str = "train",
                      passes: int = 1) -> tuple[int, int]:
    """Boxes that go into and come out of ultralytics' training dataset pipeline with these settings.

    Builds the dataset with ``ultralytics.data.build_yolo_dataset`` and the
    trainer's hyperparameters (augmentation on, as in training) and runs every
    tile through it ``passes`` times.

    Returns:
        (boxes in the label files, boxes out of the pipeline), summed over the passes.
    """
    from meltloc.heads.yolo.env import import_ultralytics

    import_ultralytics()
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset

    settings = settings or YoloSettings()
    data_dir = Path(data_dir)
    cfg = dataset_config(data_dir, settings.imgsz)
    args = get_cfg(overrides={k: v for k, v in train_overrides(settings, cfg, Path("x"), Path("x")).items()
                              if k not in ("data", "project", "name")})
    data = {"names": dict(enumerate(CLASSES)), "nc": len(CLASSES), "channels": 3}
    with tempfile.TemporaryDirectory() as tmp:  # ultralytics' label cache goes there, not into data_dir
        tiles = linked_tiles(data_dir, Path(tmp))
        dataset = build_yolo_dataset(args, str(tiles / "images" / split), settings.batch, data, mode="train",
                                     rect=True, stride=STRIDE)
        return _count_boxes(dataset, passes)


def _count_boxes(dataset, passes: int) -> tuple[int, int]:
    n_in = passes * sum(len(lb["cls"]) for lb in dataset.labels)
    n_out = 0
    for _ in range(passes):
        for i in range(len(dataset)):
            n_out += len(dataset[i]["cls"])
    return n_in, n_out
