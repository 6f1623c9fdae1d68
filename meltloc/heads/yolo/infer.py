"""Inference of the YOLO head: a strip cut into tiles, each tile letterboxed to the network input, the boxes
brought back to strip rows and the tiles merged.

**Inference** (:class:`~meltloc.heads.yolo.YoloHead`): the section's strip at the
checkpoint's scale, cut into the same tiles as convert cuts them, predicted
in batches at ``input_hw`` (the training input: H, W multiples of 32); boxes
go back to strip rows; boxes touching an inner tile edge are dropped (the
overlapping tile holds that layer whole); the tiles are merged by 1-D NMS over
depth, class-agnostic; then image rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from meltloc.formats_yolo import tile_starts
from meltloc.heads.ops1d import nms_1d
from meltloc.heads.yolo.config import YoloConfig

PAD_VALUE = 114  # ultralytics' letterbox grey
# the tiles' memory layout: channels-last is the one oneDNN convolves fastest (the shipped network ~30 % faster
# than in the default layout at one CPU thread; the same boxes up to float rounding)
INPUT_LAYOUT = torch.channels_last


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
        x = torch.from_numpy(np.stack(inputs)).to(device)[:, None].expand(-1, 3, -1, -1)
        x = x.to(dtype=torch.float32, memory_format=INPUT_LAYOUT).div_(255.0)
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
