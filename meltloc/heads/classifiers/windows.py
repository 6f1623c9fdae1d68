"""Windows of a core strip and inference on them: the normalised strip, the sliding-window grid, the
labelling rule, windows cut to the network input, the probabilities of their flips, the vote, and runs of
positive windows decoded into intervals.

**Labels.** ``k`` = ``min_overlap_mm`` (1 mm = 10 rows). A window is
*positive* when it overlaps a true melt layer by at least ``min(k, layer
thickness)`` (so a layer thinner than 1 mm must lie wholly inside it);
*left out* of training and of slice accuracy when it overlaps a layer by less
than that (ambiguous), or an ignore region (``uncertain``, ``bubble_free``)
without being positive; *negative* otherwise. Melt lenses are negatives (the
classifier has one class, ``melt_layer``, as the seed's had).

**Inference** (:func:`predict_strip`, :func:`decode_windows`): every window of
the stride grid, each of the 4 flips (none, h, v, hv), sigmoid probabilities;
a window is positive when more than half of its flips reach the threshold (a
2-2 tie goes to the mean probability). Runs of positive windows (a single
negative window between two positives is bridged, ``merge_gap`` = 1) become
intervals scored by the mean probability of their windows and flips. The
interval of a run is the labelling rule inverted: a layer ``[a, b)`` makes
the windows of ``W`` rows starting in ``[a + k - W, b - k]`` positive, so a run of starts
``s_first .. s_last`` gives ``[s_first + W - k, s_last + k]``; a run too
short for that gives ``k`` rows around its centre.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from meltloc.heads.classifiers.config import ClassifierConfig
from meltloc.heads.classifiers.nets import autocast

# Label values of a window.
POSITIVE, NEGATIVE, LEFT_OUT = 1, 0, -1


def normalise_strip(pixels: np.ndarray) -> torch.Tensor:
    """Strip pixels (uint8, H x W) -> float tensor divided by the strip's median, clipped to [0, 4]."""
    from meltloc.heads.regression.net import normalise_strip as _normalise

    return _normalise(pixels)


def window_starts(n_rows: int, window_rows: int, stride_rows: int) -> np.ndarray:
    """First rows of the sliding windows over a strip of ``n_rows``: 0, stride, ...; the last one ends at the bottom.

    Returns:
        (N,) int64 starts (one start, 0, when the strip is shorter than a window).
    """
    last = max(0, n_rows - window_rows)
    starts = np.arange(0, last + 1, stride_rows, dtype=np.int64)
    if starts[-1] != last:
        starts = np.append(starts, last)
    return starts


def window_labels(starts: np.ndarray, window_rows: int, intervals: np.ndarray, ignore: np.ndarray,
                  min_overlap_rows: float) -> np.ndarray:
    """Labels of windows ``[s, s + window_rows)``: 1 positive, 0 negative, -1 left out.

    Args:
        starts: (N,) window starts in strip rows.
        intervals: (M, 2) true melt layers in strip rows.
        ignore: (K, 2) ignore regions in strip rows.
        min_overlap_rows: ``k``: a window is positive when it overlaps a layer by
            at least ``min(k, layer thickness)`` rows.

    Returns:
        (N,) int8 labels: positive as above; left out when it overlaps a layer
        by less than that, or touches an ignore region without being positive.
    """
    s = np.asarray(starts, dtype=np.float64)[:, None]
    e = s + window_rows
    labels = np.zeros(len(starts), dtype=np.int8)
    iv = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
    ign = np.asarray(ignore, dtype=np.float64).reshape(-1, 2)
    positive = np.zeros(len(starts), dtype=bool)
    partial = np.zeros(len(starts), dtype=bool)
    if len(iv):
        overlap = np.clip(np.minimum(e, iv[None, :, 1]) - np.maximum(s, iv[None, :, 0]), 0, None)   # (N, M)
        need = np.minimum(min_overlap_rows, iv[:, 1] - iv[:, 0])[None, :] - 1e-6
        positive = (overlap >= need).any(axis=1)
        partial = ((overlap > 0) & (overlap < need)).any(axis=1)
    touches_ignore = np.zeros(len(starts), dtype=bool)
    if len(ign):
        touches_ignore = ((np.minimum(e, ign[None, :, 1]) - np.maximum(s, ign[None, :, 0])) > 0).any(axis=1)
    labels[(partial | touches_ignore) & ~positive] = LEFT_OUT
    labels[positive] = POSITIVE
    return labels


