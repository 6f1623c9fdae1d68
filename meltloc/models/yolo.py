"""The YOLO head: ultralytics' detector on tiles of the core strips.

**Training** (``meltloc train --head yolo``) runs ultralytics on the YOLO
dataset of a ``meltloc convert`` output (``DIR/yolo/``: each section's strip
cut along depth into ``tile_rows`` x ``width`` tiles, every interval a
full-width box), from a model YAML (random weights) or a local ``.pt``,
offline (:mod:`meltloc.models.yolo_env`). The trainer's own run folder
(weights, ``results.csv``, ``args.yaml``) goes to ``--runs`` (default
``<out>.runs/``), never into the repository. The checkpoint written to
``out`` holds the trained network as plain data (its model YAML and state
dict, :func:`network_payload`; rebuilt offline by :func:`build_network`, so
loading it runs no code) with meltloc's metadata (working scale, tiling,
input size, classes, training settings, seconds) and the operating score
threshold: the one with the best melt-layer F1 at IoU 0.5 on the val
sections, scored with :func:`meltloc.metrics.evaluate_intervals`. A foreign
ultralytics ``.pt`` (a pickle) as ``--model``, an old checkpoint holding one,
or a ``--resume`` run file this machine's meltloc did not write is refused
unless ``--trust-checkpoint`` is given.

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
layer is 150 / 64). :func:`count_kept_labels` builds batches through
ultralytics' own dataset code with these settings and counts the boxes that
come out against those that went in (tests/test_yolo.py).

**Inference** (:class:`YoloDetector`): the section's strip at the
checkpoint's scale, cut into the same tiles as convert cuts them, predicted
in batches at ``input_hw`` (the training input: H, W multiples of 32); boxes
go back to strip rows; boxes touching an inner tile edge are dropped (the
overlapping tile holds that layer whole); the tiles are merged by 1-D NMS over
depth, class-agnostic; then image rows.
"""

from __future__ import annotations

import math
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from meltloc.checkpoint import save_checkpoint
from meltloc.detectors import Detection, section_strip
from meltloc.errors import CheckpointError, DatasetError, MeltlocError
from meltloc.formats_yolo import CLASSES, TileConfig, tile_starts
from meltloc.models.ops1d import nms_1d
from meltloc.section import Section

HEAD = "yolo"
STRIDE = 32
PAD_VALUE = 114  # ultralytics' letterbox grey
MIN_BOX_PX = 3.0  # ultralytics drops boxes of 2 px or less; keep a pixel of margin
DEFAULT_THRESHOLD = 0.25


@dataclass
class YoloConfig:
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

    @classmethod
    def from_dict(cls, d: dict) -> "YoloConfig":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if "input_hw" in d:
            d["input_hw"] = tuple(int(v) for v in d["input_hw"])
        if "classes" in d:
            d["classes"] = tuple(d["classes"])
        return cls(**d)

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
    val_min_score: float = 0.05
    seed: int = 0
    device: str = "cpu"


AUGMENT_KEYS = ("fliplr", "flipud", "translate", "hsv_v", "scale", "degrees", "shear", "perspective", "mosaic",
                "mixup", "cutmix", "copy_paste", "hsv_h", "hsv_s")


# ----------------------------------------------------------------------------------------------------------------------
# Dataset: the convert output's YOLO part
# ----------------------------------------------------------------------------------------------------------------------

def ultralytics_device(device: str) -> str:
    """torch device name -> ultralytics' (``cuda:1`` -> ``1``; ``cpu``, ``mps`` unchanged)."""
    device = str(device).strip().lower()
    if device == "cuda":
        return "0"
    if device.startswith("cuda:"):
        return device.split(":", 1)[1]
    return device


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


