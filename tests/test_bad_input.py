"""Bad input across the commands: one line naming what is wrong, no traceback, the rest goes on."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import invoke_cli, run_cli


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
    line = one_line_error(invoke_cli(*[a.format(tmp=tmp_path) for a in args]))
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
    result = invoke_cli("convert", "--images", tiny_core / "images", "--sections", manifest, "--labels",
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
    line = one_line_error(invoke_cli("convert", "--images", tiny_core / "images", "--sections", tmp_path / "m.csv",
                                     "--labels", tiny_core / "features.csv", "--out", tmp_path / "out"))
    assert words in line and "m.csv" in line


def test_label_table_without_its_columns_is_one_line(tiny_core, tmp_path):
    (tmp_path / "l.csv").write_text("depth,kind\n124.5,meltLayer\n")
    line = one_line_error(invoke_cli("convert", "--images", tiny_core / "images", "--sections",
                                     tiny_core / "sections.tab", "--labels", tmp_path / "l.csv",
                                     "--out", tmp_path / "o"))
    assert "l.csv" in line and "depth from" in line


def test_xlsx_label_table_with_extra_sheets_is_read(tiny_core, tmp_path):
    labels = pd.read_csv(tiny_core / "features.csv")
    with pd.ExcelWriter(tmp_path / "log.xlsx") as xl:
        pd.DataFrame({"notes": ["a cover sheet"]}).to_excel(xl, sheet_name="README", index=False)
        labels.to_excel(xl, sheet_name="melt layers", index=False)
    result = invoke_cli("convert", "--images", tiny_core / "images", "--sections", tiny_core / "sections.tab",
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
    result = invoke_cli("detect", folder, "--sections", tiny_core / "sections.tab", "--weights", weights,
                        "--out", tmp_path / "d.csv", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    for name in ("300.png", "301.png", "302.bmp", "303.png", "304.tif"):
        assert name in result.stderr
    assert "rotated" in result.stderr
    assert "5 failed" in result.stderr
    status = pd.read_csv(tmp_path / "d.status.csv").set_index("image")
    assert status["status"].to_dict() == {"227.png": "processed", "300.png": "failed", "301.png": "failed",
                                          "302.bmp": "failed", "303.png": "failed", "304.tif": "failed"}
    assert status.drop(index="227.png")["reason"].str.len().gt(0).all()
    assert set(pd.read_csv(tmp_path / "d.csv")["image"]) <= {"227.png"}


def test_detect_with_nothing_usable_exits_non_zero(tiny_trained, tmp_path):
    _, weights = tiny_trained
    (tmp_path / "a.png").write_text("x")
    line = one_line_error(invoke_cli("detect", tmp_path / "a.png", "--weights", weights,
                                     "--out", tmp_path / "d.csv"))
    assert "no image could be processed" in line
    assert not (tmp_path / "d.csv").exists()


def test_train_on_a_folder_that_is_not_a_convert_output(tmp_path):
    line = one_line_error(invoke_cli("train", "--head", "regression", "--data", tmp_path,
                                     "--out", tmp_path / "w.pt"))
    assert "convert" in line


def test_unknown_head_is_one_line(tmp_path):
    line = one_line_error(invoke_cli("train", "--head", "transformer", "--data", tmp_path,
                                     "--out", tmp_path / "w.pt"))
    assert "regression" in line


def zero_size_png() -> bytes:
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", 0, 0, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_truncated_and_0x0_images_of_every_format_are_named_and_the_decoders_stay_quiet(tiny_core, tiny_trained,
                                                                                        tmp_path):
    _, weights = tiny_trained
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(tiny_core / "images" / "227.png", folder / "227.png")
    good = cv2.imread(str(tiny_core / "images" / "230.png"), cv2.IMREAD_GRAYSCALE)
    for k, suffix in enumerate((".png", ".bmp", ".tif")):  # numbered: detect skips names that are no section
        data = cv2.imencode(suffix, good)[1].tobytes()
        (folder / f"80{k}half{suffix}").write_bytes(data[: len(data) // 2])       # truncated
    (folder / "803zero.png").write_bytes(zero_size_png())                           # 0 x 0 PNG
    bmp = bytearray(cv2.imencode(".bmp", good)[1].tobytes()[:54])
    bmp[18:26] = bytes(8)
    (folder / "804zero.bmp").write_bytes(bytes(bmp))                                # 0 x 0 BMP
    # a process of its own: image decoders (libpng, libtiff) write to the process's stderr, not to Python's
    result = run_cli("detect", folder, "--sections", tiny_core / "sections.tab", "--weights", weights,
                     "--out", tmp_path / "d.csv", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "libpng" not in result.stderr
    for name in ("800half.png", "801half.bmp", "802half.tif", "803zero.png", "804zero.bmp"):
        assert name in result.stderr
    assert "truncated PNG" in result.stderr and "0 x 0 px" in result.stderr
    assert "5 failed" in result.stderr


def test_overlapping_sections_are_reported_by_every_command_that_reads_the_manifest(tiny_core, tiny_trained,
                                                                                   tmp_path):
    _, weights = tiny_trained
    manifest = tmp_path / "sections.csv"
    write_manifest(manifest, [["227.png", 124.30, 125.95], ["230.png", 125.90, 127.55], ["233.png", 127.60, 129.25]])
    convert = invoke_cli("convert", "--images", tiny_core / "images", "--sections", manifest, "--labels",
                         tiny_core / "features.csv", "--out", tmp_path / "out", "--px-per-mm", 2, "--quiet")
    detect = invoke_cli("detect", tiny_core / "images", "--sections", manifest, "--weights", weights,
                        "--out", tmp_path / "d.csv", "--quiet")
    pd.read_csv(tiny_core / "truth.csv").assign(score=1.0).to_csv(tmp_path / "pred.csv", index=False)
    evaluate = invoke_cli("evaluate", "--pred", tmp_path / "pred.csv", "--truth", tiny_core / "features.csv",
                          "--sections", manifest)
    for result in (convert, detect, evaluate):
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert "sections.csv" in result.stderr and "227 and 230 overlap" in result.stderr


def test_label_rows_with_text_depths_negative_thickness_duplicates_or_no_section_are_named(tiny_core, tmp_path):
    labels = pd.read_csv(tiny_core / "features.csv", dtype=str)
    first = labels.iloc[0].tolist()
    n = len(labels)
    labels.loc[n] = first                                                           # a duplicate
    labels.loc[n + 1] = ["227", "one", "two", "900.0", "1100.0", "meltLayer"]       # text depths
    labels.loc[n + 2] = ["227", "124.9", "124.89", "900.0", "1100.0", "meltLayer"]  # negative thickness
    labels.loc[n + 3] = ["1500", "800.0", "800.002", "5000.0", "-3000.0", "meltLayer"]  # in no section
    labels.to_csv(tmp_path / "labels.csv", index=False)
    rows = {"listed twice": n + 2, "not a number": n + 3, "depth to": n + 4, "no imaged section": n + 5}
    convert = invoke_cli("convert", "--images", tiny_core / "images", "--sections", tiny_core / "sections.tab",
                         "--labels", tmp_path / "labels.csv", "--out", tmp_path / "out", "--px-per-mm", 2, "--quiet")
    assert convert.returncode == 0, convert.stderr
    warnings = pd.read_csv(tmp_path / "out" / "warnings.csv")
    assert {"label_duplicate", "label_bad_depth", "label_negative_thickness",
            "label_outside_sections"} <= set(warnings["kind"])
    for kind, row in [("label_duplicate", n + 2), ("label_bad_depth", n + 3), ("label_negative_thickness", n + 4),
                      ("label_outside_sections", n + 5)]:
        assert row in set(warnings.loc[warnings["kind"] == kind, "row"]), (kind, warnings)
    pd.read_csv(tiny_core / "truth.csv").assign(score=1.0).to_csv(tmp_path / "pred.csv", index=False)
    evaluate = invoke_cli("evaluate", "--pred", tmp_path / "pred.csv", "--truth", tmp_path / "labels.csv",
                          "--sections", tiny_core / "sections.tab")
    assert evaluate.returncode == 0, evaluate.stderr
    assert "Traceback" not in evaluate.stderr
    assert f"labels.csv, row {n + 3}" in evaluate.stderr


@pytest.mark.parametrize("command", ["convert", "train", "detect", "evaluate", "compare"])
def test_an_output_that_cannot_be_written_is_one_line_before_any_work(command, tiny_core, tiny_trained, tmp_path):
    conv, weights = tiny_trained
    blocker = tmp_path / "afile"
    blocker.write_text("a file where a folder is needed")
    target = blocker / "out"
    args = {
        "convert": ["convert", "--images", tiny_core / "images", "--sections", tiny_core / "sections.tab",
                    "--labels", tiny_core / "features.csv", "--out", target],
        "train": ["train", "--head", "regression", "--data", conv, "--out", target / "w.pt"],
        "detect": ["detect", tiny_core / "images", "--weights", weights, "--out", target / "d.csv"],
        "evaluate": ["evaluate", "--pred", tiny_core / "truth.csv", "--truth", tiny_core / "truth.csv",
                     "--json", target / "e.json"],
        "compare": ["compare", "--data", conv, "--images", tiny_core / "images", "--weights", weights,
                    "--out", target],
    }[command]
    result = invoke_cli(*args)
    line = one_line_error(result)
    assert "afile" in line
    # refused up front, not after the work: the error is all it says (no progress, warning or result before it)
    assert result.stderr.strip().splitlines() == [line] and result.stdout == ""
