"""The heads: the shipped weights find the sample's layers, each decoder turns known scores into known intervals,
and every registered head answers the common call (a section in, intervals in its image rows out).

Letters: N = output positions of the regression head, C = its classes.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from meltloc.detections import Detection, to_depths
from meltloc.geometry import CoreBounds, DepthScale
from meltloc.heads import head_class, head_names, load_detector, registered
from meltloc.heads.regression.net import RegressionConfig, RegressionNet, decode_strip
from meltloc.heads.threshold import detect_profile
from meltloc.manifest import read_manifest
from meltloc.metrics import ImageIntervals, evaluate_intervals, match_image
from meltloc.section import Section, load_section

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "sample"
SHIPPED_WEIGHTS = REPO / "weights" / "regression.pt"
SHIPPED_YOLO = REPO / "weights" / "yolo.pt"

MIN_F1 = 0.95
"""Melt-layer F1 at IoU 0.5 the shipped weights must reach on the shipped sample."""
MAX_BOUNDARY_MM = 0.3
"""Boundary error (mm) the shipped weights must stay within on the sample's matched layers."""


# ---------------------------------------------------------------------- shipped weights on the shipped sample
def _truth() -> pd.DataFrame:
    return pd.read_csv(SAMPLE / "truth.csv")


def _detect_sample(weights: Path) -> pd.DataFrame:
    """``weights`` on every image of ``datasets/sample/images``, as detect writes them (depths in m)."""
    detector = load_detector(weights)
    manifest = read_manifest(SAMPLE / "sections.tab")
    rows = []
    for path in sorted((SAMPLE / "images").iterdir()):
        section = load_section(path, manifest)
        rows += to_depths(section, detector.detect(section))
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def shipped_detections() -> pd.DataFrame:
    """``weights/regression.pt`` on the sample."""
    return _detect_sample(SHIPPED_WEIGHTS)


def _boundary_errors_mm(pred: pd.DataFrame, truth: pd.DataFrame, iou: float = 0.5) -> np.ndarray:
    """|start error| and |end error| in mm of every melt layer matched at ``iou`` (the matching of evaluate)."""
    errors = [np.zeros(0)]
    for image in sorted(set(truth["image"]) | set(pred["image"])):
        p = pred[(pred["image"] == image) & (pred["type"] == "melt_layer")]
        t = truth[(truth["image"] == image) & (truth["type"] == "melt_layer")]
        matched = match_image(ImageIntervals(layer_pred_m=p[["depth_from_m", "depth_to_m"]].to_numpy(float),
                                             layer_score=p["score"].to_numpy(float),
                                             layer_truth_m=t[["depth_from_m", "depth_to_m"]].to_numpy(float)), [iou])
        hit = np.flatnonzero(matched.layer_match[0] >= 0)
        errors.append(np.abs(matched.layer_pred_m[hit] - matched.layer_truth_m[matched.layer_match[0][hit]]).ravel()
                      * 1000)
    return np.concatenate(errors)


def _shortfalls(pred: pd.DataFrame, boundary: str = "mean") -> list[str]:
    """What a detection table misses of the bar on the sample: F1 >= MIN_F1 and the ``boundary`` ("mean" as
    evaluate reports it, or "max": every matched boundary) within MAX_BOUNDARY_MM. Empty when it meets it."""
    columns = ["image", "type", "depth_from_m", "depth_to_m", "score"]
    pred = pred if len(pred) else pd.DataFrame(columns=columns)
    figures = evaluate_intervals(pred, _truth()).overall
    errors = _boundary_errors_mm(pred, _truth())
    worst = float(errors.max()) if errors.size else math.nan
    mm = figures["boundary_mm"] if boundary == "mean" else worst
    out = []
    if not figures["f1"] >= MIN_F1:
        out.append(f"F1 {figures['f1']:.3f} < {MIN_F1} ({figures['tp']} of {figures['n_truth']} layers, "
                   f"{figures['fp']} false)")
    if not mm <= MAX_BOUNDARY_MM:
        out.append(f"{boundary} boundary error {mm:.3f} mm > {MAX_BOUNDARY_MM} mm")
    return out


def test_shipped_weights_find_the_sample_layers_with_tight_boundaries(shipped_detections):
    # Measured: 10 of 11 layers, no false one (F1 0.952); mean boundary error 0.08 mm.
    assert _shortfalls(shipped_detections, "mean") == []
    assert set(shipped_detections["image"]) == {"227.png", "230.png", "233.png"}