def train_list(data_dir: Path, run_dir: Path, positive_repeats: int = 1) -> Path:
    """``train.txt`` in the run folder: every training tile once, those holding a box ``positive_repeats`` times."""
    root = (data_dir / "yolo").resolve()
    lines = []
    for image in sorted((root / "images" / "train").iterdir()):
        label = root / "labels" / "train" / (image.stem + ".txt")
        has_box = label.is_file() and label.stat().st_size > 0
        lines += [image.as_posix()] * (max(1, int(positive_repeats)) if has_box else 1)
    path = run_dir / "train.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_run_data_yaml(data_dir: Path, run_dir: Path, positive_repeats: int = 1) -> Path:
    """A ``data.yaml`` for this run with paths resolved from ``data_dir`` (so a moved convert folder still works).

    The train split is :func:`train_list`. Without val tiles, the train tiles stand in (and ultralytics'
    validation is switched off by the caller).
    """
    import yaml

    root = (data_dir / "yolo").resolve()
    run_dir.mkdir(parents=True, exist_ok=True)
    val = "val" if split_has_tiles(data_dir, "val") else "train"
    data = {"path": root.as_posix(), "train": train_list(data_dir, run_dir, positive_repeats).as_posix(),
            "val": (root / "images" / val).as_posix(), "names": dict(enumerate(CLASSES))}
    path = run_dir / "data.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


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


def count_kept_labels(data_dir: str | Path, settings: YoloSettings | None = None, split: str = "train",
                      passes: int = 1) -> tuple[int, int]:
    """Boxes that go into and come out of ultralytics' training dataset pipeline with these settings.

    Builds the dataset with ``ultralytics.data.build_yolo_dataset`` and the
    trainer's hyperparameters (augmentation on, as in training) and runs every
    tile through it ``passes`` times.

    Returns:
        (boxes in the label files, boxes out of the pipeline), summed over the passes.
    """
    from meltloc.models.yolo_env import import_ultralytics

    import_ultralytics()
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset

    settings = settings or YoloSettings()
    data_dir = Path(data_dir)
    cfg = dataset_config(data_dir, settings.imgsz)
    args = get_cfg(overrides={k: v for k, v in train_overrides(settings, cfg, Path("x"), Path("x")).items()
                              if k not in ("data", "project", "name")})
    data = {"names": dict(enumerate(CLASSES)), "nc": len(CLASSES), "channels": 3}
    dataset = build_yolo_dataset(args, str(data_dir / "yolo" / "images" / split), settings.batch, data,
                                 mode="train", rect=True, stride=STRIDE)
    n_in = passes * sum(len(lb["cls"]) for lb in dataset.labels)
    n_out = 0
    for _ in range(passes):
        for i in range(len(dataset)):
            n_out += len(dataset[i]["cls"])
    return n_in, n_out


# ----------------------------------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------------------------------

def network_payload(model: torch.nn.Module) -> dict:
    """An ultralytics detection model as plain data: its model YAML (a dict) and its float state dict.

    This is what a meltloc YOLO checkpoint stores (``checkpoint["model"]``); :func:`build_network` rebuilds the
    network from it offline, and nothing in it is a pickled object.
    """
    from meltloc.checkpoint import plain

    model = model.float()
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"yaml": plain(dict(model.yaml)), "state_dict": state}


def build_network(payload: dict, device: str = "cpu", fuse: bool = True) -> torch.nn.Module:
    """The ultralytics detection model rebuilt from :func:`network_payload`: float, fused, in evaluation mode.

    Raises:
        CheckpointError: the YAML or the weights do not make a network.
    """
    import copy

    from meltloc.models.yolo_env import import_ultralytics

    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    try:
        spec = copy.deepcopy(dict(payload["yaml"]))
        model = DetectionModel(cfg=spec, ch=int(spec.get("channels", 3)), nc=spec.get("nc"), verbose=False)
        model.load_state_dict(payload["state_dict"], strict=True)
    except Exception as exc:  # ultralytics and torch raise many kinds
        raise CheckpointError(f"the YOLO network in this checkpoint cannot be rebuilt ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:200]})") from exc
    model = model.float()
    model = model.fuse(verbose=False) if fuse and hasattr(model, "fuse") else model
    return model.to(device).eval()


