"""1-D interval operations in torch: IoU, decoding and non-maximum suppression.

Intervals are ``(N, 2)`` tensors ``[start, end]`` in one coordinate (rows).
No compiled extension: everything is plain tensor code.
"""

from __future__ import annotations

import torch


def iou_1d(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU of two sets of intervals.

    Args:
        a: (N, 2) intervals.
        b: (M, 2) intervals.

    Returns:
        (N, M) IoU; 0 where the union is empty.
    """
    inter = (torch.minimum(a[:, None, 1], b[None, :, 1]) - torch.maximum(a[:, None, 0], b[None, :, 0])).clamp(min=0)
    union = (a[:, None, 1] - a[:, None, 0]) + (b[None, :, 1] - b[None, :, 0]) - inter
    return torch.where(union > 0, inter / union.clamp(min=1e-9), torch.zeros_like(inter))


def nms_1d(intervals: torch.Tensor, scores: torch.Tensor, iou_threshold: float = 0.4,
           max_keep: int | None = None) -> torch.Tensor:
    """Greedy 1-D non-maximum suppression.

    Args:
        intervals: (N, 2) intervals.
        scores: (N,) scores.
        iou_threshold: an interval overlapping a kept one by more than this is dropped.
        max_keep: stop after this many.

    Returns:
        (K,) indices of the kept intervals, by descending score.
    """
    order = torch.argsort(scores, descending=True)
    keep: list[int] = []
    if order.numel() == 0:
        return order
    ious = iou_1d(intervals[order], intervals[order])
    suppressed = torch.zeros(order.numel(), dtype=torch.bool)
    for i in range(order.numel()):
        if suppressed[i]:
            continue
        keep.append(int(order[i]))
        if max_keep is not None and len(keep) >= max_keep:
            break
        suppressed |= ious[i] > iou_threshold
    return torch.tensor(keep, dtype=torch.long)


def decode_distances(centers: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """Intervals from positions and their distances to the start and the end.

    Args:
        centers: (N,) positions (rows).
        distances: (N, 2) distances ``[to start, to end]`` (rows, >= 0).

    Returns:
        (N, 2) intervals ``[center - d_start, center + d_end]``.
    """
    return torch.stack([centers - distances[:, 0], centers + distances[:, 1]], dim=1)


def encode_distances(centers: torch.Tensor, intervals: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`decode_distances`: (N,) positions and (N, 2) intervals -> (N, 2) distances."""
    return torch.stack([centers - intervals[:, 0], intervals[:, 1] - centers], dim=1)
