"""`meltloc compare`: every checkpoint on the same test sections, one table as CSV, Markdown and PNG figures."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import invoke_cli as run
from meltloc.compare import FIGURES, TABLE_COLUMNS, TITLES, labels_for
from meltloc.detect import COLUMNS as DETECTION_COLUMNS

SHIPPED = Path(__file__).resolve().parents[1] / "weights" / "regression.pt"


def _figures(report) -> list:
    return sorted(report.glob("*.png"))


def test_one_checkpoint_gives_one_row_a_markdown_table_and_three_figures(tiny_trained, tiny_core, tmp_path):
    conv, weights = tiny_trained
    report = tmp_path / "report"
    # no --images: compare finds the test images where convert read them
    result = run("compare", "--data", conv, "--weights", weights, "--out", report, "--quiet")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(report / "compare.csv")
    assert list(table.columns) == TABLE_COLUMNS
    assert len(table) == 1
    row = table.iloc[0]
    assert row["head"] == "regression" and row["weights"] == str(weights)
    test_images = pd.read_csv(conv / "strips.csv").query("split == 'test'")["image"]
    assert row["sections"] == len(test_images) >= 1
    assert row["seconds_per_section"] > 0 and row["parameters"] > 1000 and row["train_seconds"] > 0
    assert np.isnan(row["slice_accuracy"])  # only the slice classifiers have one
    layers = pd.read_csv(conv / "intervals.csv").query("split == 'test' and type == 'melt_layer'")
    assert row["n_truth"] == len(layers) > 0
    # trained for four steps, the net scores every position about 0.01: below its operating threshold and below
    # the AP run's 0.05, so it finds none of the test layers (figures 0, not NaN: there are layers to find)
    assert row["n_pred"] == 0
    for key in ("f1", "map", "recall", "recall_lt1mm"):
        assert row[key] == 0.0, key

    markdown = (report / "compare.md").read_text()
    assert "| " + " | ".join(TITLES.values()) + " |" in markdown
    assert "| regression |" in markdown and "decoding" in markdown
    names = [p.name for p in _figures(report)]
    assert set(names) == {FIGURES["speed"], FIGURES["thickness"], *(n for n in names if n.startswith("section_"))}
    assert len(names) == 3
    for path in _figures(report):
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] > 100 and image.shape[1] > 100
    assert "regression" in result.stdout and "F1" in result.stdout  # the rich table
    detections = pd.read_csv(report / "detections" / "regression.csv")
    assert list(detections.columns) == DETECTION_COLUMNS
    assert set(detections["image"]) <= set(test_images)


def test_two_checkpoints_give_two_rows_scored_against_a_truth_file(tiny_trained, tiny_core, tmp_path):
    conv, _ = tiny_trained
    weights, other = tmp_path / "w.pt", tmp_path / "other.pt"
    shutil.copy(SHIPPED, weights)  # weights that find layers, so that the figures have something to agree on
    shutil.copy(SHIPPED, other)
    report = tmp_path / "report"
    result = run("compare", "--data", conv, "--weights", weights, other, "--images", tiny_core / "images",
                 "--sections", tiny_core / "sections.tab", "--truth", tiny_core / "truth.csv", "--out", report, "-q")
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(report / "compare.csv")
    assert list(table["head"]) == ["regression (w)", "regression (other)"]
    assert len(list((report / "detections").glob("*.csv"))) == 2
    test_images = set(pd.read_csv(conv / "strips.csv").query("split == 'test'")["image"])
    truth = pd.read_csv(tiny_core / "truth.csv")
    assert (table["n_truth"] == int(((truth["type"] == "melt_layer") & truth["image"].isin(test_images)).sum())).all()
    # on the test section (230.png) all 5 of its layers and nothing false: F1 1.0
    assert (table["n_truth"] == 5).all() and (table["n_pred"] == 5).all()
    assert table["f1"].iloc[0] == pytest.approx(1.0)
    # the same weights on the same decoded sections give the same figures
    figures = ["f1", "precision", "recall", "map", "boundary_mm", "recall_lt1mm", "n_pred"]
    assert table[figures].iloc[0].tolist() == table[figures].iloc[1].tolist()


@pytest.mark.parametrize("case, message", [
    ("missing_weights", "weights file not found"),
    ("not_a_convert_folder", "is this a 'meltloc convert' output folder"),
    ("images_gone", "pass --images"),
])
def test_bad_input_gives_one_line_and_exit_2(tiny_trained, tiny_core, tmp_path, case, message):
    conv, weights = tiny_trained
    args = {"--data": conv, "--weights": weights, "--images": tiny_core / "images", "--out": tmp_path / "r"}
    if case == "missing_weights":
        args["--weights"] = tmp_path / "missing.pt"
    elif case == "not_a_convert_folder":
        args["--data"] = tiny_core
    else:  # no --images, and the images convert recorded are gone
        moved = tmp_path / "moved_conv"
        shutil.copytree(conv, moved)
        strips = pd.read_csv(moved / "strips.csv")
        strips["path"] = [str(tmp_path / "gone" / name) for name in strips["image"]]
        strips.to_csv(moved / "strips.csv", index=False)
        args["--data"] = moved
        del args["--images"]
    result = run("compare", *[v for kv in args.items() for v in kv])
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_rows_are_named_by_head_and_by_file_when_heads_repeat():
    assert labels_for(["regression", "yolo"], ["a/w.pt", "b/w.pt"]) == ["regression", "yolo"]
    assert labels_for(["regression", "regression"], ["a.pt", "b.pt"]) == ["regression (a)", "regression (b)"]
    assert labels_for(["yolo", "yolo"], ["a/w.pt", "b/w.pt"]) == ["yolo (w) #1", "yolo (w) #2"]