def unpickle_ultralytics(blob: bytes) -> torch.nn.Module:
    """The model in the bytes of an ultralytics ``.pt`` (a pickle): only with ``--trust-checkpoint``.

    Raises:
        CheckpointError: not trusted (the pickle could run code), or not an ultralytics checkpoint.
    """
    from meltloc.checkpoint import safe_load
    from meltloc.models.yolo_env import import_ultralytics

    import_ultralytics()
    import ultralytics.nn.tasks  # noqa: F401  (the pickled classes)

    ckpt = safe_load(bytes(blob), what="ultralytics checkpoint")
    try:
        return (ckpt.get("ema") or ckpt["model"]).float()
    except Exception as exc:
        raise CheckpointError(f"the YOLO weights cannot be read ({type(exc).__name__}: {exc})") from exc


def load_network(model_field, device: str = "cpu") -> torch.nn.Module:
    """The detection model of a YOLO checkpoint's ``model`` field: the plain payload (rebuilt offline, no code
    runs), or the ultralytics pickle of an old checkpoint (refused unless trusted).

    Raises:
        CheckpointError: neither, or an old pickle without ``--trust-checkpoint``.
    """
    if isinstance(model_field, dict) and "yaml" in model_field and "state_dict" in model_field:
        return build_network(model_field, device)
    if isinstance(model_field, (bytes, bytearray)):
        model = unpickle_ultralytics(bytes(model_field))
        model = model.fuse(verbose=False) if hasattr(model, "fuse") else model
        return model.to(device).eval()
    raise CheckpointError("this yolo checkpoint holds no YOLO network")


