"""Heads that hold on looks they were not trained on: the threshold baseline, clean outputs, augmentation, darkness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import run_cli as run
from meltloc.checkpoint import load_checkpoint
from meltloc.detections import Detection, clean_detections
from meltloc.heads import load_detector
from meltloc.geometry import CoreBounds, DepthScale
from meltloc.heads.regression.net import RegressionConfig, normalise_for, normalise_local
from meltloc.heads.threshold import contrast_z, detect_profile
from meltloc.section import Section
from meltloc.strip_dataset import StripSample, random_crop


def _section(rows: int = 2000, px_per_mm: float = 1.0) -> Section:
    """A blank section whose core runs from row 100 to row 100 + rows, ``px_per_mm`` rows per mm."""
    bounds = CoreBounds(top_row=100.0, bottom_row=100.0 + rows, left_col=10, right_col=90, height=rows + 200,
                        width=100)
    scale = DepthScale(100.0, 100.0 + rows / px_per_mm / 1000, 100.0, 100.0 + rows)
    return Section(name="s.png", path=None, image=np.zeros((rows + 200, 100), np.uint8), bounds=bounds, scale=scale)


def _banded_strip(rows: int = 3000, bands=((800, 830, 0.3), (1500, 1600, 0.7), (2200, 2205, 0.95)),
                  seed: int = 0) -> np.ndarray:
    """A bubbly strip (speckle on grey) with dark bands ``(from, to, darkness)`` in strip rows."""
    rng = np.random.default_rng(seed)
    ice = 120 + 60 * rng.random((rows, 64))
    for a, b, darkness in bands:
        ice[a:b] *= 1 - darkness
    return np.clip(ice, 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- one band, one row, inside the core


def test_outputs_hold_no_sliver_nothing_outside_the_core_and_one_row_per_band():
    section = _section(px_per_mm=10.0)  # 0.3 mm = 3 rows
    found = [
        Detection("melt_layer", 0.97, 90.0, 100.2),     # at the cut end: clipped to a 0.02 mm sliver -> dropped
        Detection("melt_layer", 0.9, 500.0, 540.0),     # a layer
        Detection("melt_lens", 0.8, 505.0, 530.0),      # a lens drawn on top of that layer -> dropped
        Detection("melt_layer", 0.5, 510.0, 520.0),     # a second, weaker row for the same band -> dropped
        Detection("melt_layer", 0.7, 2095.0, 2130.0),   # crosses the bottom end -> clipped to it
        Detection("melt_lens", 0.6, 900.0, 920.0),      # a lens alone stays
        Detection("melt_layer", 0.6, 1200.0, 1202.0),   # 0.2 mm thick -> dropped
    ]
    kept = clean_detections(section, found)
    assert [(d.type, d.row_from, d.row_to) for d in kept] == [
        ("melt_layer", 500.0, 540.0), ("melt_layer", 2095.0, 2100.0), ("melt_lens", 900.0, 920.0)]
    # where the head is surer of the lens, the band is reported once, as the lens
    found = [Detection("melt_layer", 0.55, 500.0, 540.0), Detection("melt_lens", 0.8, 505.0, 530.0),
             Detection("melt_layer", 0.7, 600.0, 640.0), Detection("melt_lens", 0.7, 610.0, 630.0)]
    assert [(d.type, d.row_from) for d in clean_detections(section, found)] == [
        ("melt_lens", 505.0), ("melt_layer", 600.0)]                # a tie goes to the layer


# ---------------------------------------------------------------- the threshold head


def test_threshold_profile_finds_each_band_at_its_half_maximum_edges():
    z = np.zeros(1000)
    z[100:120] = 10.0   # a band peaking at 10 sd
    z[400:402] = 3.0    # a weak one, under k
    z[700:760] = np.r_[np.linspace(0, 8, 30), np.linspace(8, 0, 30)]  # a diffuse one
    found = detect_profile(z, k=4.0)
    assert [(round(a), round(b)) for _, _, a, b in found] == [(100, 120), (715, 745), (400, 402)]
    assert [s for _, s, _, _ in found] == [1.0, 1.0, pytest.approx(3 / 8)]
    assert [a for _, _, a, _ in detect_profile(z, k=4.0, score_threshold=0.5)] == [100, pytest.approx(715, abs=1)]


def test_threshold_contrast_measures_bands_against_the_ice_around_them():
    strip = _banded_strip()
    strip[:1500] = (strip[:1500] * 0.5).astype(np.uint8)  # the upper half exposed darker: bands must still stand out
    z = contrast_z(strip, px_per_mm=10.0, smooth_mm=0.2, window_mm=41.0)
    for a, b, _ in ((800, 830, 0), (1500, 1600, 0), (2200, 2205, 0)):
        assert z[a:b].max() > 5
    quiet = np.r_[z[200:700], z[1000:1400], z[2400:2900]]
    assert np.percentile(quiet, 99) < 4


def test_threshold_head_trains_detects_and_is_compared(tiny_trained, tiny_core, tmp_path):
    from conftest import invoke_cli as run_here

    conv, regression = tiny_trained
    weights = tmp_path / "thr.pt"
    result = run_here("train", "--head", "threshold", "--data", conv, "--out", weights)
    assert result.returncode == 0, result.stderr
    assert "train F1" in result.stderr
    ck = load_checkpoint(weights)
    assert ck["head"] == "threshold" and ck["config"]["k"] > 0
    assert set(ck["train"]["libraries"]) == {"torch", "numpy", "opencv"}
    detector = load_detector(weights)
    assert detector.head == "threshold"
    out = tmp_path / "det.csv"
    result = run_here("detect", tiny_core / "images", "--sections", tiny_core / "sections.tab", "--weights", weights,
                 "--out", out, "--quiet", "--workers", 1)
    assert result.returncode == 0, result.stderr
    scored = run_here("evaluate", "--pred", out, "--truth", tiny_core / "truth.csv", "--json", tmp_path / "m.json")
    assert scored.returncode == 0, scored.stderr
    import json

    figures = json.loads((tmp_path / "m.json").read_text())["overall"]
    assert figures["f1"] >= 0.5  # the classic tiny core's layers are near-black: a threshold finds most
    report = tmp_path / "report"
    result = run_here("compare", "--data", conv, "--images", tiny_core / "images", "--truth", tiny_core / "truth.csv",
                 "--weights", regression, weights, "--out", report, "--quiet")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(report / "compare.csv")
    assert list(table["head"]) == ["regression", "threshold"]
    assert table.loc[1, "f1"] > 0.3 and (report / "detections" / "threshold.csv").is_file()


# ---------------------------------------------------------------- augmentation and normalisation


def test_local_normalisation_makes_exposure_and_slow_light_changes_vanish():
    strip = _banded_strip()
    ramp = np.linspace(0.4, 1.2, strip.shape[0])[:, None]  # light falling off along the core, and a darker exposure
    dimmed = np.clip(strip * ramp * 0.7, 0, 255).astype(np.uint8)
    a, b = normalise_local(strip, 410).mean(dim=1), normalise_local(dimmed, 410).mean(dim=1)
    assert torch.allclose(a[100:-100], b[100:-100], atol=0.08)
    # a 30 % darker band reads as about 0.7 of the ice around it wherever it lies
    assert a[805:825].mean().item() == pytest.approx(0.7 / 1.1, abs=0.1)
    # checkpoints of the first round keep the strip-median normalisation they were trained with
    old = RegressionConfig.from_dict({k: v for k, v in RegressionConfig().to_dict().items() if k != "normalisation"})
    assert old.normalisation == "median"
    assert not torch.allclose(normalise_for(old, dimmed), normalise_for(RegressionConfig(), dimmed))


def test_augmented_crops_keep_their_layers_where_the_labels_say():
    strip = _banded_strip(bands=((900, 960, 0.9),))
    scale = DepthScale(100.0, 100.3, 0.0, 3000.0)
    sample = StripSample(image="s.png", split="train", pixels=strip, intervals=np.array([[900.0, 960.0]]),
                         classes=np.array([0]), ignore=np.zeros((0, 2)), row0=0.0, image_rows_per_row=1.0,
                         scale=scale)
    rng = np.random.default_rng(1)
    seen = 0
    for _ in range(60):
        crop = random_crop(sample, rng, rows=512, focus=1.0, rows_per_mm=10.0)
        if not len(crop.intervals):
            continue
        seen += 1
        a, b = crop.intervals[0]
        profile = crop.pixels.astype(np.float32).mean(axis=1)
        inside = profile[int(np.ceil(a)) + 2:int(np.floor(b)) - 1].mean()
        around = np.r_[profile[max(0, int(a) - 60):max(0, int(a) - 25)], profile[int(b) + 25:int(b) + 60]]
        assert inside < np.median(around), (a, b)  # still darker where the label is, however faded or tilted
    assert seen >= 20


def test_drawn_layers_are_dark_bands_where_their_labels_say_and_nowhere_taken():
    # A plain bubbly strip with one true layer and one ignore region: every drawn layer is a new label, darker
    # than the ice around it, inside the core, clear of the true layer and the ignore region.
    strip = _banded_strip(bands=((900, 960, 0.9),))
    sample = StripSample(image="s.png", split="train", pixels=strip, intervals=np.array([[900.0, 960.0]]),
                         classes=np.array([1]), ignore=np.array([[1500.0, 1550.0]]), row0=0.0,
                         image_rows_per_row=1.0, scale=DepthScale(100.0, 100.3, 0.0, 3000.0))
    rng = np.random.default_rng(2)
    drawn = darkest = 0
    for _ in range(40):
        crop = random_crop(sample, rng, rows=1024, focus=0.0, augment=True, rows_per_mm=10.0, layer_class=0,
                           insert=1.0)
        profile = crop.pixels.astype(np.float32).mean(axis=1)
        for (a, b), k in zip(crop.intervals, crop.classes):
            if k != 0:
                continue
            drawn += 1
            assert 0 <= a < b <= 1024 and b - a >= 5 - 1e-3          # inside the crop, at least 0.5 mm thick
            assert crop.ignore.size == 0 or not ((crop.ignore[:, 0] < b) & (crop.ignore[:, 1] > a)).any()
            inside = profile[int(np.ceil(a)):int(np.floor(b)) + 1].mean()
            sides = [profile[max(0, int(a) - 80):max(0, int(a) - 40)], profile[int(b) + 40:int(b) + 80]]
            around = max(np.median(side) for side in sides if side.size)  # the ice side (the other may be a layer)
            assert inside < around
            darkest = max(darkest, 1 - inside / around)
    assert drawn >= 40 and darkest > 0.5
    # without a layer class (or without augmentation) nothing is drawn
    crop = random_crop(sample, np.random.default_rng(2), rows=1024, focus=0.0, rows_per_mm=10.0)
    assert set(crop.classes.tolist()) <= {1}


def test_fading_makes_dark_layers_faint_but_never_fainter_than_a_logged_layer():
    # Fading teaches faint layers from dark ones; a label on a band faded to nothing would teach noise instead.
    from meltloc.strip_dataset import FAINTEST_DARKNESS, _fade_layers

    ice = np.full((1200, 64), 150.0, np.float32)
    bands = [(200, 260, 0.9), (500, 530, 0.3), (800, 840, 0.17)]  # dark, faint, already fainter than the floor
    for a, b, darkness in bands:
        ice[a:b] *= 1 - darkness
    intervals = np.array([[a, b] for a, b, _ in bands], np.float32)
    rng = np.random.default_rng(0)
    least = {a: 1.0 for a, _, _ in bands}
    for _ in range(60):
        faded = _fade_layers(ice.copy(), intervals, rng, rows_per_mm=10.0)
        for a, b, _ in bands:
            middle = faded[a + 8:b - 8].mean()
            least[a] = min(least[a], 1 - middle / 150.0)
    assert least[200] < 0.5                                  # dark layers do get faint
    assert least[200] >= FAINTEST_DARKNESS - 0.01            # ... but not past the faint end
    assert least[500] >= FAINTEST_DARKNESS - 0.01
    assert least[800] == pytest.approx(0.17, abs=1e-3)       # one already past it is left as it is


def test_drawn_faint_layers_are_at_least_as_dark_as_a_logged_faint_layer():
    from meltloc.strip_dataset import FAINTEST_DARKNESS, draw_layers

    rng = np.random.default_rng(5)
    lightest = 1.0
    for _ in range(60):
        crop, iv, _ = draw_layers(np.full((1024, 64), 150.0, np.float32), np.zeros((0, 2)), np.zeros(0, np.int64),
                                  np.zeros((0, 2)), rng, rows_per_mm=10.0, layer_class=0, inside=(0.0, 1024.0))
        for a, b in iv:
            if b - a >= 40:  # thick enough for a middle untouched by ramped edges, tilt and waves
                lightest = min(lightest, 1 - crop[int((a + b) / 2), 30:34].max() / 150.0)  # on the core's axis
    assert FAINTEST_DARKNESS - 1e-3 <= lightest < 0.3


def test_drawn_lenses_are_dark_over_part_of_the_width_and_labelled_as_a_logged_lens():
    from meltloc.strip_dataset import _insert_lens

    rng = np.random.default_rng(4)
    for _ in range(20):  # the shape: dark in its middle row over part of the width only, never beyond
        crop, mid = _insert_lens(np.full((400, 64), 150.0, np.float32), 100.0, rng, mm=10.0)
        middle = crop[int(mid)]
        assert 0.12 * 64 - 2 <= (middle < 0.75 * 150).sum() <= 0.5 * 64 + 2
        assert (crop[:100] == 150).all() and (crop[131:] == 150).all()   # at most 3 mm thick from its top
    strip = _banded_strip(bands=())
    sample = StripSample(image="s.png", split="train", pixels=strip, intervals=np.zeros((0, 2)),
                         classes=np.zeros(0, np.int64), ignore=np.zeros((0, 2)), row0=0.0, image_rows_per_row=1.0,
                         scale=DepthScale(100.0, 100.3, 0.0, 3000.0))
    lenses = 0
    for _ in range(20):  # in training crops: labelled as convert labels a logged lens, its middle +/- 1 mm
        crop = random_crop(sample, rng, rows=1024, focus=0.0, rows_per_mm=10.0, layer_class=0, insert=1.0,
                           lens_class=1, lens_share=1.0)
        assert set(crop.classes.tolist()) <= {1}
        lenses += len(crop.classes)
        assert np.allclose(crop.intervals[:, 1] - crop.intervals[:, 0], 20.0, atol=1e-3)
    assert lenses >= 20
    # by default no lens is drawn
    crop = random_crop(sample, rng, rows=1024, focus=0.0, rows_per_mm=10.0, layer_class=0, insert=1.0)
    assert set(crop.classes.tolist()) <= {0}


def test_drawn_breaks_are_thin_dark_unlabelled_lines_clear_of_every_label():
    # Core breaks (thin, nearly black, jagged, near horizontal) are what the hard set's false layers lie on:
    # drawn into training crops, unlabelled, they teach a head what a melt layer is not.
    from meltloc.strip_dataset import draw_breaks

    rng = np.random.default_rng(6)
    layer, ignore = np.array([[300.0, 340.0]]), np.array([[700.0, 720.0]])
    drawn = 0
    for _ in range(30):
        ice = np.full((1024, 64), 150.0, np.float32)
        crop = draw_breaks(ice.copy(), layer, ignore, rng, rows_per_mm=10.0, inside=(50.0, 1000.0))
        dark = crop < 0.75 * 150
        rows = np.flatnonzero(dark.any(axis=1))
        if not rows.size:  # no room found for a steep one among the labels: nothing drawn, nothing wrong
            continue
        drawn += 1
        assert rows.min() >= 50 + 20 and rows.max() < 1000 - 20               # inside the core, 2 mm from its ends
        assert not dark[300 - 10:340 + 10].any() and not dark[700 - 10:720 + 10].any()  # 1 mm clear of labels
        per_column = dark.sum(axis=0)
        assert (per_column >= 1).all()                                          # across the whole core
        assert per_column.max() <= 3 * 6                                        # each at most ~0.5 mm thick
        assert crop.min() <= 0.2 * 150 + 1e-3                                   # nearly black somewhere
    assert drawn >= 20
    strip = _banded_strip(bands=((900, 960, 0.9),))
    sample = StripSample(image="s.png", split="train", pixels=strip, intervals=np.array([[900.0, 960.0]]),
                         classes=np.array([0]), ignore=np.zeros((0, 2)), row0=0.0, image_rows_per_row=1.0,
                         scale=DepthScale(100.0, 100.3, 0.0, 3000.0))
    rng = np.random.default_rng(3)
    for _ in range(20):  # in training crops: no label added, the true layer kept whole
        crop = random_crop(sample, rng, rows=1024, focus=1.0, augment=True, rows_per_mm=10.0, breaks=1.0)
        assert crop.classes.tolist() == [0]
        assert 60 * 0.85 - 1 <= crop.intervals[0, 1] - crop.intervals[0, 0] <= 60 * 1.15 + 1


def test_steered_pooling_adds_up_a_tilted_band_that_a_plain_mean_smears():
    from meltloc.heads.regression.net import RegressionNet

    net = RegressionNet(RegressionConfig())
    # features of 4 column groups along 200 positions: a 2-position band, 3 positions lower in each next group
    f = torch.zeros(1, 1, 200, 4)
    for g in range(4):
        f[0, 0, 100 + 3 * g:102 + 3 * g, g] = 1.0
    assert f.mean(dim=3).max().item() == pytest.approx(0.25)
    assert net._steered(f).max().item() == pytest.approx(1.0)     # a tilt of ~2.4 mm across lines it up
    # checkpoints from before it keep the plain mean and maximum they were trained with
    old = RegressionConfig.from_dict({k: v for k, v in RegressionConfig().to_dict().items() if k != "pooling"})
    assert old.pooling == "mean_max" and RegressionConfig().pooling == "steered"


# ---------------------------------------------------------------- recall by darkness


def test_evaluate_reports_recall_by_darkness_when_the_truth_has_it(tmp_path):
    truth = pd.DataFrame({"image": ["a"] * 3, "type": ["melt_layer"] * 3, "depth_from_m": [1.0, 1.1, 1.2],
                          "depth_to_m": [1.002, 1.102, 1.202], "darkness": [0.3, 0.5, 0.9]})
    pred = pd.DataFrame({"image": ["a"] * 2, "type": ["melt_layer"] * 2, "depth_from_m": [1.0, 1.2],
                         "depth_to_m": [1.002, 1.202], "score": [0.9, 0.8]})
    truth.to_csv(tmp_path / "truth.csv", index=False)
    pred.to_csv(tmp_path / "pred.csv", index=False)
    result = run("evaluate", "--pred", tmp_path / "pred.csv", "--truth", tmp_path / "truth.csv",
                 "--csv", tmp_path / "m.csv")
    assert result.returncode == 0, result.stderr
    assert "faint layers: recall" in result.stdout
    overall = pd.read_csv(tmp_path / "m.csv").iloc[0]
    assert (overall["recall_faint"], overall["recall_medium"], overall["recall_dark"]) == (1.0, 0.0, 1.0)
    assert (overall["n_truth_faint"], overall["n_truth_medium"], overall["n_truth_dark"]) == (1, 1, 1)
    truth.drop(columns="darkness").to_csv(tmp_path / "plain.csv", index=False)
    result = run("evaluate", "--pred", tmp_path / "pred.csv", "--truth", tmp_path / "plain.csv",
                 "--csv", tmp_path / "m2.csv")
    assert "recall_faint" not in pd.read_csv(tmp_path / "m2.csv").columns


def test_an_option_a_head_does_not_take_is_one_line(tiny_trained, tmp_path):
    conv, _ = tiny_trained
    for head in ("regression", "threshold"):
        result = run("train", "--head", head, "--data", conv, "--out", tmp_path / f"{head}.pt", "--imgsz", 64)
        assert result.returncode == 2, result.stderr
        assert "has no option --imgsz" in result.stderr and "Traceback" not in result.stderr
        assert not (tmp_path / f"{head}.pt").exists()


def test_the_training_options_of_the_eighth_round_train_and_are_recorded(tiny_trained, tmp_path):
    # Drawn-in breaks and the focal loss's weight of melt positions are settings from Python (README, eighth round):
    # a run with them trains, and its checkpoint says how it was trained.
    from meltloc.heads.regression.train import TrainSettings, train

    conv, _ = tiny_trained
    out = tmp_path / "w.pt"
    train(conv, out, TrainSettings(epochs=1, steps_per_epoch=2, batch=2, crop_rows=256, insert_breaks=1.0,
                                   focal_alpha=0.5), show_progress=False)
    ck = load_checkpoint(out, expect_head="regression")
    assert ck["train"]["insert_breaks"] == 1.0 and ck["train"]["focal_alpha"] == 0.5
    assert isinstance(load_detector(out).detect(_section()), list)  # it loads and answers the detector call


def test_the_focal_weight_of_melt_positions_changes_what_is_learned(tiny_trained, tmp_path):
    # focal_alpha must reach the loss: the same seeded run with another weight learns other weights, while the
    # same weight twice learns the same ones (so the difference is the option's, not chance's).
    import torch

    from meltloc.heads.regression.train import TrainSettings, train

    conv, _ = tiny_trained

    def weights_after(alpha: float, name: str) -> dict:
        out = tmp_path / name
        train(conv, out, TrainSettings(epochs=1, steps_per_epoch=2, batch=2, crop_rows=256, focal_alpha=alpha),
              show_progress=False)
        return load_checkpoint(out.with_name(out.stem + ".last.pt"), expect_head="regression")["model"]

    first, again, other = weights_after(0.25, "a.pt"), weights_after(0.25, "b.pt"), weights_after(0.75, "c.pt")
    key = "cls_head.2.bias"
    assert torch.equal(first[key], again[key])
    assert not torch.equal(first[key], other[key])
