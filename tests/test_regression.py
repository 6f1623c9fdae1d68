"""The start/stop regression head: training through the CLI, detect in meters, and its 1-D pieces."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import invoke_cli as run
from meltloc.checkpoint import load_checkpoint, save_checkpoint
from meltloc.detect import COLUMNS
from meltloc.heads.ops1d import decode_distances, encode_distances, iou_1d, nms_1d
from meltloc.heads.regression.net import (RegressionConfig, RegressionNet, fuse_for_inference, iou_loss_1d,
                                       label_positions)

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "weights" / "regression.pt"


@pytest.fixture(scope="module")
def trained(tiny_trained):
    return tiny_trained


def test_positions_decode_back_to_their_intervals():
    centers = torch.arange(50, dtype=torch.float32) * 2 + 1
    intervals = torch.tensor([[10.3, 19.7], [40.0, 40.8], [60.0, 90.5]])
    t = label_positions(centers, intervals, torch.tensor([0, 1, 0]), torch.tensor([[95.0, 97.0]]), stride=2)
    pos = t.labels >= 0
    decoded = decode_distances(centers[pos], encode_distances(centers[pos], t.intervals[pos]))
    assert torch.allclose(decoded, t.intervals[pos])
    # every interval got at least one position, a thin one too, with its class
    for (a, b), k in zip(intervals.tolist(), [0, 1, 0]):
        mine = pos & (t.intervals[:, 0] == a)
        assert mine.any() and (t.labels[mine] == k).all()
    assert t.ignore[(centers > 95) & (centers < 97)].all()
    assert not (t.ignore & pos).any()


def test_nms_keeps_the_best_of_duplicates_and_distinct_layers():
    boxes = torch.tensor([[10.0, 20.0], [11.0, 20.5], [30.0, 35.0], [9.5, 19.0]])
    keep = nms_1d(boxes, torch.tensor([0.6, 0.9, 0.8, 0.5]), iou_threshold=0.3)
    assert keep.tolist() == [1, 2]
    assert iou_1d(boxes[:1], boxes[:1]).item() == pytest.approx(1.0)
    assert iou_loss_1d(boxes, boxes).abs().max().item() < 1e-6


@pytest.mark.parametrize("stem_blocks", [0, 1])
def test_fused_network_gives_the_same_outputs(stem_blocks):
    torch.manual_seed(0)
    model = RegressionNet(RegressionConfig(stem_blocks=stem_blocks)).eval()
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2)
    x = torch.rand(1, 1, 256, 64)
    with torch.no_grad():
        a = model(x)
        b = fuse_for_inference(model)(x)
    assert torch.allclose(a[0], b[0], atol=1e-4) and torch.allclose(a[1], b[1], atol=1e-3)
    assert not any(isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)) for m in model.modules())
    assert a[0].shape == (1, 2, 128) and a[1].shape == (1, 2, 128)


def test_training_writes_one_self_contained_checkpoint(trained):
    _, weights = trained
    ck = load_checkpoint(weights)
    assert ck["head"] == "regression"
    assert ck["config"]["px_per_mm"] == 4.0 and ck["config"]["width"] == 64
    assert ck["config"]["classes"] == ("melt_layer", "melt_lens")
    assert ck["train"]["seed"] == 1 and ck["train"]["epochs"] == 2
    # four steps leave every score near the 0.01 prior, below the validation grid (0.05 ... 0.95): no threshold
    # finds a layer, and the tie goes to the preferred 0.5
    assert ck["score_threshold"] == 0.5
    assert ck["version"] and ck["train"]["seconds"] > 0
    assert len(ck["train"]["history"]) == 2
    import cv2

    # what a rerun elsewhere must match to give the same numbers (numpy and OpenCV are not pinned)
    assert ck["train"]["libraries"] == {"torch": torch.__version__, "numpy": np.__version__, "opencv": cv2.__version__}


def test_training_resumes_from_the_last_epoch(trained, tmp_path):
    conv, weights = trained
    out = tmp_path / "more.pt"
    result = run("train", "--head", "regression", "--data", conv, "--out", out, "--epochs", 3,
                 "--steps-per-epoch", 2, "--batch", 2, "--seed", 1, "--resume", weights.with_suffix(".last.pt"))
    assert result.returncode == 0, result.stderr
    history = load_checkpoint(out.with_suffix(".last.pt"))["train"]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]


def _on_true_features(table: pd.DataFrame, truth: pd.DataFrame, image: str | None = None) -> pd.Series:
    """Whether the row midpoint of each detection lies inside a true melt layer or lens of its image (or of
    ``image``), in the truth's rows, or inside an entry logged as uncertain (scoring ignores detections there)."""
    truth = truth[truth["type"].isin(["melt_layer", "melt_lens", "uncertain"])]
    mids = (table["row_from"] + table["row_to"]) / 2
    return pd.Series([((truth["image"] == (image or name)) & (truth["row_from"] <= mid) & (truth["row_to"] >= mid))
                      .any() for name, mid in zip(table["image"], mids)], index=table.index, dtype=bool)