def letterbox_tile(tile: np.ndarray, cfg: YoloConfig) -> tuple[np.ndarray, float, int]:
    """A tile (rows x width, uint8) as the network input: resized by ``tile_scale``, padded to ``input_hw``.

    Short tiles (strips shorter than a tile) are padded, not stretched.

    Returns:
        (input_hw uint8 image, scale, top padding in input rows).
    """
    import cv2

    r = cfg.tile_scale
    h, w = tile.shape[:2]
    if r != 1.0:
        tile = cv2.resize(tile, (max(1, round(w * r)), max(1, round(h * r))),
                          interpolation=cv2.INTER_AREA if r < 1 else cv2.INTER_LINEAR)
    H, W = cfg.input_hw
    h, w = tile.shape[:2]
    top, left = max(0, (H - h) // 2), max(0, (W - w) // 2)
    out = np.full((H, W), PAD_VALUE, dtype=np.uint8)
    out[top:top + min(h, H), left:left + min(w, W)] = tile[:H, :W]
    return out, r, top


@torch.no_grad()
def detect_strip(model: torch.nn.Module, pixels: np.ndarray, cfg: YoloConfig, score_threshold: float,
                 device: str = "cpu") -> list[tuple[str, float, float, float]]:
    """Detect intervals in one strip.

    Args:
        model: from :func:`load_network`.
        pixels: (N, W) uint8 strip at the model's working scale.
        cfg: the checkpoint's config.
        score_threshold: lowest score kept.

    Returns:
        ``(class name, score, start row, end row)`` in strip rows, by descending score.
    """
    from ultralytics.utils.nms import non_max_suppression

    n_rows = pixels.shape[0]
    starts = tile_starts(n_rows, cfg.tile_rows, cfg.tile_overlap)
    boxes: list[tuple[float, float, float, int]] = []  # strip rows a, b, score, class
    end2end = bool(getattr(model, "end2end", False))
    for k in range(0, len(starts), cfg.batch):
        chunk = starts[k:k + cfg.batch]
        inputs, metas = [], []
        for s in chunk:
            img, r, top = letterbox_tile(pixels[s:s + cfg.tile_rows], cfg)
            inputs.append(img)
            metas.append((s, r, top, min(cfg.tile_rows, n_rows - s)))
        x = torch.from_numpy(np.stack(inputs)).to(device)[:, None].expand(-1, 3, -1, -1).float() / 255.0
        preds = non_max_suppression(model(x), conf_thres=score_threshold, iou_thres=cfg.nms_iou, agnostic=True,
                                    max_det=300, end2end=end2end)
        for det, (s, r, top, height) in zip(preds, metas):
            det = det.cpu().numpy()
            for x1, y1, x2, y2, score, cls in det[:, :6]:
                a, b = (y1 - top) / r, (y2 - top) / r  # tile rows
                if s > 0 and a <= cfg.edge_rows:
                    continue  # cut by the tile's top edge: the tile above holds it whole
                if s + height < n_rows and b >= height - cfg.edge_rows:
                    continue  # cut by the bottom edge
                a, b = max(0.0, a) + s, min(float(height), b) + s
                if b > a:
                    boxes.append((a, b, float(score), int(cls)))
    if not boxes:
        return []
    arr = torch.tensor(boxes, dtype=torch.float64)
    keep = nms_1d(arr[:, :2], arr[:, 2], cfg.merge_iou)
    out = []
    for i in keep.tolist():
        a, b, score, cls = boxes[i]
        name = cfg.classes[cls] if 0 <= cls < len(cfg.classes) else str(cls)
        out.append((name, score, a, b))
    return out


class YoloDetector:
    """The YOLO head (ultralytics) behind meltloc's detector interface.

    Args:
        checkpoint: a ``yolo`` checkpoint (:func:`meltloc.checkpoint.load_checkpoint`).
        device: torch device.

    Examples:
        >>> from meltloc.detectors import load_detector
        >>> det = load_detector("yolo.pt")          # doctest: +SKIP
        >>> det.detect(section)                     # doctest: +SKIP
    """

    head = HEAD

    def __init__(self, checkpoint: dict, device: str = "cpu"):
        self.checkpoint = checkpoint
        self.cfg = YoloConfig.from_dict(checkpoint["config"])
        self.classes = self.cfg.classes
        self.device = device
        self.model = load_network(checkpoint.get("model"), device)
        self.score_threshold = float(checkpoint.get("score_threshold", DEFAULT_THRESHOLD))

    def detect(self, section: Section, score_threshold: float | None = None) -> list[Detection]:
        """Scored intervals in rows of ``section.image``, by descending score."""
        strip = section_strip(section, self.cfg.px_per_mm, self.cfg.width, self.cfg.inset)
        thr = self.score_threshold if score_threshold is None else score_threshold
        out = []
        for name, score, a, b in detect_strip(self.model, strip.pixels, self.cfg, thr, self.device):
            r0, r1 = strip.to_image_rows([a, b])
            out.append(Detection(name, score, float(r0), float(r1)))
        return out


# ----------------------------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------------------------

def predict_samples(model: torch.nn.Module, samples, cfg: YoloConfig, min_score: float,
                    device: str = "cpu") -> pd.DataFrame:
    """Detections on whole strips (:class:`meltloc.strip_dataset.StripSample`) as a detections table."""
    rows = []
    for smp in samples:
        for name, score, a, b in detect_strip(model, smp.pixels, cfg, min_score, device):
            r0, r1 = smp.to_image_rows([a, b])
            d0, d1 = smp.scale.row_to_depth([r0, r1])
            rows.append({"image": smp.image, "type": name, "score": score, "row_from": r0, "row_to": r1,
                         "depth_from_m": d0, "depth_to_m": d1})
    return pd.DataFrame(rows, columns=["image", "type", "score", "row_from", "row_to", "depth_from_m", "depth_to_m"])


def choose_threshold(pred: pd.DataFrame, truth: pd.DataFrame, lowest: float = 0.05) -> tuple[float, dict]:
    """The score threshold with the best melt-layer F1 at IoU 0.5, and the figures there.

    Ties go to the threshold nearest :data:`DEFAULT_THRESHOLD`.
    """
    from meltloc.metrics import evaluate_intervals

    best_thr, best = DEFAULT_THRESHOLD, {"f1": -1.0}
    for thr in np.round(np.arange(max(lowest, 0.05), 0.951, 0.05), 2):
        overall = evaluate_intervals(pred[pred["score"] >= thr], truth).overall
        f1 = overall["f1"] if np.isfinite(overall["f1"]) else -1.0
        if f1 > best["f1"] + 1e-9 or (abs(f1 - best["f1"]) <= 1e-9
                                      and abs(thr - DEFAULT_THRESHOLD) < abs(best_thr - DEFAULT_THRESHOLD)):
            best_thr, best = float(thr), {**overall, "f1": f1}
    return best_thr, best


def _resolve_model(model: str) -> str:
    """A model YAML name, or a local ``.pt`` (meltloc never downloads weights)."""
    if str(model).endswith(".pt"):
        path = Path(model).expanduser()
        if not path.is_file():
            raise CheckpointError("starting weights not found (meltloc never downloads weights; pass a local .pt "
                                  "or a model YAML such as yolov8n.yaml)", path)
        return str(path.resolve())
    if not str(model).endswith((".yaml", ".yml")):
        raise MeltlocError(f"model '{model}' is neither a model YAML (e.g. yolov8n.yaml, yolo11s.yaml) nor a local .pt")
    return str(model)


def start_model(model_src: str, run_dir: Path):
    """The ultralytics ``YOLO`` training starts from: a model YAML (random weights), a meltloc YOLO checkpoint
    (rebuilt from its YAML and state dict; no code runs), or, only with ``--trust-checkpoint``, a foreign
    ultralytics ``.pt`` (a pickle).

    Raises:
        CheckpointError: a ``.pt`` that is neither a meltloc YOLO checkpoint nor trusted.
    """
    import yaml

    from meltloc.checkpoint import is_safe_file, load_checkpoint, trust_enabled
    from ultralytics import YOLO

    if not str(model_src).endswith(".pt"):
        return YOLO(model_src)
    path = Path(model_src)
    if trust_enabled() and not is_safe_file(path):
        return YOLO(str(path))  # trusted by the user: ultralytics unpickles it
    ck = load_checkpoint(path, expect_head=HEAD)
    network = ck["model"]
    if isinstance(network, (bytes, bytearray)):  # an old meltloc checkpoint: trusted, or refused inside
        network = network_payload(unpickle_ultralytics(bytes(network)))
    if not isinstance(network, dict) or "yaml" not in network:
        raise CheckpointError("this yolo checkpoint holds no YOLO network", path)
    start = build_network(network, fuse=False).train()  # refuses a broken file in one line
    run_dir.mkdir(parents=True, exist_ok=True)
    # ultralytics guesses the model scale from the YAML's file name: keep the original one (e.g. yolov8n.yaml)
    spec = run_dir / Path(str(network["yaml"].get("yaml_file") or "start_model.yaml")).name
    spec.write_text(yaml.safe_dump({k: v for k, v in network["yaml"].items() if k != "yaml_file"}),
                    encoding="utf-8")
    yolo = YOLO(str(spec))
    start.args = yolo.model.args
    yolo.model = start  # the trainer builds from start.yaml (a dict, with its scale) and copies these weights
    yolo.ckpt = {"meltloc_start": str(path)}  # makes ultralytics start from these weights
    return yolo


def _own_files() -> Path:
    from meltloc.models.yolo_env import private_config_dir

    return private_config_dir() / "own-yolo-run-files.txt"


def _register_run_weights(trainer) -> None:
    """Record the hashes of the run files this meltloc just wrote, so that resuming them needs no trust."""
    from meltloc.checkpoint import file_sha256

    wdir = Path(getattr(trainer, "wdir", "") or "")
    hashes = [file_sha256(p) for p in (wdir / "last.pt", wdir / "best.pt") if p.is_file()]
    if hashes:
        with open(_own_files(), "a", encoding="utf-8") as f:
            f.write("".join(h + "\n" for h in hashes))


def _register_callbacks(yolo) -> None:
    for event in ("on_model_save", "on_train_end"):
        yolo.add_callback(event, _register_run_weights)


def check_resumable(last: Path) -> None:
    """ultralytics resumes from its own ``last.pt``, a pickle: allowed when this machine's meltloc wrote that
    very file (its hash is recorded) or with ``--trust-checkpoint``.

    Raises:
        CheckpointError: a foreign run file without trust.
    """
    from meltloc.checkpoint import file_sha256, trust_enabled

    if trust_enabled():
        return
    own = _own_files()
    known = set(own.read_text(encoding="utf-8").split()) if own.is_file() else set()
    if file_sha256(last) not in known:
        raise CheckpointError("not a run file this meltloc wrote: ultralytics' last.pt is a pickle, which could "
                              "run code when loaded: refused; pass --trust-checkpoint only for a file you trust",
                              last)


def default_runs(out: Path) -> Path:
    """Where ultralytics' run files go when the user does not say: ``<out>.runs/`` beside the checkpoint, unless
    that is inside meltloc's own source tree (e.g. ``--out weights/yolo.pt``): then the private cache folder."""
    out = Path(out).resolve()
    source = Path(__file__).resolve().parents[2]
    if (source / "pyproject.toml").is_file() and out.is_relative_to(source):
        from meltloc.models.yolo_env import private_config_dir

        return private_config_dir() / "runs" / (out.name + ".runs")
    return out.with_name(out.name + ".runs")


def _history(run_dir: Path) -> list[dict]:
    path = run_dir / "results.csv"
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    table.columns = [c.strip() for c in table.columns]
    return [{k: (round(float(v), 5) if isinstance(v, (float, np.floating)) else v) for k, v in rec.items()}
            for rec in table.to_dict("records")]


def train(data_dir: str | Path, out: str | Path, settings: YoloSettings | None = None,
          resume: str | Path | None = None) -> dict:
    """Train the YOLO head on a convert output and write the checkpoint to ``out``.

    Args:
        data_dir: a ``meltloc convert`` output (with ``yolo/``).
        out: checkpoint file to write.
        settings: training settings.
        resume: an interrupted run to continue: its ``weights/last.pt`` or its run folder.

    Returns:
        Summary: out, run folder, seconds, epochs, val figures, score threshold, parameters.

    Raises:
        DatasetError: not a convert output, no training tile or box, imgsz too small for the thinnest box.
        CheckpointError: starting weights or resume file not found, or a pickle that is not trusted.
    """
    from meltloc.models.yolo_env import import_ultralytics
    from meltloc.strip_dataset import load_strips

    s = settings or YoloSettings()
    data_dir, out = Path(data_dir), Path(out)
    cfg = dataset_config(data_dir, s.imgsz)
    cfg.model = str(s.model)
    if not split_has_tiles(data_dir, "train"):
        raise DatasetError("the YOLO dataset has no training tile (yolo/images/train is empty)", data_dir)
    if smallest_box_rows(data_dir / "yolo" / "labels" / "train", cfg.tile_rows) is None:
        raise DatasetError("the YOLO training tiles hold no melt layer or lens", data_dir)
    run_dir = (Path(s.runs).expanduser() if s.runs else default_runs(out)).resolve() / "train"
    if s.threads:
        torch.set_num_threads(s.threads)
    validate = split_has_tiles(data_dir, "val")
    model_src = _resolve_model(s.model) if resume is None else None

    import_ultralytics()
    from ultralytics import YOLO

    t0 = time.time()
    if resume is not None:
        last = Path(resume)
        last = last / "weights" / "last.pt" if last.is_dir() else last
        if not last.is_file():
            raise CheckpointError("nothing to resume: pass the run's weights/last.pt or its run folder", last)
        check_resumable(last)
        run_dir = last.resolve().parent.parent
        yolo = YOLO(str(last))
        if not (yolo.ckpt and yolo.ckpt.get("epoch", -1) >= 0 and yolo.ckpt.get("optimizer") is not None):
            raise CheckpointError("this run finished (ultralytics keeps no optimizer state at the end): nothing to "
                                  "resume; train again with more --epochs", last)
        _register_callbacks(yolo)
        yolo.train(resume=True)
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir / "weights", ignore_errors=True)  # no stale best.pt from an earlier run
        data_yaml = write_run_data_yaml(data_dir, run_dir, s.positive_repeats)
        yolo = start_model(model_src, run_dir)
        _register_callbacks(yolo)
        yolo.train(**train_overrides(s, cfg, data_yaml, run_dir, validate))
    train_seconds = time.time() - t0

    weights = run_dir / "weights" / ("best.pt" if (run_dir / "weights" / "best.pt").is_file() else "last.pt")
    if not weights.is_file() or not isinstance(getattr(yolo, "model", None), torch.nn.Module):
        raise CheckpointError("ultralytics wrote no weights", run_dir / "weights")
    network = network_payload(yolo.model)  # ultralytics reloaded its own best.pt into it after training
    model = build_network(network, s.device)
    n_params = sum(p.numel() for p in model.parameters())

    # The operating threshold: the F1-best on the val sections.
    val_set = load_strips(data_dir, cfg.classes, ("val",))
    threshold, val = DEFAULT_THRESHOLD, {}
    if val_set:
        intervals = pd.read_csv(data_dir / "intervals.csv")
        truth = intervals[intervals["image"].isin([v.image for v in val_set])].reset_index(drop=True)
        pred = predict_samples(model, val_set, cfg, s.val_min_score, s.device)
        threshold, val = choose_threshold(pred, truth, s.val_min_score)
    seconds = time.time() - t0
    history = _history(run_dir)
    settings_dict = asdict(s)
    settings_dict["runs"] = str(run_dir.parent)
    payload = {
        "head": HEAD, "config": cfg.to_dict(), "model": network, "score_threshold": threshold,
        "train": {**settings_dict, "data": str(data_dir.resolve()), "run": str(run_dir), "weights": weights.name,
                  "ultralytics_args": train_overrides(s, cfg, run_dir / "data.yaml", run_dir, validate),
                  "history": history, "seconds": seconds, "train_seconds": train_seconds, "parameters": n_params,
                  "n_train_tiles": len(list((data_dir / "yolo" / "images" / "train").glob("*"))),
                  "n_val_sections": len(val_set), "threshold_val_f1": val.get("f1", float("nan")),
                  "val": {k: val[k] for k in ("f1", "precision", "recall", "map", "boundary_mm") if k in val}},
        "epoch": len(history), "best": {"weights": weights.name},
    }
    import ultralytics

    payload["train"]["ultralytics_version"] = ultralytics.__version__
    save_checkpoint(out, payload)
    return {"out": str(out), "run": str(run_dir), "seconds": seconds, "epochs": len(history), "val": val,
            "score_threshold": threshold, "parameters": n_params, "history": history}


