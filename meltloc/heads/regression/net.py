"""The start/stop regression head: a 1-D dense interval detector over core strips.

What the seed project asked for: instead of one probability per slice, a
last layer that says where a melt layer starts and stops. The design follows
FCOS/ActionFormer in one dimension:

* **Input**: a core strip (:mod:`meltloc.strips`) at ``px_per_mm`` rows per
  millimetre of core (default 10: 0.1 mm per row, so a 0.5 mm layer spans 5
  rows and boundaries can be placed to ~0.1 mm) and ``width`` columns
  (default 64 across ~8 cm). Each strip is divided by its local brightness
  (the 75th percentile of the row means over +/- 20 mm of core), so exposure,
  gain, illumination along the core and bubble density do not matter and a
  faint layer is as dark, relative to the ice around it, wherever it lies.
  (Checkpoints of the first round divide by the strip's median instead.)
* **2-D stem** (3 convolutions): squeezes the width 64 -> 16 -> 8 -> 4 and
  halves the depth once, then pools across the width into a sequence along
  depth at stride 2 (0.2 mm): the mean, the maximum (so a lens covering part
  of the width still shows) and a *tilt-steered* mean (for each tilt of
  -6..6 mm across the strip, the four column groups shifted back along it and
  averaged; the best tilt per channel), so that a thin tilted layer, which a
  plain mean smears over several millimetres, adds up. (Checkpoints from
  before it pool with the mean and the maximum only.) ``stem_blocks`` > 0
  keeps 16 columns (5 mm each) after the depth halving and adds that many
  residual 2-D blocks there, so the stem can see a core break's jags across
  the width before pooling (off by default; about 2.3 x the network's time
  with one block).
* **1-D encoder-decoder**: residual dilated convolutions at strides 2, 4, 8
  and 16 and back up to stride 2 with skip connections. The receptive field is
  about +/- 60 mm of core: enough to see a 15 mm layer with the ice on both
  sides of it, which is what tells a melt layer from a dark exposure band.
* **Head**, per position (every 2 strip rows): one logit per class
  (``melt_layer``, ``melt_lens``) and the distances to the start and the stop
  of the interval the position lies in, in strip rows.
* **Training**: positions inside a true interval are positives; positions in
  ignore regions (``uncertain``, ``bubble_free``) get no classification loss.
  Sigmoid focal loss for the scores, 1-D IoU loss plus L1 (in mm) for the
  distances.
* **Decoding**: candidates above a score threshold become intervals
  ``[t - d_start, t + d_end]``; 1-D NMS keeps the best; each kept interval's
  boundaries are the score-weighted mean of the candidates that agree with it
  (IoU > 0.5, at least half its score), which averages the regression noise
  of many positions.

About 0.2 M parameters; a full-scale section (16,500 strip rows) runs in a
few tens of milliseconds on a laptop CPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from meltloc import MELT_LAYER, MELT_LENS
from meltloc.heads.ops1d import decode_distances, iou_1d, nms_1d
from meltloc.heads.base import PlainConfig

_PAD_MULTIPLE = 32


@dataclass
class RegressionConfig(PlainConfig):
    """Architecture and working scale of the regression head (stored in checkpoints)."""

    px_per_mm: float = 10.0
    width: int = 64
    inset: float = 0.05
    classes: tuple[str, ...] = (MELT_LAYER, MELT_LENS)
    channels: tuple[int, ...] = (24, 32, 48, 64)
    stride: int = 2
    distance_scale: float = 8.0
    score_threshold: float = 0.05
    nms_iou: float = 0.3
    normalisation: str = "local"
    norm_window_mm: float = 41.0
    pooling: str = "steered"
    steer_mm: tuple[float, ...] = tuple(float(t) for t in range(-6, 7))
    stem_blocks: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "RegressionConfig":
        # Checkpoints from before local normalisation divide by the median; before steered pooling, mean and max.
        return super().from_dict({"normalisation": "median", "pooling": "mean_max", **dict(d)})


def normalise_strip(pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Strip pixels (uint8, rows x width) -> float tensor divided by the strip's median, clipped to [0, 4]."""
    x = torch.as_tensor(np.asarray(pixels), dtype=torch.float32) / 255.0
    level = torch.quantile(x[:: max(1, x.shape[0] // 4096)].flatten(), 0.5).clamp(min=0.02)
    return (x / level).clamp(0, 4)


def normalise_local(pixels: np.ndarray | torch.Tensor, window_rows: int) -> torch.Tensor:
    """Strip pixels (uint8, rows x width) -> float tensor divided by the local brightness, clipped to [0, 4].

    The local brightness of a row is the 75th percentile of the row means within
    ``window_rows`` around it (dark bands up to ~3/4 of the window do not pull it
    down), computed every 5 rows and interpolated.
    """
    x = torch.as_tensor(np.asarray(pixels), dtype=torch.float32) / 255.0
    h = x.shape[0]
    step = 5
    profile = x.mean(dim=1)
    n = (h + step - 1) // step
    coarse = F.pad(profile[None, None], (0, n * step - h), mode="replicate").reshape(n, step).mean(dim=1)
    half = max(1, window_rows // (2 * step))
    padded = F.pad(coarse[None, None], (half, half), mode="replicate")[0, 0]
    level = torch.quantile(padded.unfold(0, 2 * half + 1, 1), 0.75, dim=1)            # (n,)
    level = F.interpolate(level[None, None], size=h, mode="linear", align_corners=False)[0, 0]
    return (x / level.clamp(min=0.02)[:, None]).clamp(0, 4)


def normalise_for(cfg: "RegressionConfig", pixels) -> torch.Tensor:
    """The head's input normalisation, as its config names it."""
    if cfg.normalisation == "local":
        return normalise_local(pixels, int(round(cfg.norm_window_mm * cfg.px_per_mm)))
    return normalise_strip(pixels)


class _Conv2d(nn.Sequential):
    def __init__(self, c_in, c_out, kernel, stride, padding):
        super().__init__(nn.Conv2d(c_in, c_out, kernel, stride, padding, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(inplace=True))


class _Res2d(nn.Module):
    """Residual block of two 3 x 3 convolutions over (depth, width), dilated along depth."""

    def __init__(self, channels: int, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=(dilation, 1), dilation=(dilation, 1), bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=(dilation, 1), dilation=(dilation, 1), bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(x + self.bn2(self.conv2(y)), inplace=True)


class _Res1d(nn.Module):
    """Residual block: two dilated 1-D convolutions."""

    def __init__(self, channels: int, dilation: int = 1, kernel: int = 5):
        super().__init__()
        pad = dilation * (kernel // 2)
        self.conv1 = nn.Conv1d(channels, channels, kernel, padding=pad, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm1d(channels)
        self.conv2 = nn.Conv1d(channels, channels, kernel, padding=pad, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm1d(channels)

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)), inplace=True)
        return F.relu(x + self.bn2(self.conv2(y)), inplace=True)


class _Down1d(nn.Sequential):
    def __init__(self, c_in, c_out, dilations):
        super().__init__(nn.Conv1d(c_in, c_out, 3, stride=2, padding=1, bias=False), nn.BatchNorm1d(c_out),
                         nn.ReLU(inplace=True), *[_Res1d(c_out, d) for d in dilations])


class RegressionNet(nn.Module):
    """Strip (B, 1, H, W) -> class logits (B, C, H/stride) and distances (B, 2, H/stride) in strip rows."""

    def __init__(self, cfg: RegressionConfig):
        super().__init__()
        c0, c1, c2, c3 = cfg.channels
        self.cfg = cfg
        if cfg.stem_blocks:  # a deeper stem: residual 2-D blocks at 16 columns (5 mm each), where a break's jags show
            self.stem = nn.Sequential(
                _Conv2d(1, c0 // 2, (3, 4), (1, 4), (1, 0)),
                _Conv2d(c0 // 2, c0, 3, (2, 1), 1),
                *[_Res2d(c0, 2 ** i) for i in range(cfg.stem_blocks)],
                _Conv2d(c0, c0, 3, (1, 2), 1),
                _Conv2d(c0, c0, 3, (1, 2), 1),
            )
        else:
            self.stem = nn.Sequential(
                _Conv2d(1, c0 // 2, (3, 4), (1, 4), (1, 0)),
                _Conv2d(c0 // 2, c0, 3, (2, 2), 1),
                _Conv2d(c0, c0, 3, (1, 2), 1),
            )
        pooled = 3 * c0 if cfg.pooling == "steered" else 2 * c0
        self.squeeze = nn.Sequential(nn.Conv1d(pooled, c0, 1, bias=False), nn.BatchNorm1d(c0), nn.ReLU(inplace=True))
        self.enc0 = _Res1d(c0, 1)
        self.enc1 = _Down1d(c0, c1, (1, 2))
        self.enc2 = _Down1d(c1, c2, (2, 4))
        self.enc3 = _Down1d(c2, c3, (4, 8))
        self.lat2 = nn.Conv1d(c3, c2, 1)
        self.dec2 = _Res1d(c2, 2)
        self.lat1 = nn.Conv1d(c2, c1, 1)
        self.dec1 = _Res1d(c1, 1)
        self.lat0 = nn.Conv1d(c1, c0, 1)
        self.dec0 = _Res1d(c0, 1)
        self.cls_head = nn.Sequential(nn.Conv1d(c0, c0, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv1d(c0, len(cfg.classes), 3, padding=1))
        self.reg_head = nn.Sequential(nn.Conv1d(c0, c0, 3, padding=1), nn.ReLU(inplace=True),
                                      nn.Conv1d(c0, 2, 3, padding=1))
        nn.init.constant_(self.cls_head[-1].bias, -4.6)  # prior 0.01: few positions are melt

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args: x (B, 1, H, W), H a multiple of 32. Returns logits (B, C, H/2), distances (B, 2, H/2)."""
        f = self.stem(x)                                       # (B, c0, H/2, W/16)
        if self.cfg.pooling == "steered":
            f = torch.cat([f.mean(dim=3), f.amax(dim=3), self._steered(f)], dim=1)   # (B, 3 c0, H/2)
        else:
            f = torch.cat([f.mean(dim=3), f.amax(dim=3)], dim=1)   # (B, 2 c0, H/2)
        e0 = self.enc0(self.squeeze(f))                        # stride 2
        e1 = self.enc1(e0)                                     # stride 4
        e2 = self.enc2(e1)                                     # stride 8
        e3 = self.enc3(e2)                                     # stride 16
        d2 = self.dec2(e2 + F.interpolate(self.lat2(e3), size=e2.shape[-1], mode="linear", align_corners=False))
        d1 = self.dec1(e1 + F.interpolate(self.lat1(d2), size=e1.shape[-1], mode="linear", align_corners=False))
        d0 = self.dec0(e0 + F.interpolate(self.lat0(d1), size=e0.shape[-1], mode="linear", align_corners=False))
        logits = self.cls_head(d0)
        distances = F.softplus(self.reg_head(d0)) * self.cfg.distance_scale
        return logits, distances

    def _steered(self, f: torch.Tensor) -> torch.Tensor:
        """Tilt-steered pooling across the width: for each tilt in ``steer_mm`` (the shift of a boundary from one
        side of the strip to the other), the mean over the column groups of the features shifted back along that
        tilt; the largest of those means per channel. A thin tilted band, smeared by a plain mean across the width,
        adds up where the tilt matches."""
        b, c, n, g = f.shape
        x = (torch.arange(g, dtype=torch.float32) + 0.5) / g - 0.5                    # group centres, -0.5..0.5
        rows_per_mm = self.cfg.px_per_mm / self.cfg.stride
        shifts = [[int(round(t * float(xg) * rows_per_mm)) for xg in x] for t in self.cfg.steer_mm]
        pad = max(1, max(abs(v) for row in shifts for v in row))
        padded = F.pad(f.permute(0, 1, 3, 2).reshape(b, c * g, n), (pad, pad), mode="replicate").reshape(b, c, g, -1)
        best = None
        for row in shifts:
            mean = sum(padded[:, :, j, pad + s:pad + s + n] for j, s in enumerate(row)) / g
            best = mean if best is None else torch.maximum(best, mean)
        return best

    def centers(self, n: int, device=None) -> torch.Tensor:
        """Strip-row centres of the n output positions."""
        s = self.cfg.stride
        return torch.arange(n, device=device, dtype=torch.float32) * s + s / 2


# ---------------------------------------------------------------------- targets and losses
@dataclass
class Targets:
    """Per-position training targets of one strip crop.

    Attributes:
        labels: (N,) class index, -1 for background.
        intervals: (N, 2) the interval each positive position lies in (strip rows).
        ignore: (N,) True where the classification loss is skipped.
    """

    labels: torch.Tensor
    intervals: torch.Tensor
    ignore: torch.Tensor


def label_positions(centers: torch.Tensor, intervals: torch.Tensor, classes: torch.Tensor,
                    ignore_regions: torch.Tensor, stride: int) -> Targets:
    """Assign positions to true intervals.

    A position is positive for an interval when its centre lies inside it; an
    interval shorter than the stride still gets its nearest position. Where
    intervals overlap the shortest wins. Positions inside an ignore region
    that are not positive get no classification loss.

    Args:
        centers: (N,) position centres (strip rows).
        intervals: (M, 2) true intervals (strip rows).
        classes: (M,) class index of each.
        ignore_regions: (K, 2) intervals to ignore.
        stride: output stride in strip rows.
    """
    n = centers.numel()
    labels = torch.full((n,), -1, dtype=torch.long)
    assigned = torch.zeros((n, 2))
    best_len = torch.full((n,), float("inf"))
    for (a, b), k in zip(intervals.tolist(), classes.tolist()):
        inside = (centers >= a) & (centers <= b)
        if not inside.any():
            i = int(min(max(round(((a + b) / 2 - stride / 2) / stride), 0), n - 1))
            if centers[i] < a - stride or centers[i] > b + stride:
                continue
            inside = torch.zeros(n, dtype=torch.bool)
            inside[i] = True
        length = b - a
        take = inside & (length < best_len)
        labels[take] = int(k)
        assigned[take] = torch.tensor([a, b], dtype=torch.float32)
        best_len[take] = length
    ignore = torch.zeros(n, dtype=torch.bool)
    for a, b in ignore_regions.tolist():
        ignore |= (centers >= a - stride) & (centers <= b + stride)
    ignore &= labels < 0
    return Targets(labels, assigned, ignore)


def sigmoid_focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """Element-wise focal loss (Lin et al. 2017).

    Args:
        logits: (..., C) raw scores.
        targets: (..., C) 0/1 float targets.

    Returns:
        (..., C) loss, unreduced.
    """
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    return loss * (alpha * targets + (1 - alpha) * (1 - targets))


def iou_loss_1d(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Generalised IoU loss of matching 1-D intervals.

    Args:
        pred: (N, 2) predicted intervals.
        target: (N, 2) true intervals.

    Returns:
        (N,) ``1 - GIoU``.
    """
    inter = (torch.minimum(pred[:, 1], target[:, 1]) - torch.maximum(pred[:, 0], target[:, 0])).clamp(min=0)
    union = (pred[:, 1] - pred[:, 0]) + (target[:, 1] - target[:, 0]) - inter
    hull = torch.maximum(pred[:, 1], target[:, 1]) - torch.minimum(pred[:, 0], target[:, 0])
    iou = inter / union.clamp(min=1e-6)
    giou = iou - (hull - union) / hull.clamp(min=1e-6)
    return 1 - giou


def losses(model: RegressionNet, logits: torch.Tensor, distances: torch.Tensor, targets: list[Targets],
           focal_alpha: float = 0.25, soft: torch.Tensor | None = None, soft_weight: float = 0.0) -> dict:
    """Focal + IoU + L1 losses of a batch.

    Args:
        logits: (B, C, N); distances: (B, 2, N); targets: B per-strip targets.
        focal_alpha: the focal loss's weight of positive positions (negatives get ``1 - focal_alpha``).
        soft: (B, C, N) a teacher's probabilities (distillation): the classification target becomes
            ``(1 - soft_weight) * labels + soft_weight * soft``.

    Returns:
        dict with ``cls``, ``iou``, ``l1`` and ``total`` (scalar tensors).
    """
    b, c, n = logits.shape
    centers = model.centers(n, logits.device)
    labels = torch.stack([t.labels for t in targets]).to(logits.device)            # (B, N)
    ignore = torch.stack([t.ignore for t in targets]).to(logits.device)
    assigned = torch.stack([t.intervals for t in targets]).to(logits.device)       # (B, N, 2)
    onehot = torch.zeros(b, n, c, device=logits.device)
    pos = labels >= 0
    onehot[pos, labels[pos]] = 1.0
    if soft is not None and soft_weight > 0:
        onehot = (1 - soft_weight) * onehot + soft_weight * soft.permute(0, 2, 1).to(onehot)
    cls = sigmoid_focal_loss(logits.permute(0, 2, 1), onehot, alpha=focal_alpha)   # (B, N, C)
    cls = cls[~ignore].sum()
    n_pos = max(1.0, float(pos.sum()))
    if pos.any():
        d = distances.permute(0, 2, 1)[pos]                                        # (P, 2)
        ctr = centers.expand(b, n)[pos]
        pred = decode_distances(ctr, d)
        true = assigned[pos]
        iou = iou_loss_1d(pred, true).sum()
        l1 = (pred - true).abs().sum() / model.cfg.px_per_mm                       # in mm
    else:
        iou = l1 = logits.sum() * 0
    out = {"cls": cls / n_pos, "iou": iou / n_pos, "l1": l1 / n_pos}
    out["total"] = out["cls"] + out["iou"] + out["l1"]
    return out


# ---------------------------------------------------------------------- inference
def pad_rows(x: torch.Tensor, multiple: int = _PAD_MULTIPLE) -> torch.Tensor:
    """Pad (B, 1, H, W) at the bottom so H is a multiple of ``multiple`` (reflecting the last rows)."""
    extra = (-x.shape[2]) % multiple
    if extra == 0:
        return x
    return F.pad(x, (0, 0, 0, extra), mode="replicate")


@torch.inference_mode()
def predict_strip(model: RegressionNet, pixels: np.ndarray, normalised: torch.Tensor | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """The network's answer for one strip: per position, class probabilities (C, N) and the interval it
    points at (N, 2: start and end row, clamped to the strip), on the CPU wherever the network runs.
    ``normalised``: ``normalise_for(model.cfg, pixels)`` when the caller has it already."""
    model.eval()
    h = pixels.shape[0]
    weight = next(model.parameters(), None)  # a network without weights (a test's stand-in) runs on the CPU
    x = pad_rows((normalise_for(model.cfg, pixels) if normalised is None else normalised)[None, None])
    x = x if weight is None else x.to(weight.device)
    logits, distances = model(x)
    centers = model.centers(logits.shape[-1], logits.device)
    return torch.sigmoid(logits[0]).cpu(), decode_distances(centers, distances[0].T).clamp(0, h).cpu()


def predict_strip_mean(models: list[RegressionNet], pixels: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`predict_strip` of several networks of one working scale and stride (an ensemble), averaged: the
    mean probability per position and class, and the mean interval each position points at. Networks that
    normalise alike share one normalised strip."""
    if len(models) == 1:
        return predict_strip(models[0], pixels)
    normalised: dict[tuple, torch.Tensor] = {}
    answers = []
    for m in models:
        key = (m.cfg.normalisation, m.cfg.norm_window_mm, m.cfg.px_per_mm)
        if key not in normalised:
            normalised[key] = normalise_for(m.cfg, pixels)
        answers.append(predict_strip(m, pixels, normalised[key]))
    return torch.stack([a[0] for a in answers]).mean(dim=0), torch.stack([a[1] for a in answers]).mean(dim=0)


@torch.inference_mode()
def decode_strip(probs: torch.Tensor, boxes: torch.Tensor, classes: tuple[str, ...], score_threshold: float,
                 nms_iou: float, max_candidates: int = 4000) -> list[tuple[str, float, float, float]]:
    """Intervals from per-position probabilities and boxes (:func:`predict_strip`).

    Candidates above ``score_threshold`` -> 1-D NMS -> each kept interval's
    boundaries are the score-weighted mean of the candidates agreeing with it
    (IoU > 0.5, at least half its score).

    Returns:
        ``(class name, score, start row, end row)`` in strip rows, by descending score.
    """
    out = []
    for k, name in enumerate(classes):
        p = probs[k]
        cand = torch.nonzero(p > score_threshold).flatten()
        if cand.numel() == 0:
            continue
        if cand.numel() > max_candidates:
            cand = cand[torch.topk(p[cand], max_candidates).indices]
        cb, cp = boxes[cand], p[cand]
        valid = cb[:, 1] > cb[:, 0]
        cb, cp = cb[valid], cp[valid]
        if cp.numel() == 0:
            continue
        keep = nms_1d(cb, cp, nms_iou)
        ious = iou_1d(cb[keep], cb)                                  # (K, M)
        agree = (ious > 0.5) & (cp[None, :] >= 0.5 * cp[keep][:, None])
        w = agree * cp[None, :] ** 2                                 # each kept interval's voters, by score^2
        bounds = (w @ cb) / w.sum(dim=1, keepdim=True)               # (K, 2): start and end
        for i, (start, end) in zip(keep.tolist(), bounds.tolist()):
            out.append((name, float(cp[i]), start, end))
    out.sort(key=lambda r: -r[1])
    return out


def detect_strip(model: RegressionNet, pixels: np.ndarray, score_threshold: float | None = None,
                 max_candidates: int = 4000) -> list[tuple[str, float, float, float]]:
    """Detect intervals in one strip (:func:`predict_strip` then :func:`decode_strip`).

    Args:
        model: a trained :class:`RegressionNet` (evaluation mode is set here).
        pixels: (H, W) uint8 strip at the model's working scale.

    Returns:
        ``(class name, score, start row, end row)`` in strip rows, by descending score.
    """
    cfg = model.cfg
    probs, boxes = predict_strip(model, pixels)
    thr = cfg.score_threshold if score_threshold is None else score_threshold
    return decode_strip(probs, boxes, cfg.classes, thr, cfg.nms_iou, max_candidates)


def fuse_for_inference(model: RegressionNet) -> RegressionNet:
    """Fold every batch norm into the convolution before it (evaluation only; same outputs, ~15 % faster)."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    model.eval()
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv, bn = module[i], module[i + 1]
                if isinstance(conv, (nn.Conv1d, nn.Conv2d)) and isinstance(bn, (nn.BatchNorm1d, nn.BatchNorm2d)):
                    module[i] = fuse_conv_bn_eval(conv, bn)
                    module[i + 1] = nn.Identity()
        elif isinstance(module, (_Res1d, _Res2d)):
            module.conv1, module.bn1 = fuse_conv_bn_eval(module.conv1, module.bn1), nn.Identity()
            module.conv2, module.bn2 = fuse_conv_bn_eval(module.conv2, module.bn2), nn.Identity()
    return model


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["RegressionConfig", "RegressionNet", "Targets", "label_positions", "losses", "detect_strip",
           "sigmoid_focal_loss", "iou_loss_1d", "normalise_strip", "normalise_local", "normalise_for", "pad_rows", "predict_strip", "decode_strip", "count_parameters",
           "fuse_for_inference", "predict_strip_mean"]
