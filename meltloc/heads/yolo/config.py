"""Configuration of the YOLO head: what inference needs (:class:`YoloConfig`, stored in checkpoints), the
training settings (:class:`YoloSettings`) and their translation into ultralytics' training arguments
(:func:`train_overrides`).

**Thin layers.** A 0.5 mm layer is 5 strip rows at 10 px/mm; convert makes
every box at least 6 rows high (``min_box_rows``). ultralytics drops a box
after augmentation when it is 2 px or less high or wide, when its aspect
ratio reaches 100, or when less than 10 % of its area is left
(``RandomPerspective.box_candidates``). So the training here:

* keeps the tiles at their own size: ``rect=True`` with all tiles the same
  shape (ultralytics still shuffles them), so a 640 x 64 tile is a
  640 x 64 input, not a 640 x 640 letterbox that is 90 % padding, and the
  default ``imgsz`` is the tile height (scale 1: a 6-row box stays 6 px);
* switches off every augmentation that changes heights: ``scale=0``,
  ``degrees=0``, ``shear=0``, ``perspective=0``, no ``mosaic``, ``mixup``,
  ``cutmix`` or ``copy_paste`` (mosaic would also squeeze 640 x 64 tiles into
  a square canvas);
* keeps those that do not: up-down and left-right flips (a layer is a layer
  either way up), brightness (``hsv_v``; hue and saturation mean nothing in
  grey images) and a small translation (boxes cut at the tile edge are
  clipped, as at inference);
* refuses an ``imgsz`` at which the smallest box would be 3 px or less.

A 64-px-wide box is far from the aspect-ratio limit (64 / 6 ~ 11; a 15 mm
layer is 150 / 64). :func:`~meltloc.heads.yolo.data.count_kept_labels` builds batches through
ultralytics' own dataset code with these settings and counts the boxes that
come out against those that went in (tests/test_yolo.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from meltloc.errors import MeltlocError
from meltloc.formats_yolo import CLASSES
from meltloc.heads.base import PlainConfig

HEAD = "yolo"
STRIDE = 32
MIN_BOX_PX = 3.0  # ultralytics drops boxes of 2 px or less; keep a pixel of margin
DEFAULT_THRESHOLD = 0.25


@dataclass
class YoloConfig(PlainConfig):
    """What inference needs (``checkpoint["config"]``).

    Attributes:
        px_per_mm, width, inset: the strips' working scale (from the convert output).
        tile_rows, tile_overlap: the tiling of the strips (from ``yolo/tiles.csv``).
        min_box_rows: smallest box height the dataset was written with (convert's ``--min-box-rows``).
        imgsz: ultralytics' ``imgsz`` in training (the input's long side).
        input_hw: the network input (rows, columns) a tile is letterboxed to.
        classes: class names by index.
        model: the model YAML or ``.pt`` training started from.
        nms_iou: IoU of ultralytics' NMS within a tile.
        merge_iou: IoU of the 1-D NMS that merges the tiles.
        edge_rows: a box this close to an inner tile edge is dropped (cut by the tile).
        batch: tiles per forward pass.
    """

    px_per_mm: float = 10.0
    width: int = 64
    inset: float = 0.05
    tile_rows: int = 640
    tile_overlap: float = 0.25
    min_box_rows: float = 6.0
    imgsz: int = 640
    input_hw: tuple[int, int] = (640, 64)
    classes: tuple[str, ...] = CLASSES
    model: str = "yolov8n.yaml"
    nms_iou: float = 0.5
    merge_iou: float = 0.3
    edge_rows: float = 2.0
    batch: int = 32

    def to_dict(self) -> dict:
        d = asdict(self)
        d["input_hw"], d["classes"] = list(self.input_hw), list(self.classes)
        return d

    @property
    def tile_scale(self) -> float:
        """Input pixels per strip pixel (ultralytics resizes a tile's long side to ``imgsz``)."""
        return self.imgsz / max(self.tile_rows, self.width)


@dataclass
class YoloSettings:
    """Training settings of the YOLO head (``checkpoint["train"]``); the defaults reach the README figures.

    Attributes:
        model: model YAML (random weights: ``yolov8n.yaml``, ``yolov8s.yaml``, ``yolo11n.yaml``, ...)
            or a local ``.pt`` to start from (never downloaded).
        imgsz: training ``imgsz`` (input long side, a multiple of 32); None: the tile height.
        epochs, batch, patience, optimizer, lr0, cos_lr, warmup_epochs: ultralytics' training arguments.
        runs: folder of ultralytics' run files; None: ``<out>.runs/`` (see :func:`default_runs`).
        fliplr, flipud, translate, hsv_v: the augmentations that keep box heights.
        scale, degrees, shear, perspective, mosaic, mixup, cutmix, copy_paste, hsv_h, hsv_s: off (0) by
            default: they change heights or mean nothing for grey tiles (see the module docstring).
        amp: mixed precision (ultralytics' AMP check downloads a model, so off unless asked).
        threads: torch threads (0: torch's default).
        positive_repeats: each training tile holding a box is listed this many times per epoch (most tiles
            are background: ~1 in 8 holds a layer in the synthetic cores).
        look: share of the training tiles given another look by the regression head's pixel augmentation (faded
            layers, gain, haze, gamma, vignetting, column patterns, row flicker, blur, noise; see
            :mod:`meltloc.heads.yolo.look`); 0: ultralytics' own augmentation only.
        insert_layers: share of the training tiles that get one or two melt layers drawn in, with their boxes
            (faint, thick, diffuse, tilted: as the regression head's ``TrainSettings.insert_layers``); 0.5 by
            default since the tenth round (README, "The tenth round").
        insert_breaks: share of the training tiles that get up to three core breaks drawn in, unlabelled (0.5).
        val_min_score: detections kept when choosing the operating threshold on the val split.
        seed, device: as for every head.
    """

    model: str = "yolov8n.yaml"
    imgsz: int | None = None
    epochs: int = 60
    batch: int = 16
    patience: int = 100
    optimizer: str = "AdamW"
    lr0: float = 0.002
    cos_lr: bool = True
    warmup_epochs: float = 2.0
    runs: str | None = None
    fliplr: float = 0.5
    flipud: float = 0.5
    translate: float = 0.1
    hsv_v: float = 0.4
    scale: float = 0.0
    degrees: float = 0.0
    shear: float = 0.0
    perspective: float = 0.0
    mosaic: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    copy_paste: float = 0.0
    hsv_h: float = 0.0
    hsv_s: float = 0.0
    amp: bool = False
    threads: int = 0
    positive_repeats: int = 3
    look: float = 0.0
    insert_layers: float = 0.5
    insert_breaks: float = 0.5
    val_min_score: float = 0.05
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        shares = ("look", "insert_layers", "insert_breaks", "fliplr", "flipud", "mosaic", "mixup", "cutmix",
                  "copy_paste")
        fractions = ("translate", "hsv_v")  # of the tile's size, of its brightness
        for name in (*shares, *fractions, "positive_repeats"):
            value = getattr(self, name)
            try:
                number = float(value)
            except (TypeError, ValueError):
                raise MeltlocError(f"YOLO setting {name}={value!r}: not a number") from None
            if not math.isfinite(number):
                raise MeltlocError(f"YOLO setting {name}={value}: not a finite number")
            if name == "positive_repeats":
                if number < 1 or number != int(number):
                    raise MeltlocError(f"YOLO setting positive_repeats={value}: a whole number, at least 1")
                setattr(self, name, int(number))
            elif not 0.0 <= number <= 1.0:
                what = "a share of the training tiles" if name in shares else "a fraction"
                raise MeltlocError(f"YOLO setting {name}={value}: {what}, from 0 to 1")
            else:
                setattr(self, name, number)  # "0.5" from a text file is 0.5 from here on


AUGMENT_KEYS = ("fliplr", "flipud", "translate", "hsv_v", "scale", "degrees", "shear", "perspective", "mosaic",
                "mixup", "cutmix", "copy_paste", "hsv_h", "hsv_s")


def ultralytics_device(device: str) -> str:
    """torch device name -> ultralytics' (``cuda:1`` -> ``1``; ``cpu``, ``mps`` unchanged)."""
    device = str(device).strip().lower()
    if device == "cuda":
        return "0"
    if device.startswith("cuda:"):
        return device.split(":", 1)[1]
    return device


def train_overrides(settings: YoloSettings, cfg: YoloConfig, data_yaml: Path, run_dir: Path,
                    validate: bool = True) -> dict:
    """ultralytics' training arguments for these settings (see the module docstring for the augmentation)."""
    pretrained = str(settings.model).endswith(".pt")
    return {
        "data": str(data_yaml), "epochs": settings.epochs, "batch": settings.batch, "imgsz": cfg.imgsz,
        "rect": True, "device": ultralytics_device(settings.device), "workers": 0, "seed": settings.seed,
        "deterministic": True, "optimizer": settings.optimizer, "lr0": settings.lr0, "cos_lr": settings.cos_lr,
        "warmup_epochs": settings.warmup_epochs, "patience": settings.patience, "amp": settings.amp,
        "pretrained": pretrained, "plots": False, "val": validate, "save": True, "project": str(run_dir.parent),
        "name": run_dir.name, "exist_ok": True, "close_mosaic": 0, "verbose": False, "single_cls": False,
        **{k: getattr(settings, k) for k in AUGMENT_KEYS},
    }
