"""Interval metrics (meltloc.metrics): properties, hand-worked cases and a COCOeval cross-check."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meltloc.errors import EvaluationError
from meltloc.metrics import (AP_IOUS, ImageIntervals, average_precision, evaluate_images, evaluate_intervals,
                             greedy_match, greedy_point_match, interval_iou, match_image, metric_keys, pairwise_iou,
                             pr_curve, thickness_bin)

# --------------------------------------------------------------------------- strategies

coord = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False)


@st.composite
def interval(draw, min_len: float = 0.0):
    a = draw(coord)
    length = draw(st.floats(min_value=min_len, max_value=1e3, allow_nan=False))
    return [a, a + length]


@st.composite
def layer_set(draw, max_size: int = 8):
    """Truth layers of 1-30 mm at depths near 100 m, with distinct scores for predictions."""
    n = draw(st.integers(min_value=1, max_value=max_size))
    tops = draw(st.lists(st.floats(min_value=100.0, max_value=101.0), min_size=n, max_size=n))
    thick = draw(st.lists(st.floats(min_value=0.001, max_value=0.03), min_size=n, max_size=n))
    scores = draw(st.lists(st.floats(min_value=0.0, max_value=1.0), min_size=n, max_size=n))
    truth = np.array([[t, t + h] for t, h in zip(tops, thick)])
    return truth, np.array(scores)


# --------------------------------------------------------------------------- IoU


@given(interval(), interval())
def test_iou_is_symmetric_and_between_0_and_1(a, b):
    ab, ba = interval_iou(a, b), interval_iou(b, a)
    assert ab == ba
    assert 0.0 <= ab <= 1.0


@given(st.lists(interval(), min_size=0, max_size=6), st.lists(interval(), min_size=0, max_size=6))
def test_pairwise_iou_is_the_transpose_of_its_swap(a, b):
    m = pairwise_iou(np.array(a).reshape(-1, 2), np.array(b).reshape(-1, 2))
    assert m.shape == (len(a), len(b))
    assert np.array_equal(m, pairwise_iou(np.array(b).reshape(-1, 2), np.array(a).reshape(-1, 2)).T)
    assert ((m >= 0) & (m <= 1)).all()


@given(interval(min_len=1e-3))
def test_an_interval_has_iou_1_with_itself(a):
    assert interval_iou(a, a) == 1.0


def test_iou_of_known_intervals():
    assert interval_iou([0, 2], [1, 3]) == pytest.approx(1 / 3)
    assert interval_iou([0, 4], [1, 2]) == pytest.approx(1 / 4)
    assert interval_iou([0, 1], [2, 3]) == 0.0
    assert interval_iou([0, 1], [1, 2]) == 0.0  # touching
    assert interval_iou([5, 5], [5, 5]) == 1.0  # the same point
    assert interval_iou([5, 5], [4, 6]) == 0.0  # a point inside an interval


# --------------------------------------------------------------------------- matching


def test_matching_is_greedy_by_descending_score():
    truth = np.array([[0.0, 10.0]])
    pred = np.array([[0.0, 9.0], [2.0, 10.0]])  # IoU 0.9 and 0.8
    # The higher score wins even with the lower IoU; the other is a false positive.
    assert greedy_match(pairwise_iou(pred, truth), np.array([0.4, 0.9]), 0.5).tolist() == [-1, 0]
    assert greedy_match(pairwise_iou(pred, truth), np.array([0.9, 0.4]), 0.5).tolist() == [0, -1]


def test_a_prediction_takes_its_best_free_truth_above_the_threshold():
    truth = np.array([[0.0, 10.0], [10.0, 20.0]])
    pred = np.array([[4.0, 16.0], [1.0, 11.0]])  # 1st: IoU 0.375 / 0.375; 2nd: 0.82 / 0.05
    iou = pairwise_iou(pred, truth)
    assert greedy_match(iou, np.array([0.9, 0.8]), 0.3).tolist() == [1, 0]  # tie -> the later truth (COCO)
    assert greedy_match(iou, np.array([0.9, 0.8]), 0.5).tolist() == [-1, 0]


def test_lenses_hit_within_the_tolerance_one_to_one():
    truth_m = np.array([100.000])
    pred_m = np.array([100.004, 100.003, 100.006])
    assert greedy_point_match(pred_m, np.array([0.9, 0.5, 0.95]), truth_m, 0.005).tolist() == [0, -1, -1]
    assert greedy_point_match(np.array([100.005]), np.array([1.0]), truth_m, 0.005).tolist() == [0]


# --------------------------------------------------------------------------- AP


def test_all_point_and_101_point_ap_of_a_known_ranking():
    recall, precision = pr_curve(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), n_truth=2)
    assert recall.tolist() == [0.5, 0.5, 1.0]
    assert precision == pytest.approx([1.0, 0.5, 2 / 3])
    assert average_precision(recall, precision, "all") == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert average_precision(recall, precision, "101") == pytest.approx((51 * 1.0 + 50 * 2 / 3) / 101)


def test_ap_is_zero_without_predictions_and_nan_without_truth():
    overall, _ = evaluate_images({"a": ImageIntervals(layer_truth_m=[[1.0, 1.01]])})
    assert overall["ap@0.5"] == 0.0 and overall["recall"] == 0.0 and overall["f1"] == 0.0
    assert np.isnan(overall["precision"])
    overall, _ = evaluate_images({"a": ImageIntervals(layer_pred_m=[[1.0, 1.01]], layer_score=[0.5])})
    assert np.isnan(overall["ap@0.5"]) and overall["precision"] == 0.0 and overall["fp"] == 1


def test_ap_pools_all_images_ranked_by_score():
    images = {
        "a": ImageIntervals(layer_truth_m=[[1.0, 1.01]], layer_pred_m=[[1.0, 1.01]], layer_score=[0.9]),
        "b": ImageIntervals(layer_truth_m=[[1.0, 1.01]], layer_pred_m=[[2.0, 2.01], [1.0, 1.01]],
                            layer_score=[0.95, 0.5]),
    }
    overall, per_image = evaluate_images(images)
    # Pooled: FP (0.95), TP (0.9), TP (0.5) -> precision 2/3 at recall 0.5 and 1.
    assert overall["ap@0.5"] == pytest.approx(2 / 3)
    assert per_image["a"]["ap@0.5"] == 1.0 and per_image["b"]["ap@0.5"] == pytest.approx(0.5)
    assert overall["map"] == pytest.approx(2 / 3)


def test_matching_stays_within_an_image():
    images = {"a": ImageIntervals(layer_truth_m=[[1.0, 1.01]]),
              "b": ImageIntervals(layer_pred_m=[[1.0, 1.01]], layer_score=[0.9])}
    overall, per_image = evaluate_images(images)
    assert (overall["tp"], overall["fp"], overall["fn"]) == (0, 1, 1)
    assert per_image["a"]["fn"] == 1 and per_image["b"]["fp"] == 1


# --------------------------------------------------------------------------- properties


@settings(max_examples=60, deadline=None)
@given(layer_set())
def test_a_perfect_prediction_scores_1(data):
    truth, scores = data
    overall, _ = evaluate_images({"x": ImageIntervals(layer_truth_m=truth, layer_pred_m=truth, layer_score=scores)})
    assert overall["precision"] == overall["recall"] == overall["f1"] == 1.0
    for t in AP_IOUS:
        assert overall[f"ap@{t:g}"] == 1.0
    assert overall["map"] == 1.0
    assert overall["boundary_mm"] == 0.0


@settings(max_examples=60, deadline=None)
@given(layer_set(), st.lists(st.floats(-0.02, 0.02), min_size=8, max_size=8),
       st.floats(min_value=0.0, max_value=1.0), st.floats(min_value=0.0, max_value=0.05))
def test_adding_a_false_positive_never_raises_precision_or_ap(data, jitter, fp_score, fp_len):
    truth, scores = data
    pred = truth + np.array(jitter[:len(truth)])[:, None]
    extra = np.array([[200.0, 200.0 + fp_len]])  # far from every truth: matches nothing
    before, _ = evaluate_images({"x": ImageIntervals(layer_truth_m=truth, layer_pred_m=pred, layer_score=scores)})
    after, _ = evaluate_images({"x": ImageIntervals(layer_truth_m=truth, layer_pred_m=np.vstack([pred, extra]),
                                                    layer_score=np.append(scores, fp_score))})
    assert after["fp"] == before["fp"] + 1 and after["tp"] == before["tp"]
    if before["tp"] + before["fp"]:
        assert after["precision"] <= before["precision"]
    for t in AP_IOUS:
        assert after[f"ap@{t:g}"] <= before[f"ap@{t:g}"] + 1e-12


# --------------------------------------------------------------------------- ignore regions, lenses, bins


def test_an_unmatched_prediction_on_an_ignore_region_counts_neither_way():
    truth = [[10.000, 10.004]]
    ignore = [[10.100, 10.100]]  # a point: padded +/- 5 mm
    pred = [[10.000, 10.004], [10.103, 10.106], [10.110, 10.112]]
    overall, _ = evaluate_images({"x": ImageIntervals(layer_truth_m=truth, ignore_m=ignore, layer_pred_m=pred,
                                                      layer_score=[0.5, 0.9, 0.8])})
    assert (overall["tp"], overall["fp"], overall["n_ignored"], overall["n_pred"]) == (1, 1, 1, 3)
    assert overall["precision"] == 0.5
    # Pooled AP sees TP (0.5) after only the FP (0.8), not the ignored one (0.9).
    assert overall["ap@0.5"] == pytest.approx(0.5)
    narrow, _ = evaluate_images({"x": ImageIntervals(layer_truth_m=truth, ignore_m=ignore, layer_pred_m=pred,
                                                     layer_score=[0.5, 0.9, 0.8])}, ignore_pad_mm=1.0)
    assert narrow["n_ignored"] == 0 and narrow["fp"] == 2


def test_a_matched_prediction_on_an_ignore_region_is_a_true_positive():
    truth = [[10.000, 10.004]]
    overall, _ = evaluate_images({"x": ImageIntervals(layer_truth_m=truth, ignore_m=[[10.002, 10.002]],
                                                      layer_pred_m=truth, layer_score=[0.5])})
    assert overall["tp"] == 1 and overall["n_ignored"] == 0


def test_lens_hit_rate_and_precision():
    img = ImageIntervals(lens_truth_m=[50.000, 50.100], lens_pred_m=[50.004, 50.003, 50.300, 50.204],
                         lens_score=[0.9, 0.8, 0.7, 0.6], ignore_m=[[50.200, 50.200]])
    overall, _ = evaluate_images({"x": img}, lens_tol_mm=5.0)
    # One hit; the second near 50.000 finds its truth taken; 50.204 sits on the padded ignore point.
    assert overall["lens_hits"] == 1 and overall["n_lens_truth"] == 2 and overall["n_lens_pred"] == 4
    assert overall["lens_hit_rate"] == 0.5
    assert overall["lens_precision"] == pytest.approx(1 / 3)
    wide, _ = evaluate_images({"x": img}, lens_tol_mm=200.0)
    assert wide["lens_hits"] == 2


def test_thickness_bins():
    assert thickness_bin(np.array([0.5, 1.0, 2.999, 3.0, 9.99, 10.0, 25.0])).tolist() == [
        "lt1mm", "1to3mm", "1to3mm", "3to10mm", "3to10mm", "gt10mm", "gt10mm"]
    assert thickness_bin(np.array([(125.7738 - 125.7708) * 1000])).tolist() == ["3to10mm"]


def test_boundary_error_and_recall_by_thickness():
    truth = np.array([[1.0, 1.0005], [2.0, 2.002], [3.0, 3.005], [4.0, 4.020]])
    pred = np.array([[2.0, 2.0022], [3.001, 3.005], [4.001, 4.021]])  # errors: 0/0.2, 1/0, 1/1 mm
    overall, _ = evaluate_images({"x": ImageIntervals(layer_truth_m=truth, layer_pred_m=pred,
                                                      layer_score=[0.9, 0.8, 0.7])})
    assert overall["recall_lt1mm"] == 0.0 and overall["n_truth_lt1mm"] == 1
    assert overall["recall_1to3mm"] == overall["recall_3to10mm"] == overall["recall_gt10mm"] == 1.0
    assert np.isnan(overall["boundary_mm_lt1mm"])
    assert overall["boundary_mm_1to3mm"] == pytest.approx(0.1)
    assert overall["boundary_mm_3to10mm"] == pytest.approx(0.5)
    assert overall["boundary_mm_gt10mm"] == pytest.approx(1.0)
    assert overall["boundary_mm"] == pytest.approx((0 + 0.2 + 1 + 0 + 1 + 1) / 6)


def test_summaries_have_the_documented_keys():
    overall, per_image = evaluate_images({"x": ImageIntervals()})
    keys = ["precision", "recall", "f1", "ap@0.3", "ap@0.4", "ap@0.5", "ap@0.6", "ap@0.7", "map", "boundary_mm",
            "boundary_mm_lt1mm", "boundary_mm_1to3mm", "boundary_mm_3to10mm", "boundary_mm_gt10mm",
            "recall_lt1mm", "recall_1to3mm", "recall_3to10mm", "recall_gt10mm",
            "lens_hit_rate", "lens_precision", "n_truth", "n_pred", "tp", "fp", "fn"]
    assert set(keys) <= set(overall) and list(overall) == metric_keys() == list(per_image["x"])


# --------------------------------------------------------------------------- DataFrame entry point


def _layers(image: str, spans_m, kind: str = "melt_layer", score: float | None = None) -> pd.DataFrame:
    rows = [{"image": image, "type": kind, "depth_from_m": a, "depth_to_m": b} for a, b in spans_m]
    table = pd.DataFrame(rows, columns=["image", "type", "depth_from_m", "depth_to_m"])
    if score is not None:
        table["score"] = np.linspace(score, score / 2, len(table))
    return table


def _truth() -> pd.DataFrame:
    return pd.concat([
        _layers("227.bmp", [(124.50, 124.506), (124.80, 124.8004), (125.10, 125.115)]),
        _layers("227.bmp", [(124.90, 124.90)], "melt_lens"),
        _layers("227.bmp", [(125.30, 125.30)], "uncertain"),
        _layers("230.bmp", [(126.10, 126.1025), (126.40, 126.408)]),
        _layers("230.bmp", [(126.70, 126.702)], "melt_lens"),
    ], ignore_index=True)


def test_truth_scored_against_itself_is_perfect():
    truth = _truth()
    pred = truth[truth["type"].isin(["melt_layer", "melt_lens"])].assign(score=0.8)
    result = evaluate_intervals(pred, truth)
    o = result.overall
    assert o["f1"] == 1.0 and o["map"] == 1.0 and o["boundary_mm"] == 0.0
    assert all(o[f"ap@{t:g}"] == 1.0 for t in AP_IOUS)
    assert o["lens_hit_rate"] == 1.0 and o["lens_precision"] == 1.0
    assert o["n_images"] == 2 and list(result.per_image["image"]) == ["227.bmp", "230.bmp"]
    assert (result.per_image["f1"] == 1.0).all()


def test_every_prediction_shifted_by_1_mm_gives_a_boundary_error_of_1_mm():
    truth = pd.concat([_layers("a.png", [(10.0, 10.005), (10.1, 10.108), (10.2, 10.230)]),
                       _layers("b.png", [(20.0, 20.006)])], ignore_index=True)
    for shift_m in (0.001, -0.001):
        pred = truth.assign(depth_from_m=truth["depth_from_m"] + shift_m, depth_to_m=truth["depth_to_m"] + shift_m,
                            score=0.9)
        o = evaluate_intervals(pred, truth).overall
        assert o["tp"] == 4
        assert o["boundary_mm"] == pytest.approx(1.0, abs=0.01)


def test_missing_columns_are_named():
    truth = _truth()
    with pytest.raises(EvaluationError, match=r"dets\.csv: column\(s\) score missing"):
        evaluate_intervals(truth, truth, pred_name="dets.csv")
    with pytest.raises(EvaluationError, match=r"column\(s\) image, type missing"):
        evaluate_intervals(truth.assign(score=1.0), truth.drop(columns=["image", "type"]))


def test_to_dict_is_json_ready():
    import json

    truth = _truth()
    result = evaluate_intervals(truth.iloc[:0].assign(score=[]), truth)
    text = json.dumps(result.to_dict(), allow_nan=False)
    back = json.loads(text)
    assert back["overall"]["precision"] is None and back["overall"]["recall"] == 0.0
    assert len(back["per_image"]) == 2


# --------------------------------------------------------------------------- COCOeval cross-check


def _random_images(seed: int, n_images: int = 4):
    """Random truth layers and predictions (jittered copies, duplicates, strays) in arbitrary units."""
    rng = np.random.default_rng(seed)
    images = {}
    for i in range(n_images):
        n = int(rng.integers(1, 9))
        tops = np.sort(rng.uniform(0, 900, n))
        truth = np.stack([tops, tops + rng.uniform(2, 40, n)], axis=1)
        picks = rng.choice(n, size=int(rng.integers(0, n + 1)), replace=True)
        jitter = rng.normal(0, 3, (picks.size, 2))
        copies = np.sort(truth[picks] + jitter, axis=1)
        copies[:, 1] = np.maximum(copies[:, 1], copies[:, 0] + 0.5)
        stray_tops = rng.uniform(0, 950, int(rng.integers(0 if picks.size else 1, 4)))
        strays = np.stack([stray_tops, stray_tops + rng.uniform(1, 30, stray_tops.size)], axis=1)
        pred = np.vstack([copies, strays])
        images[f"img{i}"] = ImageIntervals(layer_truth_m=truth, layer_pred_m=pred,
                                           layer_score=rng.uniform(0.05, 1.0, len(pred)))
    return images


def _coco_eval(images: dict[str, ImageIntervals], width: float = 100.0):
    """COCOeval of full-width boxes [x=0, y=from, w=width, h=to-from]; also the id maps."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    dataset = {"info": {"description": "meltloc cross-check"}, "licenses": [],
               "images": [], "annotations": [], "categories": [{"id": 1, "name": "melt_layer"}]}
    dets, gt_index, dt_index = [], {}, {}
    for img_id, (name, img) in enumerate(images.items(), start=1):
        dataset["images"].append({"id": img_id, "file_name": name, "width": int(width), "height": 1000})
        for t, (a, b) in enumerate(img.layer_truth_m):
            ann_id = len(dataset["annotations"]) + 1
            dataset["annotations"].append({"id": ann_id, "image_id": img_id, "category_id": 1, "iscrowd": 0,
                                           "bbox": [0.0, a, width, b - a], "area": width * (b - a)})
            gt_index[ann_id] = t
        for p, ((a, b), s) in enumerate(zip(img.layer_pred_m, img.layer_score)):
            dets.append({"image_id": img_id, "category_id": 1, "bbox": [0.0, a, width, b - a], "score": float(s)})
            dt_index[len(dets)] = (name, p)  # loadRes numbers results 1, 2, ... in order
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = dataset
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, "bbox")
        ev.params.iouThrs = np.array(AP_IOUS)
        ev.params.maxDets = [1000]
        ev.params.areaRng = [[0.0, 1e10]]
        ev.params.areaRngLbl = ["all"]
        ev.params.useCats = 1
        ev.evaluate()
        ev.accumulate()
    return ev, gt_index, dt_index