def cut_windows(strip: torch.Tensor, starts, cfg: ClassifierConfig) -> torch.Tensor:
    """Windows of a normalised strip, resized to the network input.

    Args:
        strip: (H, W) normalised strip (:func:`normalise_strip`).
        starts: (B,) window starts.

    Returns:
        (B, 1, input_rows, input_cols) float tensor.
    """
    w = cfg.window_rows
    if strip.shape[0] < w:
        strip = F.pad(strip[None, None], (0, 0, 0, w - strip.shape[0]), mode="replicate")[0, 0]
    idx = torch.as_tensor(np.asarray(starts), dtype=torch.long)[:, None] + torch.arange(w)[None, :]
    x = strip[idx][:, None]                                                    # (B, 1, w, W)
    if x.shape[-2:] != (cfg.input_rows, cfg.input_cols):
        x = F.interpolate(x, size=(cfg.input_rows, cfg.input_cols), mode="bilinear", align_corners=False)
    return x


def flip(x: torch.Tensor, name: str) -> torch.Tensor:
    """A flip of (B, C, H, W) windows: none, h (mirror across the core), v (upside down), hv."""
    dims = {"none": (), "h": (3,), "v": (2,), "hv": (2, 3)}[name]
    return torch.flip(x, dims) if dims else x


@torch.inference_mode()
def predict_windows(model: nn.Module, strip: torch.Tensor, starts: np.ndarray, cfg: ClassifierConfig,
                    device: str = "cpu", batch: int = 256, flips: tuple[str, ...] | None = None) -> np.ndarray:
    """Sigmoid probabilities of windows and their flips.

    Args:
        strip: (H, W) normalised strip.
        starts: (N,) window starts.
        flips: flips to predict (default ``cfg.flips``).

    Returns:
        (N, F) float32 probabilities, one column per flip.
    """
    model.eval()
    flips = cfg.flips if flips is None else flips
    out = np.zeros((len(starts), len(flips)), dtype=np.float32)
    for i in range(0, len(starts), batch):
        x = cut_windows(strip, starts[i:i + batch], cfg).to(device).contiguous(memory_format=torch.channels_last)
        for j, name in enumerate(flips):
            with autocast(device, cfg.precision):
                logits = model(flip(x, name))
            out[i:i + batch, j] = torch.sigmoid(logits.float()).flatten().cpu().numpy()
    return out


def predict_strip(model: nn.Module, pixels: np.ndarray, cfg: ClassifierConfig, device: str = "cpu",
                  batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Window starts (N,) and probabilities (N, flips) of a whole strip (uint8 pixels)."""
    strip = normalise_strip(pixels)
    starts = window_starts(strip.shape[0], cfg.window_rows, cfg.stride_rows)
    return starts, predict_windows(model, strip, starts, cfg, device, batch)


def vote(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Majority vote of the flips: (N, F) probabilities -> (N,) bool; a tie goes to the mean probability."""
    yes = (probs >= threshold).sum(axis=1)
    n = probs.shape[1]
    return (2 * yes > n) | ((2 * yes == n) & (probs.mean(axis=1) >= threshold))


def decode_windows(starts: np.ndarray, probs: np.ndarray, cfg: ClassifierConfig, threshold: float,
                   n_rows: int | None = None) -> list[tuple[float, float, float]]:
    """Runs of positive windows -> intervals in strip rows.

    Args:
        starts: (N,) window starts on the stride grid, ascending.
        probs: (N, F) probabilities of the flips.
        threshold: window probability threshold of the vote.
        n_rows: strip height, to clip the intervals.

    Returns:
        ``(score, start row, end row)`` per run, by descending score; the score
        is the mean probability of the run's windows (its bridged gaps
        included) and flips.
    """
    positive = vote(probs, threshold)
    idx = np.flatnonzero(positive)
    if idx.size == 0:
        return []
    # Split where more than merge_gap negative windows separate two positives.
    breaks = np.flatnonzero(np.diff(idx) > cfg.merge_gap + 1)
    w, k = cfg.window_rows, min(cfg.min_overlap_rows, cfg.window_rows / 2)
    mean_prob = probs.mean(axis=1)
    out = []
    for run in np.split(idx, breaks + 1):
        first, last = run[0], run[-1]
        s0, s1 = float(starts[first]), float(starts[last])
        a, b = s0 + w - k, s1 + k
        if b - a < k:
            centre = (s0 + s1 + w) / 2
            a, b = centre - k / 2, centre + k / 2
        if n_rows is not None:
            a, b = max(0.0, a), min(float(n_rows), b)
        if b > a:
            out.append((float(mean_prob[first:last + 1].mean()), a, b))
    out.sort(key=lambda r: -r[0])
    return out


__all__ = ["POSITIVE", "NEGATIVE", "LEFT_OUT", "normalise_strip", "window_starts", "window_labels",
           "cut_windows", "flip", "predict_windows", "predict_strip", "vote", "decode_windows"]