def test_detect_writes_the_contract_columns_in_meters(tiny_core, tmp_path):
    # The shipped weights, so that there are layers to measure: a net trained for four steps scores every
    # position about 0.01, and whether it reports anything at all is chance.
    out = tmp_path / "det.csv"
    result = run("detect", tiny_core / "images", "--sections", tiny_core / "sections.tab", "--weights", SHIPPED,
                 "--out", out, "--overlays", tmp_path / "ov")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(out)
    assert list(table.columns)[:len(COLUMNS)] == COLUMNS  # columns may follow (path, section, exposure)
    assert not out.with_name("det.csv.partial").exists()
    assert sorted(p.name for p in (tmp_path / "ov").glob("*.png")) == ["227.png", "230.png", "233.png"]
    truth = pd.read_csv(tiny_core / "truth.csv")
    assert set(table["image"]) == {"227.png", "230.png", "233.png"}
    assert _on_true_features(table, truth).all(), table      # 10 detections: 9 on drawn layers, 1 on an uncertain band
    found = truth[(truth["type"] == "melt_layer")].apply(
        lambda t: ((table["image"] == t["image"]) & (table["depth_from_m"] < t["depth_to_m"])
                   & (table["depth_to_m"] > t["depth_from_m"])).any(), axis=1)
    assert found.sum() == len(found) == 9                      # every layer, the two 0.76 mm thin ones too
    assert (table["depth_to_m"] > table["depth_from_m"]).all()
    assert np.allclose(table["thickness_mm"], (table["depth_to_m"] - table["depth_from_m"]) * 1000, atol=1e-3)
    tops = {"227.png": 124.30, "230.png": 125.95, "233.png": 127.60}
    top = table["image"].map(tops)
    assert (table["depth_from_m"] > top).all() and (table["depth_to_m"] < top + 1.65).all()
    px_per_m = (table["row_to"] - table["row_from"]) / (table["depth_to_m"] - table["depth_from_m"])
    assert np.allclose(px_per_m, 2000, rtol=0.01)               # the tiny core is 20 px/cm


def test_detect_goes_on_past_bad_images_and_unknown_sections(tiny_core, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(tiny_core / "images" / "227.png", folder / "227.png")
    (folder / "228.png").write_bytes((tiny_core / "images" / "230.png").read_bytes()[:3000])  # truncated
    shutil.copy(tiny_core / "images" / "233.png", folder / "233.png")
    shutil.copy(tiny_core / "images" / "233.png", folder / "999.png")  # the same image, not in the manifest
    out = tmp_path / "det.csv"
    result = run("detect", folder, "--sections", tiny_core / "sections.tab", "--weights", SHIPPED, "--out", out)
    assert result.returncode == 0, result.stderr
    assert "228.png" in result.stderr and "999.png" in result.stderr
    assert "Traceback" not in result.stderr
    table = pd.read_csv(out)
    assert set(table["image"]) == {"227.png", "233.png", "999.png"}
    unknown = table[table["image"] == "999.png"]
    assert len(unknown) >= 3 and unknown["depth_from_m"].isna().all()  # found in 233.png, each on a true feature
    assert _on_true_features(unknown, pd.read_csv(tiny_core / "truth.csv"), image="233.png").all(), unknown
    # the layers of the image with its manifest entry, at the same rows (a 1.65 m section), only without depths
    known = table[table["image"] == "233.png"]
    assert known["depth_from_m"].notna().all() and list(unknown["type"]) == list(known["type"])
    assert np.allclose(unknown[["score", "row_from", "row_to"]], known[["score", "row_from", "row_to"]], atol=0.5)


@pytest.mark.parametrize("make_weights, message", [
    (lambda p: None, "not found"),
    (lambda p: p.write_text("not a checkpoint"), "not a readable checkpoint"),
    (lambda p: torch.save({"model": {}}, p), "not a meltloc checkpoint"),
    (lambda p: save_checkpoint(p, {"head": "regression", "config": {}, "model": {"x": torch.zeros(1)}}),
     "do not fit"),
])
def test_bad_weights_give_one_line_and_exit_2(tiny_core, tmp_path, make_weights, message):
    weights = tmp_path / "w.pt"
    make_weights(weights)
    result = run("detect", tiny_core / "images", "--sections", tiny_core / "sections.tab", "--weights", weights,
                 "--out", tmp_path / "d.csv")
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
