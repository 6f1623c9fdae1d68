"""Bad input across the commands: one line naming what is wrong, no traceback, the rest goes on."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import run_cli


def one_line_error(result) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = [l for l in result.stderr.strip().splitlines() if l.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("args, words", [
    (["synth", "{tmp}/x", "--format", "gif"], "png, bmp or tif"),
    (["synth", "{tmp}/x", "--first-bag", "28"], "26 + 3k"),
    (["synth", "{tmp}/afile/x"], "afile"),
])
def test_synth_refuses_bad_options_and_unwritable_folders(tmp_path, args, words):
    (tmp_path / "afile").write_text("a file, not a folder")
    line = one_line_error(run_cli(*[a.format(tmp=tmp_path) for a in args]))
    assert words in line


def write_manifest(path, rows):
    pd.DataFrame(rows, columns=["image", "top_m", "bottom_m"]).to_csv(path, index=False)


def test_convert_reports_manifest_and_label_problems_and_converts_the_rest(tiny_core, tmp_path):
    manifest = tmp_path / "sections.csv"
    write_manifest(manifest, [["227.png", 124.30, 125.95], ["230.png", "12x", 127.60],
                              ["233.png", 127.60, 129.25], ["233.png", 127.60, 129.25]])
    labels = pd.read_csv(tiny_core / "features.csv", dtype=str)
    labels.loc[len(labels)] = ["227", "abc", "124.5", "900.0", "1100.0", "meltLayer"]
    labels.to_csv(tmp_path / "labels.csv", index=False)
    result = run_cli("convert", "--images", tiny_core / "images", "--sections", manifest, "--labels",
                     tmp_path / "labels.csv", "--out", tmp_path / "out", "--px-per-mm", 2, "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "not numbers" in result.stderr and "listed twice" in result.stderr and "not a number" in result.stderr
    strips = pd.read_csv(tmp_path / "out" / "strips.csv")
    assert set(strips["image"]) == {"227.png", "233.png"}


@pytest.mark.parametrize("content, words", [
    ("image,top\n227.png,1\n", "bottom_m"),
    ("", "empty"),
])
def test_convert_stops_with_one_line_on_an_unusable_manifest(tiny_core, tmp_path, content, words):
    (tmp_path / "m.csv").write_text(content)
    line = one_line_error(run_cli("convert", "--images", tiny_core / "images", "--sections", tmp_path / "m.csv",
                                  "--labels", tiny_core / "features.csv", "--out", tmp_path / "out"))
    assert words in line and "m.csv" in line


def test_label_table_without_its_columns_is_one_line(tiny_core, tmp_path):
    (tmp_path / "l.csv").write_text("depth,kind\n124.5,meltLayer\n")
    line = one_line_error(run_cli("convert", "--images", tiny_core / "images", "--sections",
                                  tiny_core / "sections.tab", "--labels", tmp_path / "l.csv", "--out", tmp_path / "o"))
    assert "l.csv" in line and "depth from" in line


def test_xlsx_label_table_with_extra_sheets_is_read(tiny_core, tmp_path):
    labels = pd.read_csv(tiny_core / "features.csv")
    with pd.ExcelWriter(tmp_path / "log.xlsx") as xl:
        pd.DataFrame({"notes": ["a cover sheet"]}).to_excel(xl, sheet_name="README", index=False)
        labels.to_excel(xl, sheet_name="melt layers", index=False)
    result = run_cli("convert", "--images", tiny_core / "images", "--sections", tiny_core / "sections.tab",
                     "--labels", tmp_path / "log.xlsx", "--out", tmp_path / "o", "--px-per-mm", 2, "--quiet")
    assert result.returncode == 0, result.stderr
    assert (pd.read_csv(tmp_path / "o" / "intervals.csv")["type"] == "melt_layer").any()


def test_detect_skips_every_kind_of_bad_image_and_keeps_the_good_one(tiny_core, tiny_trained, tmp_path):
    _, weights = tiny_trained
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(tiny_core / "images" / "227.png", folder / "227.png")
    (folder / "300.png").write_bytes(b"")                                          # empty
    (folder / "301.png").write_text("not an image")                                # not an image
    (folder / "302.bmp").write_bytes((tiny_core / "images" / "230.png").read_bytes()[:200])  # truncated
    cv2.imwrite(str(folder / "303.png"), np.zeros((400, 60), np.uint8))            # all black: no core
    good = cv2.imread(str(tiny_core / "images" / "233.png"), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(folder / "304.tif"), np.ascontiguousarray(good.T))             # rotated by 90 degrees
    result = run_cli("detect", folder, "--sections", tiny_core / "sections.tab", "--weights", weights,
                     "--out", tmp_path / "d.csv", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for name in ("300.png", "301.png", "302.bmp", "303.png", "304.tif"):
        assert name in result.stderr
    assert "rotated" in result.stderr
    assert "5 skipped" in result.stderr
    assert set(pd.read_csv(tmp_path / "d.csv")["image"]) <= {"227.png"}


def test_detect_with_nothing_usable_exits_non_zero(tiny_trained, tmp_path):
    _, weights = tiny_trained
    (tmp_path / "a.png").write_text("x")
    line = one_line_error(run_cli("detect", tmp_path / "a.png", "--weights", weights, "--out", tmp_path / "d.csv"))
    assert "no image could be processed" in line
    assert not (tmp_path / "d.csv").exists()


def test_train_on_a_folder_that_is_not_a_convert_output(tmp_path):
    line = one_line_error(run_cli("train", "--head", "regression", "--data", tmp_path, "--out", tmp_path / "w.pt"))
    assert "convert" in line


def test_unknown_head_is_one_line(tmp_path):
    line = one_line_error(run_cli("train", "--head", "transformer", "--data", tmp_path, "--out", tmp_path / "w.pt"))
    assert "regression" in line