@pytest.fixture(scope="module")
def shipped_yolo_detections() -> pd.DataFrame:
    """``weights/yolo.pt`` on the sample."""
    return _detect_sample(SHIPPED_YOLO)


def test_shipped_yolo_weights_find_the_sample_layers_with_tight_boundaries(shipped_yolo_detections):
    """The second shipped detector (``--weights weights/yolo.pt``) meets the same bar on the sample."""
    # Measured: all 11 layers, no false one (F1 1.000); mean boundary error 0.05 mm, the worst of 22 0.13 mm.
    assert _shortfalls(shipped_yolo_detections, "mean") == []
    assert _shortfalls(shipped_yolo_detections, "max") == []
    assert set(shipped_yolo_detections["image"]) == {"227.png", "230.png", "233.png"}


def test_every_matched_boundary_of_the_shipped_weights_is_within_0_3_mm(shipped_detections):
    # Measured: the worst of the 20 matched boundaries is 0.22 mm off (the sample has 0.25 mm per pixel).
    assert _shortfalls(shipped_detections, "max") == []


def test_the_sample_check_fails_on_shifted_or_missing_detections(shipped_detections):
    """The check above has teeth: every boundary 1 mm too deep, or nothing found, does not pass it."""
    shifted = shipped_detections.copy()
    shifted[["depth_from_m", "depth_to_m"]] += 0.001
    failures = _shortfalls(shifted, "mean")
    assert any("F1" in f for f in failures) and any("boundary" in f for f in failures), failures
    assert _boundary_errors_mm(shifted, _truth()).min() == pytest.approx(1.0, abs=0.5)

    failures = _shortfalls(shipped_detections.iloc[0:0], "mean")
    assert failures and failures[0].startswith("F1 0.000"), failures

    # one layer fewer fails too: on the sample the shipped weights have no slack
    assert _shortfalls(shipped_detections.iloc[1:], "mean") != []


