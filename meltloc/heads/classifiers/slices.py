"""Slices of a convert output's split: its strips normalised with the label of every window start, the
seed's balanced slice set drawn from them, and the seed's slice accuracy on it.

**Slice accuracy** (:func:`slice_accuracy`): the seed's figure. Balanced
slices as the seed built them: every positive window of the stride grid in
the split's sections and as many negative windows drawn at random (seeded),
one prediction per slice (no flips) at probability 0.5, as Keras'
``evaluate`` gave it. The val split's figure is stored in the checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from meltloc.checkpoint import load_checkpoint
from meltloc.errors import CheckpointError, DatasetError
from meltloc.heads.classifiers.config import HEADS, ClassifierConfig
from meltloc.heads.classifiers.nets import autocast
from meltloc.heads.classifiers.windows import (NEGATIVE, POSITIVE, cut_windows, normalise_strip, window_labels,
                                               window_starts)
from meltloc.strip_dataset import StripSample, load_strips


@dataclass
class StripWindows:
    """A strip ready for window sampling: normalised pixels and the label of every possible start."""

    sample: StripSample
    strip: torch.Tensor          # (H, W) normalised
    labels: np.ndarray           # (H - window_rows + 1,) label of a window starting at each row


def strip_windows(samples: list[StripSample], cfg: ClassifierConfig) -> list[StripWindows]:
    """Normalise strips and label the windows starting at every row."""
    out = []
    for smp in samples:
        strip = normalise_strip(smp.pixels)
        starts = np.arange(max(1, strip.shape[0] - cfg.window_rows + 1))
        labels = window_labels(starts, cfg.window_rows, smp.intervals, smp.ignore, cfg.min_overlap_rows)
        out.append(StripWindows(smp, strip, labels))
    return out


def balanced_slices(strips: list[StripWindows], cfg: ClassifierConfig, seed: int = 0,
                    max_positives: int | None = None) -> list[tuple[int, int, int]]:
    """The seed's balanced slice set: every positive window of the stride grid and as many random negatives.

    Returns:
        ``(strip index, window start, label)`` triples, positives first.
    """
    rng = np.random.default_rng(seed)
    pos, neg = [], []
    for i, sw in enumerate(strips):
        grid = window_starts(sw.strip.shape[0], cfg.window_rows, cfg.stride_rows)
        lab = sw.labels[np.minimum(grid, len(sw.labels) - 1)]
        pos += [(i, int(s), 1) for s in grid[lab == POSITIVE]]
        neg += [(i, int(s), 0) for s in grid[lab == NEGATIVE]]
    if max_positives is not None and len(pos) > max_positives:
        pos = [pos[j] for j in sorted(rng.choice(len(pos), max_positives, replace=False))]
    n = min(len(pos), len(neg))
    neg = [neg[j] for j in sorted(rng.choice(len(neg), n, replace=False))] if n else []
    return pos + neg


@torch.inference_mode()
def score_slices(model: nn.Module, strips: list[StripWindows], slices: list[tuple[int, int, int]],
                 cfg: ClassifierConfig, device: str = "cpu", batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (no flips) and labels of slices from :func:`balanced_slices`."""
    model.eval()
    probs = np.zeros(len(slices), dtype=np.float32)
    labels = np.array([lab for _, _, lab in slices], dtype=np.float32)
    order = sorted(range(len(slices)), key=lambda j: slices[j][0])
    for i in range(0, len(order), batch):
        chunk = order[i:i + batch]
        x = torch.cat([cut_windows(strips[slices[j][0]].strip, [slices[j][1]], cfg) for j in chunk])
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        with autocast(device, cfg.precision):
            logits = model(x)
        probs[chunk] = torch.sigmoid(logits.float()).flatten().cpu().numpy()
    return probs, labels


def slice_accuracy(detector_or_checkpoint, data_dir: str | Path, split: str = "test", seed: int = 0,
                   device: str = "cpu") -> float:
    """The seed's slice accuracy of a classifier on a convert output's split.

    Balanced slices (every positive window of the stride grid in the split's
    sections, as many random negatives, seeded), one prediction each at
    probability 0.5, no flips.

    Args:
        detector_or_checkpoint: a :class:`~meltloc.heads.classifiers.ClassifierHead`, a checkpoint dict or a
            checkpoint file.
        data_dir: a ``meltloc convert`` output.
        split: train, val or test.

    Returns:
        The fraction of slices classified right (NaN when the split has no positive slice).

    Raises:
        DatasetError: no strip in that split.
        CheckpointError: not a slice-classifier checkpoint or detector.
    """
    from meltloc.heads.classifiers import ClassifierHead

    det = detector_or_checkpoint
    if isinstance(det, (str, Path)):
        det = load_checkpoint(det)
    if isinstance(det, dict):
        det = ClassifierHead(det, device)
    if not isinstance(det, ClassifierHead):
        raise CheckpointError(f"slice accuracy is a figure of the slice classifiers ({', '.join(HEADS)}), "
                              f"not of '{getattr(det, 'head', type(det).__name__)}'")
    samples = load_strips(data_dir, det.cfg.classes, (split,))
    if not samples:
        raise DatasetError(f"no strip in the {split} split", data_dir)
    strips = strip_windows(samples, det.cfg)
    slices = balanced_slices(strips, det.cfg, seed)
    if not slices:
        return float("nan")
    probs, labels = score_slices(det.model, strips, slices, det.cfg, det.device)
    return float(((probs >= 0.5) == (labels == 1)).mean())


__all__ = ["StripWindows", "strip_windows", "balanced_slices", "score_slices", "slice_accuracy"]