@pytest.mark.parametrize("seed", range(6))
def test_the_same_matches_precision_recall_and_ap_as_cocoeval(seed):
    images = _random_images(seed)
    ev, gt_index, dt_index = _coco_eval(images)
    names = list(images)
    matches = {name: match_image(img, AP_IOUS) for name, img in images.items()}

    for e in ev.evalImgs:
        if e is None:
            continue
        name = names[e["image_id"] - 1]
        for k in range(len(AP_IOUS)):
            for det_id, gt_id in zip(e["dtIds"], e["dtMatches"][k]):
                dname, p = dt_index[det_id]
                assert dname == name
                want = gt_index[int(gt_id)] if gt_id > 0 else -1
                assert matches[name].layer_match[k, p] == want, (name, AP_IOUS[k], p)

    for k, t in enumerate(AP_IOUS):
        tp = sum(int((e["dtMatches"][k] > 0).sum()) for e in ev.evalImgs if e is not None)
        fp = sum(int(((e["dtMatches"][k] == 0) & ~e["dtIgnore"][k].astype(bool)).sum())
                 for e in ev.evalImgs if e is not None)
        ours, _ = evaluate_images(images, iou=t, ap_points="101")
        assert (ours["tp"], ours["fp"]) == (tp, fp)
        assert ours["recall"] == pytest.approx(ev.eval["recall"][k, 0, 0, 0], abs=1e-12)
        assert ours["precision"] == pytest.approx(tp / (tp + fp))
        coco_ap = float(np.mean(ev.eval["precision"][k, :, 0, 0, 0]))
        assert ours[f"ap@{t:g}"] == pytest.approx(coco_ap, abs=1e-9)
