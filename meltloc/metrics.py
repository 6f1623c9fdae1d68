"""Interval metrics: 1-D IoU, greedy matching, F1, AP, boundary error, lens hits.

The entry point is :func:`evaluate_intervals`: a detection table and a truth
table (pandas, CONTRACT.md columns) in, an :class:`EvalResult` out, with the
figures of :func:`metric_keys` overall and per image. Below it the math is
plain numpy on arrays. Depths are in meters, errors and tolerances in mm.
Letters in shapes: P = predicted layers, T = true layers, Q = predicted
lenses, L = true lenses, G = ignore regions, K = IoU thresholds, N = pooled
predictions.

The steps, each usable on its own:

1. :func:`pairwise_iou` and :func:`greedy_match` (COCOeval's rule: predictions
   by descending score, each takes the free truth of highest IoU >= the
   threshold), :func:`greedy_point_match` for lenses (points within a
   distance).
2. :func:`match_image`: one image's :class:`ImageIntervals` matched at every
   IoU threshold, unmatched predictions on an ignore region set aside.
3. :func:`summarize`: figures of one or many matched images (AP pools all
   their predictions ranked by score).

:func:`evaluate_images` runs the three on a mapping of images and gives the
overall figures and those of each image; its keys are :func:`metric_keys`.

Example:
    >>> truth = ImageIntervals(layer_truth_m=[[100.000, 100.004]])
    >>> pred = ImageIntervals(layer_pred_m=[[100.001, 100.005]], layer_score=[0.9])
    >>> overall, _ = evaluate_images({"227.bmp": merge(truth, pred)})
    >>> overall["f1"], round(overall["boundary_mm"], 3)
    (1.0, 1.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from meltloc import IGNORE_TYPES, MELT_LAYER, MELT_LENS
from meltloc.errors import EvaluationError, Problem
from meltloc.names import natural_key

AP_IOUS: tuple[float, ...] = (0.3, 0.4, 0.5, 0.6, 0.7)
"""IoU thresholds of the AP figures; ``map`` is their mean."""

THICKNESS_BINS_MM: dict[str, tuple[float, float]] = {
    "lt1mm": (0.0, 1.0),
    "1to3mm": (1.0, 3.0),
    "3to10mm": (3.0, 10.0),
    "gt10mm": (10.0, np.inf),
}
"""Bins of true layer thickness, [low, high) in mm, for boundary error and recall."""

DARKNESS_BINS: dict[str, tuple[float, float]] = {
    "faint": (0.0, 0.4),
    "medium": (0.4, 0.75),
    "dark": (0.75, np.inf),
}
"""Bins of true layer darkness (the fraction by which a layer darkens the ice around it, 1 = black),
[low, high), for recall when the truth carries a ``darkness`` column (``meltloc synth``'s truth.csv does)."""

AP_POINTS = ("all", "101")
"""AP interpolations: ``all`` (every recall step, VOC 2010+) or ``101`` (COCO)."""

POINT_WIDTH_M = 1e-6
"""An ignore region narrower than this (1 um) is a point and gets a pad."""

_DISTANCE_EPS_M = 1e-9  # so that a lens exactly at the tolerance counts despite rounding


def metric_keys(ap_ious: Sequence[float] = AP_IOUS) -> list[str]:
    """The keys of the figures :func:`summarize` returns, in reporting order.

    ``n_truth``, ``n_pred``, ``tp``, ``fp``, ``fn``, ``n_ignored``,
    ``precision``, ``recall``, ``f1``, ``ap@0.3`` ... ``ap@0.7``, ``map``,
    ``boundary_mm``, ``boundary_mm_<bin>``, ``recall_<bin>``,
    ``n_truth_<bin>`` (bins :data:`THICKNESS_BINS_MM`), ``n_lens_truth``,
    ``n_lens_pred``, ``lens_hits``, ``lens_hit_rate``, ``lens_precision``.
    """
    bins = list(THICKNESS_BINS_MM)
    return (["n_truth", "n_pred", "tp", "fp", "fn", "n_ignored", "precision", "recall", "f1"]
            + [ap_key(t) for t in ap_ious] + ["map", "boundary_mm"]
            + [f"boundary_mm_{b}" for b in bins] + [f"recall_{b}" for b in bins] + [f"n_truth_{b}" for b in bins]
            + ["n_lens_truth", "n_lens_pred", "lens_hits", "lens_hit_rate", "lens_precision"])


def ap_key(iou: float) -> str:
    """The key of the AP at one IoU threshold: ``ap_key(0.5) == "ap@0.5"``."""
    return f"ap@{iou:g}"


# --------------------------------------------------------------------------- IoU and matching


def _as_intervals(a) -> np.ndarray:
    """An (N, 2) float array [from, to] from anything array-like (an empty input gives (0, 2))."""
    arr = np.asarray(a, dtype=float)
    if arr.size == 0:
        return np.zeros((0, 2))
    return arr.reshape(-1, 2)


def interval_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """The 1-D IoU of two intervals ``[from, to]``.

    Two identical points have IoU 1; a point and anything else 0.

    Args:
        a: (2,) interval.
        b: (2,) interval.

    Returns:
        IoU in [0, 1].
    """
    return float(pairwise_iou(_as_intervals(a), _as_intervals(b))[0, 0])


def pairwise_iou(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The IoU of every interval in ``pred`` with every interval in ``truth``.

    Args:
        pred: (P, 2) intervals [from, to], from <= to.
        truth: (T, 2) intervals [from, to].

    Returns:
        (P, T) IoU in [0, 1]; symmetric: ``pairwise_iou(b, a) == pairwise_iou(a, b).T``.
    """
    a, b = _as_intervals(pred), _as_intervals(truth)
    lo = np.maximum(a[:, None, 0], b[None, :, 0])
    hi = np.minimum(a[:, None, 1], b[None, :, 1])
    inter = np.clip(hi - lo, 0.0, None)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    same = (a[:, None, 0] == b[None, :, 0]) & (a[:, None, 1] == b[None, :, 1])
    iou = np.where(union > 0, inter / np.where(union > 0, union, 1.0), same.astype(float))
    return np.clip(iou, 0.0, 1.0)


def score_order(scores: np.ndarray) -> np.ndarray:
    """Indices by descending score; equal scores keep their order (as COCOeval).

    Args:
        scores: (N,) scores.

    Returns:
        (N,) int indices.
    """
    return np.argsort(-np.asarray(scores, dtype=float), kind="mergesort")


def greedy_match(iou: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Match predictions to truths greedily by descending score, one-to-one.

    Each prediction in turn takes the still-free truth of highest IoU, if that
    IoU is >= ``iou_threshold``. Ties in IoU go to the truth listed last, and
    ties in score keep the predictions' order, exactly as COCOeval does.

    Args:
        iou: (P, T) IoU of predictions with truths.
        scores: (P,) prediction scores.
        iou_threshold: the least IoU of a match, in (0, 1].

    Returns:
        (P,) int: the matched truth's index, or -1.
    """
    iou = np.asarray(iou, dtype=float)
    n_pred, n_truth = iou.shape
    match = np.full(n_pred, -1, dtype=int)
    if n_pred == 0 or n_truth == 0:
        return match
    taken = np.zeros(n_truth, dtype=bool)
    for p in score_order(scores):
        row = np.where(taken, -1.0, iou[p])
        best = n_truth - 1 - int(np.argmax(row[::-1]))
        if not taken[best] and row[best] >= iou_threshold:
            match[p] = best
            taken[best] = True
    return match


def greedy_point_match(pred_m: np.ndarray, scores: np.ndarray, truth_m: np.ndarray, tol_m: float) -> np.ndarray:
    """Match predicted points to true points within a distance, greedily by score.

    Each prediction in turn takes the nearest still-free truth within ``tol_m``.

    Args:
        pred_m: (Q,) predicted depths in m.
        scores: (Q,) their scores.
        truth_m: (L,) true depths in m.
        tol_m: the largest distance of a hit, in m.

    Returns:
        (Q,) int: the matched truth's index, or -1.
    """
    pred_m, truth_m = np.asarray(pred_m, dtype=float).ravel(), np.asarray(truth_m, dtype=float).ravel()
    match = np.full(pred_m.size, -1, dtype=int)
    if pred_m.size == 0 or truth_m.size == 0:
        return match
    dist = np.abs(pred_m[:, None] - truth_m[None, :])
    taken = np.zeros(truth_m.size, dtype=bool)
    for q in score_order(scores):
        row = np.where(taken, np.inf, dist[q])
        best = int(np.argmin(row))
        if row[best] <= tol_m + _DISTANCE_EPS_M:
            match[q] = best
            taken[best] = True
    return match


def pad_points(regions_m: np.ndarray, pad_m: float) -> np.ndarray:
    """Widen point-like regions (narrower than :data:`POINT_WIDTH_M`) by ``pad_m`` each side.

    Args:
        regions_m: (G, 2) regions [from, to] in m.
        pad_m: the pad in m.

    Returns:
        (G, 2) regions; intervals are left as they are.
    """
    regions = _as_intervals(regions_m).copy()
    point = (regions[:, 1] - regions[:, 0]) < POINT_WIDTH_M
    regions[point, 0] -= pad_m
    regions[point, 1] += pad_m
    return regions


def overlaps_any(intervals_m: np.ndarray, regions_m: np.ndarray) -> np.ndarray:
    """Whether each interval touches or overlaps any region (closed intervals).

    Args:
        intervals_m: (P, 2) intervals [from, to]; points as [d, d].
        regions_m: (G, 2) regions [from, to].

    Returns:
        (P,) bool.
    """
    a, r = _as_intervals(intervals_m), _as_intervals(regions_m)
    if len(r) == 0:
        return np.zeros(len(a), dtype=bool)
    return ((a[:, None, 0] <= r[None, :, 1]) & (a[:, None, 1] >= r[None, :, 0])).any(axis=1)


# --------------------------------------------------------------------------- precision, recall, AP


def precision_recall_f1(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """Precision, recall and F1 from counts; NaN where a denominator is 0.

    Args:
        tp: true positives.
        fp: false positives.
        fn: false negatives (missed truths).

    Returns:
        (precision, recall, f1).
    """
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    return float(precision), float(recall), float(f1)


def pr_curve(scores: np.ndarray, is_tp: np.ndarray, n_truth: int) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision after each prediction, ranked by descending score.

    Args:
        scores: (N,) scores of the counted predictions.
        is_tp: (N,) bool, whether each matched a truth.
        n_truth: number of truths (> 0).

    Returns:
        (recall, precision), each (N,), in rank order.
    """
    order = score_order(scores)
    hits = np.asarray(is_tp, dtype=bool)[order]
    tp = np.cumsum(hits)
    fp = np.cumsum(~hits)
    return tp / n_truth, tp / np.maximum(tp + fp, 1)


def average_precision(recall: np.ndarray, precision: np.ndarray, points: str = "all") -> float:
    """The area under the interpolated precision-recall curve.

    Precision is first made monotone (at each recall, the best precision at
    that or a higher recall).

    Args:
        recall: (N,) recall after each ranked prediction (non-decreasing).
        precision: (N,) precision after each ranked prediction.
        points: ``"all"``: every recall step counts (PASCAL VOC 2010+);
            ``"101"``: the mean over recall 0, 0.01, ..., 1 (COCO).

    Returns:
        AP in [0, 1]; 0 for no prediction.
    """
    recall, precision = np.asarray(recall, dtype=float), np.asarray(precision, dtype=float)
    if str(points) == "101":
        envelope = np.maximum.accumulate(precision[::-1])[::-1] if precision.size else precision
        thresholds = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
        idx = np.searchsorted(recall, thresholds, side="left")
        reached = idx < recall.size
        q = np.zeros(thresholds.size)
        q[reached] = envelope[idx[reached]]
        return float(q.mean())
    if str(points) != "all":
        raise ValueError(f"points must be one of {AP_POINTS}, not {points!r}")
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def thickness_bin(thickness_mm: np.ndarray) -> np.ndarray:
    """The :data:`THICKNESS_BINS_MM` name of each thickness.

    Args:
        thickness_mm: (T,) layer thickness in mm (rounded to 1 nm first, so
            that 3.0 mm written as 125.7738 - 125.7708 lands in ``3to10mm``).

    Returns:
        (T,) array of bin names.
    """
    thk = np.round(np.asarray(thickness_mm, dtype=float), 6)
    out = np.empty(thk.shape, dtype=object)
    for name, (low, high) in THICKNESS_BINS_MM.items():
        out[(thk >= low) & (thk < high)] = name
    out[thk < 0] = "lt1mm"
    return out


# --------------------------------------------------------------------------- one image


def _points(a) -> np.ndarray:
    return np.asarray(a, dtype=float).ravel()


@dataclass
class ImageIntervals:
    """What one image holds: predicted and true layers and lenses, and ignore regions.

    Every field may be left out (nothing of that kind). Depths in m.

    Attributes:
        layer_pred_m: (P, 2) predicted melt layers [depth_from_m, depth_to_m].
        layer_score: (P,) their scores.
        layer_truth_m: (T, 2) true melt layers.
        lens_pred_m: (Q,) predicted lenses (their midpoints).
        lens_score: (Q,) their scores.
        lens_truth_m: (L,) true lenses (their midpoints).
        ignore_m: (G, 2) ignore regions (``uncertain``, ``bubble_free``);
            points as [d, d], padded by :func:`match_image`.
        layer_truth_darkness: (T,) darkness of each true layer (NaN: unknown).
    """

    layer_pred_m: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    layer_score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    layer_truth_m: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    lens_pred_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lens_score: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lens_truth_m: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ignore_m: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    layer_truth_darkness: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.layer_pred_m = np.sort(_as_intervals(self.layer_pred_m), axis=1)
        self.layer_truth_m = np.sort(_as_intervals(self.layer_truth_m), axis=1)
        if self.layer_truth_darkness is None:
            self.layer_truth_darkness = np.full(len(self.layer_truth_m), np.nan)
        self.layer_truth_darkness = _points(self.layer_truth_darkness)
        self.ignore_m = np.sort(_as_intervals(self.ignore_m), axis=1)
        self.layer_score = _points(self.layer_score)
        self.lens_pred_m, self.lens_score = _points(self.lens_pred_m), _points(self.lens_score)
        self.lens_truth_m = _points(self.lens_truth_m)
        if self.layer_score.size != len(self.layer_pred_m):
            raise ValueError(f"{len(self.layer_pred_m)} predicted layers but {self.layer_score.size} scores")
        if self.lens_score.size != self.lens_pred_m.size:
            raise ValueError(f"{self.lens_pred_m.size} predicted lenses but {self.lens_score.size} scores")


def merge(truth: ImageIntervals, pred: ImageIntervals) -> ImageIntervals:
    """The truth fields of ``truth`` with the prediction fields of ``pred``."""
    return replace(truth, layer_pred_m=pred.layer_pred_m, layer_score=pred.layer_score,
                   lens_pred_m=pred.lens_pred_m, lens_score=pred.lens_score)


@dataclass
class ImageMatch:
    """One image matched at K IoU thresholds.

    Attributes:
        iou_thresholds: (K,) IoU thresholds.
        layer_pred_m: (P, 2) predicted layers.
        layer_score: (P,) their scores.
        layer_truth_m: (T, 2) true layers.
        layer_match: (K, P) int, the truth each prediction matched at each
            threshold, or -1.
        layer_ignored: (K, P) bool, unmatched predictions on an ignore region
            (neither true nor false positives).
        lens_score: (Q,) predicted lens scores.
        lens_match: (Q,) int, the true lens each predicted lens hit, or -1.
        lens_ignored: (Q,) bool, missed lenses on an ignore region.
        n_lens_truth: L, the number of true lenses.
        layer_truth_darkness: (T,) darkness of the true layers (NaN: unknown).
    """

    iou_thresholds: np.ndarray
    layer_pred_m: np.ndarray
    layer_score: np.ndarray
    layer_truth_m: np.ndarray
    layer_match: np.ndarray
    layer_ignored: np.ndarray
    lens_score: np.ndarray
    lens_match: np.ndarray
    lens_ignored: np.ndarray
    n_lens_truth: int
    layer_truth_darkness: np.ndarray | None = None


def match_image(image: ImageIntervals, iou_thresholds: Sequence[float], lens_tol_mm: float = 5.0,
                ignore_pad_mm: float = 5.0) -> ImageMatch:
    """Match one image's predictions to its truths.

    Layers are matched by IoU at each threshold, lenses by distance. A
    prediction that matches nothing and touches an ignore region (point
    regions widened by ``ignore_pad_mm``) is set aside.

    Args:
        image: the image's intervals.
        iou_thresholds: (K,) IoU thresholds.
        lens_tol_mm: the largest distance of a lens hit, in mm.
        ignore_pad_mm: pad of point-like ignore regions, each side, in mm.

    Returns:
        The :class:`ImageMatch`.
    """
    thresholds = np.asarray(iou_thresholds, dtype=float).ravel()
    ignore = pad_points(image.ignore_m, ignore_pad_mm / 1000)
    iou = pairwise_iou(image.layer_pred_m, image.layer_truth_m)
    layer_match = np.stack([greedy_match(iou, image.layer_score, t) for t in thresholds]) if thresholds.size \
        else np.zeros((0, len(image.layer_pred_m)), dtype=int)
    on_ignore = overlaps_any(image.layer_pred_m, ignore)
    lens_match = greedy_point_match(image.lens_pred_m, image.lens_score, image.lens_truth_m, lens_tol_mm / 1000)
    lens_on_ignore = overlaps_any(np.repeat(image.lens_pred_m[:, None], 2, axis=1), ignore)
    return ImageMatch(
        iou_thresholds=thresholds,
        layer_pred_m=image.layer_pred_m,
        layer_score=image.layer_score,
        layer_truth_m=image.layer_truth_m,
        layer_match=layer_match,
        layer_ignored=(layer_match < 0) & on_ignore[None, :],
        lens_score=image.lens_score,
        lens_match=lens_match,
        lens_ignored=(lens_match < 0) & lens_on_ignore,
        n_lens_truth=int(image.lens_truth_m.size),
        layer_truth_darkness=image.layer_truth_darkness,
    )


# --------------------------------------------------------------------------- figures


def _threshold_index(thresholds: np.ndarray, iou: float) -> int:
    hits = np.flatnonzero(np.isclose(thresholds, iou, rtol=0, atol=1e-12))
    if hits.size == 0:
        raise ValueError(f"IoU {iou} was not among the matched thresholds {thresholds.tolist()}")
    return int(hits[0])


def _ap_at(matches: Sequence[ImageMatch], k: int, points: str) -> float:
    """AP at threshold index ``k``, pooling every image's counted predictions."""
    n_truth = sum(len(m.layer_truth_m) for m in matches)
    if n_truth == 0:
        return float("nan")
    keep = [~m.layer_ignored[k] for m in matches]
    scores = np.concatenate([m.layer_score[kp] for m, kp in zip(matches, keep)] + [np.zeros(0)])
    is_tp = np.concatenate([(m.layer_match[k] >= 0)[kp] for m, kp in zip(matches, keep)] + [np.zeros(0, bool)])
    recall, precision = pr_curve(scores, is_tp, n_truth)
    return average_precision(recall, precision, points)


def _boundary_errors_mm(matches: Sequence[ImageMatch], k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Matched pairs at threshold index ``k``.

    Returns:
        (M,) |start error| in mm, (M,) |end error| in mm, (M,) the truth's thickness bin.
    """
    starts, ends, bins = [np.zeros(0)], [np.zeros(0)], [np.zeros(0, dtype=object)]
    for m in matches:
        p = np.flatnonzero(m.layer_match[k] >= 0)
        t = m.layer_match[k][p]
        err = np.abs(m.layer_pred_m[p] - m.layer_truth_m[t]) * 1000
        starts.append(err[:, 0])
        ends.append(err[:, 1])
        bins.append(thickness_bin((m.layer_truth_m[t, 1] - m.layer_truth_m[t, 0]) * 1000))
    return np.concatenate(starts), np.concatenate(ends), np.concatenate(bins)


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values)) if np.size(values) else float("nan")


def summarize(matches: Sequence[ImageMatch], iou: float = 0.5, ap_ious: Sequence[float] = AP_IOUS,
              ap_points: str = "all") -> dict[str, float | int]:
    """The figures of one or many matched images (keys: :func:`metric_keys`).

    Counts, precision, recall, F1, boundary errors and recall by thickness
    are taken at ``iou``; AP at each of ``ap_ious``, pooling all images'
    predictions ranked by score. Ratios with a zero denominator are NaN.

    Args:
        matches: images matched by :func:`match_image` at thresholds that
            include ``iou`` and ``ap_ious``.
        iou: the IoU threshold of the counts and boundary errors.
        ap_ious: IoU thresholds of the APs.
        ap_points: ``"all"`` or ``"101"`` (see :func:`average_precision`).

    Returns:
        figure name -> value (ints for counts, floats otherwise).
    """
    if str(ap_points) not in AP_POINTS:
        raise ValueError(f"ap_points must be one of {AP_POINTS}, not {ap_points!r}")
    thresholds = matches[0].iou_thresholds if matches else np.asarray([iou, *ap_ious], dtype=float)
    k = _threshold_index(thresholds, iou)
    n_truth = sum(len(m.layer_truth_m) for m in matches)
    n_pred = sum(len(m.layer_pred_m) for m in matches)
    tp = sum(int((m.layer_match[k] >= 0).sum()) for m in matches)
    n_ignored = sum(int(m.layer_ignored[k].sum()) for m in matches)
    fp, fn = n_pred - tp - n_ignored, n_truth - tp
    precision, recall, f1 = precision_recall_f1(tp, fp, fn)
    out: dict[str, float | int] = {"n_truth": n_truth, "n_pred": n_pred, "tp": tp, "fp": fp, "fn": fn,
                                   "n_ignored": n_ignored, "precision": precision, "recall": recall, "f1": f1}
    aps = [_ap_at(matches, _threshold_index(thresholds, t), ap_points) for t in ap_ious]
    out.update({ap_key(t): ap for t, ap in zip(ap_ious, aps)})
    out["map"] = float(np.mean(aps)) if aps and not np.isnan(aps).any() else float("nan")

    start_mm, end_mm, pair_bin = _boundary_errors_mm(matches, k)
    out["boundary_mm"] = _mean(np.concatenate([start_mm, end_mm]))
    truth_bin = np.concatenate([thickness_bin((m.layer_truth_m[:, 1] - m.layer_truth_m[:, 0]) * 1000)
                                for m in matches] + [np.zeros(0, dtype=object)])
    for name in THICKNESS_BINS_MM:
        sel = pair_bin == name
        out[f"boundary_mm_{name}"] = _mean(np.concatenate([start_mm[sel], end_mm[sel]]))
    for name in THICKNESS_BINS_MM:
        n_bin = int((truth_bin == name).sum())
        out[f"recall_{name}"] = int((pair_bin == name).sum()) / n_bin if n_bin else float("nan")
    for name in THICKNESS_BINS_MM:
        out[f"n_truth_{name}"] = int((truth_bin == name).sum())

    n_lens_truth = sum(m.n_lens_truth for m in matches)
    n_lens_pred = sum(m.lens_match.size for m in matches)
    hits = sum(int((m.lens_match >= 0).sum()) for m in matches)
    counted = n_lens_pred - sum(int(m.lens_ignored.sum()) for m in matches)
    out.update({"n_lens_truth": n_lens_truth, "n_lens_pred": n_lens_pred, "lens_hits": hits,
                "lens_hit_rate": hits / n_lens_truth if n_lens_truth else float("nan"),
                "lens_precision": hits / counted if counted else float("nan")})
    figures = {key: out[key] for key in metric_keys(ap_ious)}
    figures.update(_darkness_recall(matches, k))
    return figures


def darkness_bin(darkness: np.ndarray) -> np.ndarray:
    """The :data:`DARKNESS_BINS` name of each darkness (None where unknown)."""
    dark = np.asarray(darkness, dtype=float)
    out = np.full(dark.shape, None, dtype=object)
    for name, (low, high) in DARKNESS_BINS.items():
        out[(dark >= low) & (dark < high)] = name
    return out


def _darkness_recall(matches: Sequence[ImageMatch], k: int) -> dict[str, float | int]:
    """``recall_<faint|medium|dark>`` and ``n_truth_<bin>`` at threshold index ``k``; empty when no darkness is known."""
    dark, found = [np.zeros(0)], [np.zeros(0, bool)]
    for m in matches:
        d = m.layer_truth_darkness if m.layer_truth_darkness is not None else np.full(len(m.layer_truth_m), np.nan)
        hit = np.zeros(len(m.layer_truth_m), bool)
        hit[m.layer_match[k][m.layer_match[k] >= 0]] = True
        dark.append(np.asarray(d, float))
        found.append(hit)
    dark, found = np.concatenate(dark), np.concatenate(found)
    if not np.isfinite(dark).any():
        return {}
    bins = darkness_bin(dark)
    out: dict[str, float | int] = {}
    for name in DARKNESS_BINS:
        sel = bins == name
        out[f"recall_{name}"] = float(found[sel].mean()) if sel.any() else float("nan")
    for name in DARKNESS_BINS:
        out[f"n_truth_{name}"] = int((bins == name).sum())
    return out


def evaluate_images(images: Mapping[str, ImageIntervals], iou: float = 0.5, lens_tol_mm: float = 5.0,
                    ap_points: str = "all", ignore_pad_mm: float = 5.0, ap_ious: Sequence[float] = AP_IOUS,
                    ) -> tuple[dict[str, float | int], dict[str, dict[str, float | int]]]:
    """Figures over all images and per image (matching always within an image).

    Args:
        images: image name -> its intervals; the order of the mapping is the
            order in which equal scores of different images are ranked.
        iou: IoU threshold of precision, recall, F1 and boundary errors.
        lens_tol_mm: the largest distance of a lens hit, in mm.
        ap_points: ``"all"`` or ``"101"``.
        ignore_pad_mm: pad of point-like ignore regions, each side, in mm.
        ap_ious: IoU thresholds of the APs.

    Returns:
        (overall, per_image): figures by :func:`metric_keys`; per_image maps
        each image name to its own figures.
    """
    if not 0 < iou <= 1:
        raise ValueError(f"iou must be in (0, 1], not {iou}")
    thresholds = list(dict.fromkeys([float(iou), *map(float, ap_ious)]))
    matches = {name: match_image(img, thresholds, lens_tol_mm, ignore_pad_mm) for name, img in images.items()}
    per_image = {name: summarize([m], iou, ap_ious, ap_points) for name, m in matches.items()}
    overall = summarize(list(matches.values()), iou, ap_ious, ap_points)
    return overall, per_image


# --------------------------------------------------------------------------- tables in, figures out

METRIC_DESCRIPTIONS: dict[str, str] = {
    "n_truth": "true melt layers",
    "n_pred": "predicted melt layers (tp + fp + n_ignored)",
    "tp": "predicted layers matched one-to-one to a true layer at IoU >= --iou (greedy by score)",
    "fp": "predicted layers matching no true layer and touching no ignore region",
    "fn": "true layers no prediction matched",
    "n_ignored": "unmatched predictions on an uncertain/bubble_free region: counted neither way",
    "precision": "tp / (tp + fp)",
    "recall": "tp / n_truth",
    "f1": "2 tp / (2 tp + fp + fn)",
    "ap@<iou>": "average precision at IoU 0.3 ... 0.7: area under the precision-recall curve of all "
                "images' predictions ranked by score (--ap-points all or 101)",
    "map": "mean of the five APs",
    "boundary_mm": "mean |start error| and |end error| in mm over matched layers",
    "boundary_mm_<bin>": "the same for true layers <1, 1-3, 3-10, >10 mm thick (lt1mm, 1to3mm, 3to10mm, gt10mm)",
    "recall_<bin>": "recall of true layers in each thickness bin",
    "n_truth_<bin>": "true layers in each thickness bin",
    "recall_<faint|medium|dark>": "recall of true layers by darkness (the fraction by which a layer darkens the "
                                  "ice: faint < 0.4, medium 0.4-0.75, dark >= 0.75), when the truth has a "
                                  "darkness column (synth's truth.csv)",
    "n_truth_<faint|medium|dark>": "true layers in each darkness bin",
    "n_lens_truth": "true melt lenses (points: their midpoints)",
    "n_lens_pred": "predicted melt lenses (their midpoints)",
    "lens_hits": "predicted lenses within --lens-tol-mm of a free true lens (greedy by score, one-to-one)",
    "lens_hit_rate": "lens_hits / n_lens_truth",
    "lens_precision": "lens_hits / predicted lenses not set aside on an ignore region",
}
"""One line per figure (``<iou>`` and ``<bin>`` stand for each threshold and thickness bin)."""

PRED_REQUIRED = ("image", "type", "depth_from_m", "depth_to_m", "score")
"""Columns :func:`evaluate_intervals` needs in the predictions (``row_from``, ``row_to`` are used if present)."""

TRUTH_REQUIRED = ("image", "type", "depth_from_m", "depth_to_m")
"""Columns :func:`evaluate_intervals` needs in the truth."""


def require_columns(table: pd.DataFrame, required: Sequence[str], name: str) -> None:
    """Raise if ``table`` lacks any of ``required``.

    Raises:
        EvaluationError: naming ``name`` (a file) and the missing columns.
    """
    missing = [c for c in required if c not in table.columns]
    if missing:
        found = ", ".join(map(str, table.columns)) or "none"
        raise EvaluationError(f"column(s) {', '.join(missing)} missing (found: {found})", name)


@dataclass
class EvalResult:
    """Figures of a detection table against a truth table.

    Attributes:
        overall: ``n_images`` and the figures of :func:`metric_keys`, all images pooled.
        per_image: one row per image: ``image`` and the same figures.
        settings: ``iou``, ``lens_tol_mm``, ``ap_points``, ``ignore_pad_mm``, ``ap_ious``.
        problems: rows and images left out, with why.
    """

    overall: dict[str, float | int]
    per_image: pd.DataFrame
    settings: dict[str, object]
    problems: list[Problem] = field(default_factory=list)

    def to_dict(self) -> dict:
        """JSON-ready: ``settings``, ``overall``, ``per_image`` (list of records), ``warnings``; NaN as None."""
        return {
            "settings": _plain(self.settings),
            "overall": _plain(self.overall),
            "per_image": [_plain(rec) for rec in self.per_image.to_dict("records")],
            "warnings": [str(p) for p in self.problems],
        }


def _plain(value):
    """Python scalars for JSON: NaN -> None, numpy numbers -> int/float."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if not np.isfinite(value) else float(value)
    return value


def _clean(table: pd.DataFrame, kinds: Sequence[str], name: str, score: bool,
           problems: list[Problem]) -> pd.DataFrame:
    """Typed copy of a pred or truth table; rows of unknown type or without a score dropped."""
    out = table.copy()
    out["image"] = out["image"].astype(str).str.strip()
    out["type"] = out["type"].astype(str).str.strip().str.lower()
    cols = ["depth_from_m", "depth_to_m"] + [c for c in ("row_from", "row_to") if c in out.columns]
    for col in cols + (["score"] if score else []):
        out[col] = pd.to_numeric(out[col], errors="coerce")
    unknown = ~out["type"].isin(kinds)
    if unknown.any():
        seen = ", ".join(sorted(set(out.loc[unknown, "type"])))
        problems.append(Problem("eval_unknown_type", name, None,
                                f"{int(unknown.sum())} row(s) of type {seen} left out (known: {', '.join(kinds)})"))
    keep = ~unknown
    if score:
        no_score = keep & out["score"].isna()
        if no_score.any():
            problems.append(Problem("eval_no_score", name, None, f"{int(no_score.sum())} row(s) without a score left out"))
        keep &= ~no_score
    return out[keep].reset_index(drop=True)


def _row_to_depth_fit(truth: pd.DataFrame) -> tuple[float, float] | None:
    """(depth at row 0 in m, m per row) from a truth table's rows and depths, or None."""
    if not {"row_from", "row_to"} <= set(truth.columns):
        return None
    rows = np.concatenate([truth["row_from"].to_numpy(float), truth["row_to"].to_numpy(float)])
    depths = np.concatenate([truth["depth_from_m"].to_numpy(float), truth["depth_to_m"].to_numpy(float)])
    ok = np.isfinite(rows) & np.isfinite(depths)
    if np.unique(rows[ok]).size < 2:
        return None
    slope, intercept = np.polyfit(rows[ok], depths[ok], 1)
    return (float(intercept), float(slope)) if slope > 0 else None


def _image_pred(pred: pd.DataFrame, truth: pd.DataFrame, image: str, name: str,
                problems: list[Problem]) -> pd.DataFrame | None:
    """One image's predictions with depths; None when the image must be skipped.

    Predictions without depths (an image not in the manifest) get depths from
    their rows through the truth's row-to-depth fit, when the truth has rows.
    """
    missing = pred["depth_from_m"].isna() | pred["depth_to_m"].isna()
    if not missing.any():
        return pred
    if not missing.all():
        problems.append(Problem("eval_no_depth", name, None,
                                f"{image}: {int(missing.sum())} prediction(s) without depths left out"))
        return pred[~missing]
    fit = _row_to_depth_fit(truth) if {"row_from", "row_to"} <= set(pred.columns) else None
    if fit is None or pred[["row_from", "row_to"]].isna().any().any():
        problems.append(Problem("eval_image_skipped", name, None,
                                f"{image}: predictions have no depths and the truth no rows to fall back on; "
                                "image skipped"))
        return None
    intercept, slope = fit
    pred = pred.copy()
    pred["depth_from_m"] = intercept + slope * pred["row_from"]
    pred["depth_to_m"] = intercept + slope * pred["row_to"]
    problems.append(Problem("eval_rows_used", name, None, f"{image}: predictions have no depths; compared on rows "
                            f"({1 / slope / 100:.1f} px/cm from the truth's rows and depths)"))
    return pred


def _image_intervals(pred: pd.DataFrame, truth: pd.DataFrame) -> ImageIntervals:
    """One image's tables as arrays."""
    def span(table: pd.DataFrame) -> np.ndarray:
        return table[["depth_from_m", "depth_to_m"]].to_numpy(float).reshape(-1, 2)

    layers, lenses = pred[pred["type"] == MELT_LAYER], pred[pred["type"] == MELT_LENS]
    true_layers = truth[truth["type"] == MELT_LAYER]
    darkness = (pd.to_numeric(true_layers["darkness"], errors="coerce").to_numpy(float) if "darkness" in truth.columns
                else None)
    return ImageIntervals(
        layer_pred_m=span(layers), layer_score=layers["score"].to_numpy(float),
        layer_truth_m=span(true_layers), layer_truth_darkness=darkness,
        lens_pred_m=span(lenses).mean(axis=1), lens_score=lenses["score"].to_numpy(float),
        lens_truth_m=span(truth[truth["type"] == MELT_LENS]).mean(axis=1),
        ignore_m=span(truth[truth["type"].isin(IGNORE_TYPES)]),
    )


def evaluate_intervals(pred: pd.DataFrame, truth: pd.DataFrame, iou: float = 0.5, lens_tol_mm: float = 5.0,
                       ap_points: str = "all", ignore_pad_mm: float = 5.0, pred_name: str = "predictions",
                       truth_name: str = "truth") -> EvalResult:
    """Score a detection table against a truth table, per image and overall.

    Layer figures (F1, AP, boundary) are of ``melt_layer`` rows, lens figures
    of ``melt_lens`` rows; ``uncertain`` and ``bubble_free`` truth rows are
    ignore regions. Images are those of either table; an image only in the
    predictions has no truth (all its predictions are false positives), one
    only in the truth has no detection (all its layers are missed).

    Args:
        pred: columns :data:`PRED_REQUIRED` (``type`` in melt_layer,
            melt_lens), optionally ``row_from``, ``row_to``; one row per
            detection, depths in m.
        truth: columns :data:`TRUTH_REQUIRED` (``type`` in melt_layer,
            melt_lens, uncertain, bubble_free), optionally ``row_from``,
            ``row_to``; a blank ``depth_to_m`` makes a point.
        iou: IoU threshold of precision, recall, F1 and boundary errors.
        lens_tol_mm: the largest distance of a lens hit, in mm.
        ap_points: ``"all"`` (all-point interpolation) or ``"101"`` (COCO).
        ignore_pad_mm: pad of point-like ignore regions, each side, in mm.
        pred_name: what to call the predictions in errors (e.g. their file).
        truth_name: what to call the truth in errors.

    Returns:
        The :class:`EvalResult`; ``overall`` and ``per_image`` hold the
        figures of :func:`metric_keys`.

    Raises:
        EvaluationError: a required column is missing.
    """
    require_columns(pred, PRED_REQUIRED, pred_name)
    require_columns(truth, TRUTH_REQUIRED, truth_name)
    if str(ap_points) not in AP_POINTS:
        raise EvaluationError(f"ap_points must be one of {', '.join(AP_POINTS)}, not '{ap_points}'")
    if not 0 < iou <= 1:
        raise EvaluationError(f"the IoU threshold must be in (0, 1], not {iou}")
    problems: list[Problem] = []
    pred = _clean(pred, (MELT_LAYER, MELT_LENS), pred_name, True, problems)
    truth = _clean(truth, (MELT_LAYER, MELT_LENS, *IGNORE_TYPES), truth_name, False, problems)
    no_depth = truth["depth_from_m"].isna()
    if no_depth.any():
        problems.append(Problem("eval_no_depth", truth_name, None, f"{int(no_depth.sum())} truth row(s) without depth left out"))
        truth = truth[~no_depth]
    truth["depth_to_m"] = truth["depth_to_m"].fillna(truth["depth_from_m"])
    images: dict[str, ImageIntervals] = {}
    for image in sorted(set(pred["image"]) | set(truth["image"]), key=natural_key):
        t = truth[truth["image"] == image]
        p = _image_pred(pred[pred["image"] == image], t, image, pred_name, problems)
        if p is not None:
            images[image] = _image_intervals(p, t)
    overall, per_image = evaluate_images(images, iou, lens_tol_mm, str(ap_points), ignore_pad_mm)
    table = pd.DataFrame([{"image": name, **figures} for name, figures in per_image.items()],
                         columns=["image", *metric_keys()])
    settings = {"iou": iou, "lens_tol_mm": lens_tol_mm, "ap_points": str(ap_points),
                "ignore_pad_mm": ignore_pad_mm, "ap_ious": list(AP_IOUS)}
    return EvalResult({"n_images": len(images), **overall}, table, settings, problems)