# ---------------------------------------------------------------------- each decoder: known scores in, intervals out
def _regression_scores(n: int = 400, n_classes: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Empty per-position probabilities (C, N) and boxes (N, 2) to fill in."""
    return torch.zeros(n_classes, n), torch.zeros(n, 2)


def test_regression_decoder_turns_a_band_of_agreeing_positions_into_one_interval():
    probs, boxes = _regression_scores()
    probs[0, 100:121] = 0.9
    boxes[100:121] = torch.tensor([200.0, 240.0])
    found = decode_strip(probs, boxes, ("melt_layer", "melt_lens"), score_threshold=0.5, nms_iou=0.3)
    assert len(found) == 1
    name, score, start, end = found[0]
    assert name == "melt_layer" and score == pytest.approx(0.9)
    assert (start, end) == pytest.approx((200.0, 240.0))


def test_regression_decoder_reports_nothing_below_the_threshold():
    probs, boxes = _regression_scores()
    probs[0, 100:121] = 0.9
    boxes[100:121] = torch.tensor([200.0, 240.0])
    assert decode_strip(probs, boxes, ("melt_layer", "melt_lens"), score_threshold=0.95, nms_iou=0.3) == []


def test_regression_decoder_keeps_two_bands_apart_and_averages_their_boundaries():
    probs, boxes = _regression_scores()
    probs[0, 100:121] = 0.9
    boxes[100:121] = torch.tensor([200.0, 240.0])
    probs[1, 300:306] = 0.7                                   # a lens, its positions pointing 2 rows either way
    boxes[300:306:2] = torch.tensor([598.0, 628.0])
    boxes[301:306:2] = torch.tensor([602.0, 632.0])
    found = decode_strip(probs, boxes, ("melt_layer", "melt_lens"), score_threshold=0.5, nms_iou=0.3)
    assert [(n, round(s, 3)) for n, s, _, _ in found] == [("melt_layer", 0.9), ("melt_lens", 0.7)]
    assert found[0][2:] == pytest.approx((200.0, 240.0))
    assert found[1][2:] == pytest.approx((600.0, 630.0))      # the mean of the agreeing positions


def test_threshold_decoder_takes_the_half_maximum_width_of_each_dark_run():
    z = np.zeros(500, dtype=np.float32)
    z[100:140] = 8.0                                          # peak 2 k: score 1
    z[300:305] = z[315:320] = 2.5                             # shoulders above k / 2, below the half maximum
    z[305:315] = 6.0                                          # peak 1.5 k: score 0.75
    z[400:410] = 1.9                                          # never above k / 2
    found = detect_profile(z, k=4.0)
    assert found == [("melt_layer", 1.0, 100.0, 140.0), ("melt_layer", 0.75, 305.0, 315.0)]
    assert detect_profile(z, k=4.0, score_threshold=0.8) == [("melt_layer", 1.0, 100.0, 140.0)]
    assert detect_profile(np.zeros(500, dtype=np.float32), k=4.0) == []


def _classifier_config():
    from meltloc.heads.classifiers.config import ClassifierConfig

    return ClassifierConfig()  # 10 rows per mm: 50-row windows every 5 rows, k = 10 rows


def test_classifier_decoder_turns_a_run_of_positive_windows_into_the_layer_they_overlap():
    """Windows overlapping rows 200-240 by at least k = 10 rows start at 160 ... 230; their run decodes to 200-240."""
    from meltloc.heads.classifiers.windows import decode_windows

    cfg = _classifier_config()
    starts = np.arange(0, 951, 5)
    probs = np.full((starts.size, 4), 0.1)
    probs[(starts >= 160) & (starts <= 230)] = 0.9
    assert decode_windows(starts, probs, cfg, 0.5, n_rows=1000) == [pytest.approx((0.9, 200.0, 240.0))]
    assert decode_windows(starts, probs, cfg, 0.95, n_rows=1000) == []


def test_classifier_decoder_bridges_one_negative_window_and_splits_at_two():
    from meltloc.heads.classifiers.windows import decode_windows

    cfg = _classifier_config()
    starts = np.arange(0, 951, 5)
    probs = np.full((starts.size, 4), 0.1)
    probs[(starts >= 500) & (starts <= 560) & (starts != 530)] = 0.8   # 13 windows, one negative among them
    (score, a, b), = decode_windows(starts, probs, cfg, 0.5, n_rows=1000)
    assert (a, b) == pytest.approx((540.0, 570.0))
    assert score == pytest.approx((12 * 0.8 + 0.1) / 13)
    probs[starts == 535] = 0.1                                          # now two negative windows in a row
    found = decode_windows(starts, probs, cfg, 0.5, n_rows=1000)
    # each run is too short to pin both ends: k rows centred on its windows
    assert sorted(found, key=lambda r: r[1]) == [pytest.approx((0.8, 532.5, 542.5)), pytest.approx((0.8, 570.0, 580.0))]


class _FixedYolo(torch.nn.Module):
    """A stand-in YOLO network: for every tile the same ultralytics raw prediction (B, 4 + nc, anchors), boxes as
    centre x, centre y, width, height in input pixels, one score per class."""

    def __init__(self, boxes: list[tuple[float, float, float, float, int, float]], n_classes: int = 2,
                 n_anchors: int = 16):
        super().__init__()
        pred = torch.zeros(4 + n_classes, n_anchors)
        for i, (cx, cy, w, h, cls, score) in enumerate(boxes):
            pred[:4, i] = torch.tensor([cx, cy, w, h])
            pred[4 + cls, i] = score
        self.register_buffer("pred", pred)
        self.inputs: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.inputs.append(tuple(x.shape))
        return self.pred[None].expand(x.shape[0], -1, -1).clone()


def test_yolo_decoder_maps_network_boxes_through_the_letterbox_back_to_strip_rows():
    """A 100-row strip in one 128-row tile at imgsz 256: scaled by 2 to 200 rows and padded by 28 rows on top, so
    input rows y are strip rows (y - 28) / 2."""
    from meltloc.heads.yolo.env import import_ultralytics
    from meltloc.heads.yolo.config import YoloConfig
    from meltloc.heads.yolo.infer import detect_strip

    import_ultralytics()
    cfg = YoloConfig(tile_rows=128, tile_overlap=0.25, imgsz=256, input_hw=(256, 128), width=64)
    strip = np.full((100, 64), 150, dtype=np.uint8)
    net = _FixedYolo([(64.0, 128.0, 128.0, 40.0, 0, 0.9),        # input rows 108-148: strip rows 40-60
                      (64.0, 198.0, 100.0, 12.0, 1, 0.6),        # input rows 192-204: strip rows 82-88, a lens
                      (64.0, 60.0, 128.0, 10.0, 0, 0.1)])        # below the threshold
    found = detect_strip(net, strip, cfg, score_threshold=0.25)
    assert net.inputs == [(1, 3, 256, 128)]
    assert [(n, round(s, 3)) for n, s, _, _ in found] == [("melt_layer", 0.9), ("melt_lens", 0.6)]
    assert found[0][2:] == pytest.approx((40.0, 60.0))
    assert found[1][2:] == pytest.approx((82.0, 88.0))
    assert detect_strip(net, strip, cfg, score_threshold=0.95) == []


# ---------------------------------------------------------------------- every head through the common call
TOP_ROW, BOTTOM_ROW = 50.0, 550.0
TOP_M, BOTTOM_M = 100.000, 100.050
"""The small section: 500 image rows of core for 50 mm, 10 rows per mm, as every head's default working scale, so
strip row s is image row 50 + s."""
BAND_STRIP_ROWS = (200.0, 240.0)
BAND_IMAGE_ROWS = (250.0, 290.0)


def _small_section() -> Section:
    """600 x 80 px: black background, ice (grey 200, a little noise) on rows 50-550 and columns 8-71, a dark
    band (grey 100) on image rows 250-290."""
    rng = np.random.default_rng(0)
    image = np.zeros((600, 80), dtype=np.uint8)
    image[50:550, 8:72] = np.clip(rng.normal(200, 3, size=(500, 64)), 0, 255).astype(np.uint8)
    image[250:290, 8:72] = 100
    bounds = CoreBounds(TOP_ROW, BOTTOM_ROW, 8, 71, 600, 80)
    return Section("1.png", None, image, bounds, DepthScale(TOP_M, BOTTOM_M, TOP_ROW, BOTTOM_ROW))


class _FixedRegression(torch.nn.Module):
    """A stand-in regression network: positions whose centre lies in the band score 0.9 as melt_layer and point
    at the band's strip rows."""

    centers = RegressionNet.centers

    def __init__(self, cfg: RegressionConfig):
        super().__init__()
        self.cfg = cfg

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = x.shape[2] // self.cfg.stride
        centers = self.centers(n)
        a, b = BAND_STRIP_ROWS
        inside = (centers > a) & (centers < b)
        logits = torch.full((1, len(self.cfg.classes), n), -10.0)
        logits[0, 0, inside] = math.log(0.9 / 0.1)
        distances = torch.stack([centers - a, b - centers]).clamp(min=0)[None]
        return logits, distances


def _regression_detector():
    cfg = RegressionConfig()
    checkpoint = {"head": "regression", "config": cfg.to_dict(), "model": RegressionNet(cfg).state_dict(),
                  "score_threshold": 0.5}
    detector = head_class("regression")(checkpoint)
    detector.model = _FixedRegression(cfg)
    return detector, [Detection("melt_layer", 0.9, *BAND_IMAGE_ROWS)]


def _threshold_detector():
    from meltloc.heads.threshold import ThresholdConfig

    checkpoint = {"head": "threshold", "config": ThresholdConfig().to_dict(), "model": {}, "score_threshold": 0.5}
    # no network: the image's own dark band, far darker than k robust sd, scores 1
    return head_class("threshold")(checkpoint), [Detection("melt_layer", 1.0, *BAND_IMAGE_ROWS)]


def _classifier_detector():
    from meltloc.heads.classifiers.config import default_config
    from meltloc.heads.classifiers.nets import build_model

    cfg = default_config("simple-cnn")
    cfg.input_cols = 32
    checkpoint = {"head": "simple-cnn", "config": cfg.to_dict(), "model": build_model(cfg).state_dict(),
                  "score_threshold": 0.5}
    detector = head_class("simple-cnn")(checkpoint)
    a, b = BAND_STRIP_ROWS
    k = cfg.min_overlap_rows

    def fixed_windows(pixels):  # windows overlapping the band by k rows or more say melt (all four flips)
        starts = np.arange(0, pixels.shape[0] - cfg.window_rows + 1, cfg.stride_rows)
        hit = (starts + cfg.window_rows - k >= a) & (starts + k <= b)
        return starts, np.repeat(np.where(hit, 0.9, 0.1)[:, None], len(cfg.flips), axis=1)

    detector.predict_strip = fixed_windows
    return detector, [Detection("melt_layer", 0.9, *BAND_IMAGE_ROWS)]


def _yolo_detector():
    from meltloc.heads.yolo.env import import_ultralytics

    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    from meltloc.heads.yolo.config import YoloConfig

    cfg = YoloConfig()  # one 640-row tile at scale 1: the 500-row strip is padded by 70 rows on top
    network = DetectionModel(cfg="yolov8n.yaml", nc=2, verbose=False)
    checkpoint = {"head": "yolo", "config": cfg.to_dict(), "score_threshold": 0.25,
                  "model": {"yaml": dict(network.yaml), "state_dict": network.state_dict()}}
    detector = head_class("yolo")(checkpoint)
    a, b = BAND_STRIP_ROWS
    detector.model = _FixedYolo([(32.0, 70 + (a + b) / 2, 64.0, b - a, 0, 0.9)])
    return detector, [Detection("melt_layer", 0.9, *BAND_IMAGE_ROWS)]


STUBBED = {"regression": _regression_detector, "threshold": _threshold_detector, "simple-cnn": _classifier_detector,
           "yolo": _yolo_detector}
"""Per head class (by its first name): its detector with a stand-in network, and what detect must return."""
HEAD_CLASSES = sorted({cls.name for cls in registered().values()})


def _same(found: list[Detection], expected: list[Detection], rows_tol: float) -> None:
    assert [d.type for d in found] == [d.type for d in expected], found
    for d, e in zip(found, expected):
        assert d.score == pytest.approx(e.score, abs=1e-4), found
        assert (d.row_from, d.row_to) == pytest.approx((e.row_from, e.row_to), abs=rows_tol), found


@pytest.mark.parametrize("name", HEAD_CLASSES)
def test_every_head_answers_the_common_call_in_image_rows(name):
    """detect(section) gives what the head's network (a stand-in here) found, at the section image's rows."""
    assert name in STUBBED, f"head '{name}' is registered but has no contract test: add it to STUBBED"
    detector, expected = STUBBED[name]()
    section = _small_section()
    found = detector.detect(section)
    _same(found, expected, rows_tol=1.0 if name == "threshold" else 1e-3)
    assert detector.detect_many(section, [None]) == [found]
    if expected[0].score < 0.95:
        assert detector.detect(section, score_threshold=0.95) == []


def test_the_registry_names_every_head_of_the_contract():
    assert set(head_names()) >= {"regression", "yolo", "threshold", "simple-cnn", "enhanced-cnn", "resnet34",
                                 "vgg16"}
    assert {head_class(n).name for n in head_names()} == set(HEAD_CLASSES)


def test_a_detected_band_comes_out_in_meters():
    detector, _ = _regression_detector()
    section = _small_section()
    (row,) = to_depths(section, detector.detect(section))
    assert row["image"] == "1.png" and row["type"] == "melt_layer"
    assert (row["depth_from_m"], row["depth_to_m"]) == pytest.approx((100.020, 100.024), abs=1e-7)
    assert row["thickness_mm"] == pytest.approx(4.0, abs=1e-4)


def _ten_layer_truth_and_detections(tp_fp_by_threshold):
    """Ten true 1 mm layers in one image, and a detections-at-threshold callable giving (true found, false) per
    threshold band: ``tp_fp_by_threshold`` maps an upper bound of the threshold to (tp, fp)."""
    truth = pd.DataFrame({"image": "a.png", "type": "melt_layer", "depth_from_m": [100.0 + 0.1 * i for i in range(10)],
                          "depth_to_m": [100.001 + 0.1 * i for i in range(10)]})

    def at(threshold):
        tp, fp = next(v for upper, v in sorted(tp_fp_by_threshold.items()) if threshold <= upper + 1e-9)
        rows = [dict(depth_from_m=100.0 + 0.1 * i, depth_to_m=100.001 + 0.1 * i) for i in range(tp)]
        rows += [dict(depth_from_m=100.05 + 0.1 * i, depth_to_m=100.051 + 0.1 * i) for i in range(fp)]
        table = pd.DataFrame(rows, columns=["depth_from_m", "depth_to_m"])
        return table.assign(image="a.png", type="melt_layer", score=0.9, row_from=0.0, row_to=1.0)

    return truth, at


def test_the_operating_threshold_ignores_validation_differences_smaller_than_one_layer():
    """8 of 10 layers and one false one up to 0.5, 8 and none above (F1 0.84 against 0.89: less than one layer's
    worth): the threshold nearest 0.5 is kept, not the plain F1-best 0.55-0.95."""
    from meltloc.heads.training import choose_threshold

    truth, at = _ten_layer_truth_and_detections({0.5: (8, 1), 1.0: (8, 0)})
    threshold, figures = choose_threshold(at, truth)
    assert threshold == 0.5
    assert figures["f1"] == pytest.approx(2 * 8 / (2 * 8 + 1 + 2))


def test_the_operating_threshold_follows_a_validation_gain_of_more_than_one_layer():
    """Up to 0.5 half the detections are false (F1 0.5); above, 8 of 10 with none false (F1 0.89): 0.55 it is."""
    from meltloc.heads.training import choose_threshold

    truth, at = _ten_layer_truth_and_detections({0.5: (5, 5), 1.0: (8, 0)})
    threshold, figures = choose_threshold(at, truth)
    assert threshold == 0.55
    assert figures["f1"] == pytest.approx(16 / 18)