def train_cli(data, out, head: str = HEAD, seed: int = 0, device: str = "cpu", resume=None, epochs=None,
              batch=None, **options) -> dict:
    """``meltloc train --head yolo``: train with the default settings, overridden by ``options``.

    Options are the fields of :class:`YoloSettings` (e.g. ``model``, ``imgsz``, ``runs``, ``patience``).

    Raises:
        MeltlocError: an option the YOLO head does not have; see also :func:`train`.
    """
    settings = YoloSettings(seed=seed, device=device)
    if epochs is not None:
        settings.epochs = int(epochs)
    if batch is not None:
        settings.batch = int(batch)
    known = {f.name for f in fields(YoloSettings)}
    for name, value in options.items():
        if value is None:
            continue
        if name not in known:
            raise MeltlocError(f"the yolo head has no option '{name}' (it has: {', '.join(sorted(known))})")
        setattr(settings, name, value)
    if settings.runs is not None:
        settings.runs = str(settings.runs)
    if settings.model is not None:
        settings.model = str(settings.model)
    result = train(data, out, settings, resume=resume)
    val = result["val"]
    nan = float("nan")
    result["message"] = (f"wrote {out} ({result['epochs']} epochs; val F1 {val.get('f1', nan):.3f} at score >= "
                         f"{result['score_threshold']:.2f}, mean AP {val.get('map', nan):.3f}, boundary "
                         f"{val.get('boundary_mm', nan):.3f} mm; {result['seconds'] / 60:.1f} min, "
                         f"{result['parameters']:,} parameters; ultralytics run in {result['run']})")
    return result
