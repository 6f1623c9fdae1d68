"""`meltloc convert`: aligned interval tables, strips, YOLO and COCO datasets, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from meltloc import IGNORE_TYPES, MELT_LAYER
from meltloc.convert import INTERVAL_COLUMNS, STRIP_COLUMNS, ConvertConfig, convert
from meltloc.errors import DatasetError
from meltloc.formats_yolo import TileConfig, parse_yolo_line, tile_boxes, yolo_line
from meltloc.labels import read_labels
from meltloc.manifest import read_manifest, section_of
from meltloc.splits import read_splits, split_sections

REPO = Path(__file__).resolve().parents[1]
EGRIP_TAB = Path(__file__).parents[2] / "shared/data/EGRIP_visual_strat.tab"


def _interval_iou(a: tuple[float, float], b: tuple[float, float]) -> float:
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = (a[1] - a[0]) + (b[1] - b[0]) - inter
    return inter / union if union > 0 else 0.0


@pytest.fixture(scope="module")
def converted(tiny_core, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted")
    result = convert(tiny_core / "images", tiny_core / "sections.tab", tiny_core / "features.csv", out,
                     ConvertConfig(), show_progress=False)
    return out, result


# ---------------------------------------------------------------------------- tables


def test_convert_writes_the_contract_tables(converted):
    out, _ = converted
    alignment = pd.read_csv(out / "alignment.csv")
    assert list(alignment.columns[:4]) == ["image", "shift_px", "shift_mm", "confidence"]
    assert sorted(alignment["image"]) == ["227.png", "230.png", "233.png"]
    intervals = pd.read_csv(out / "intervals.csv")
    assert list(intervals.columns[:7]) == INTERVAL_COLUMNS[:7]
    assert set(intervals["split"]) <= {"train", "val", "test"}
    assert (intervals["depth_to_m"] >= intervals["depth_from_m"]).all()
    strips = pd.read_csv(out / "strips.csv")
    assert list(strips.columns) == STRIP_COLUMNS
    for name in ("yolo/data.yaml", "coco/train.json", "coco/val.json", "coco/test.json", "warnings.csv"):
        assert (out / name).is_file(), name


def test_aligned_depth_is_the_table_depth_plus_the_shift(converted, tiny_core):
    out, _ = converted
    labels = read_labels(tiny_core / "features.csv").table.set_index("line")
    shifts = pd.read_csv(out / "alignment.csv").set_index("image")["shift_mm"]
    layers = pd.read_csv(out / "intervals.csv")
    layers = layers[layers["type"] == MELT_LAYER]
    assert len(layers) > 0
    for rec in layers.itertuples():
        table = labels.loc[rec.label_row]
        assert rec.depth_from_m == pytest.approx(table.depth_from_m + shifts[rec.image] / 1000, abs=2e-6)
        assert rec.depth_to_m == pytest.approx(table.depth_to_m + shifts[rec.image] / 1000, abs=2e-6)


def test_aligned_melt_layers_land_on_the_true_layers(converted, tiny_core):
    out, _ = converted
    truth = pd.read_csv(tiny_core / "truth.csv")
    truth = truth[truth["type"] == MELT_LAYER]
    intervals = pd.read_csv(out / "intervals.csv")
    intervals = intervals[intervals["type"] == MELT_LAYER]
    for rec in truth.itertuples():
        mine = intervals[intervals["image"] == rec.image]
        best = max(_interval_iou((r.row_from, r.row_to), (rec.row_from, rec.row_to)) for r in mine.itertuples())
        assert best > 0.6, rec


def test_point_entries_get_the_documented_extents(converted):
    out, _ = converted
    intervals = pd.read_csv(out / "intervals.csv")
    thickness_mm = (intervals["depth_to_m"] - intervals["depth_from_m"]) * 1000
    assert np.allclose(thickness_mm[intervals["type"] == "melt_lens"], 2.0, atol=1e-3)  # point +/- 1 mm
    ignore = intervals["type"].isin(IGNORE_TYPES)
    assert ignore.any()
    assert np.allclose(thickness_mm[ignore], 10.0, atol=1e-3)  # point +/- 5 mm


def test_strips_map_back_to_image_rows_and_depths(converted, tiny_core):
    out, _ = converted
    strips = pd.read_csv(out / "strips.csv")
    for rec in strips.itertuples():
        pixels = cv2.imread(str(out / "strips" / (Path(rec.image).stem + ".png")), cv2.IMREAD_GRAYSCALE)
        assert pixels.shape == (rec.rows, rec.width) == (rec.rows, 64)
        # 10 strip rows per mm of core; the strip runs from the top end to the bottom end
        assert rec.image_px_per_m / 1000 / rec.image_rows_per_row == pytest.approx(10.0, rel=1e-3)
        depth_top = rec.top_m + (rec.row0 - rec.top_row) / rec.image_px_per_m
        depth_end = rec.top_m + (rec.row0 + rec.rows * rec.image_rows_per_row - rec.top_row) / rec.image_px_per_m
        assert depth_top == pytest.approx(rec.top_m, abs=1e-3)
        assert depth_end == pytest.approx(rec.bottom_m, abs=1e-3)


# ---------------------------------------------------------------------------- splits


def test_splits_are_by_section_and_exposure_variants_never_straddle():
    sections = [str(227 + 3 * k) for k in range(40)]
    splits = split_sections(sections + sections, val=0.15, test=0.15, seed=4)
    assert set(splits) == set(sections)
    counts = pd.Series(splits).value_counts()
    assert counts["test"] == 6 and counts["val"] == 6 and counts["train"] == 28
    assert split_sections(sections, seed=4) == splits
    assert split_sections(sections, seed=5) != splits


def test_variants_of_a_section_share_its_split(tiny_core, tmp_path):
    core = tmp_path / "core"
    shutil.copytree(tiny_core / "images", core / "images")
    shutil.copy(core / "images" / "230.png", core / "images" / "230_1.png")
    manifest = pd.read_csv(tiny_core / "sections.csv")
    bright = manifest[manifest["image"] == "230.png"].assign(image="230_1.png")
    pd.concat([manifest, bright]).to_csv(core / "sections.csv", index=False)
    for seed in range(4):
        result = convert(core / "images", core / "sections.csv", tiny_core / "features.csv", tmp_path / f"out{seed}",
                         ConvertConfig(seed=seed, yolo=False, coco=False), show_progress=False)
        split = result.strips.set_index("image")["split"]
        assert split["230.png"] == split["230_1.png"]
        assert set(split) == {"train", "val", "test"}  # three sections: one in each split


def test_a_splits_file_fixes_the_splits(converted, tiny_core, tmp_path):
    (tmp_path / "splits.csv").write_text("image,split\n227.png,test\n230_1.png,train\n233.png,val\n")
    given_splits, problems = read_splits(tmp_path / "splits.csv")
    assert given_splits == {"227": "test", "230": "train", "233": "val"} and problems == []
    result = convert(tiny_core / "images", tiny_core / "sections.tab", tiny_core / "features.csv", tmp_path / "out",
                     ConvertConfig(splits_file=tmp_path / "splits.csv", yolo=False, coco=False), show_progress=False)
    assert dict(zip(result.strips["image"], result.strips["split"])) == {"227.png": "test", "230.png": "train",
                                                                          "233.png": "val"}
    assert set(result.intervals[result.intervals["image"] == "227.png"]["split"]) == {"test"}


def test_a_splits_file_that_splits_a_section_is_refused_with_its_row(tmp_path):
    from meltloc.errors import SplitError

    (tmp_path / "splits.csv").write_text("image,split\n227.png,train\n230.png,val\n227_1.png,test\n")
    with pytest.raises(SplitError, match="row 4"):
        read_splits(tmp_path / "splits.csv")


# ---------------------------------------------------------------------------- COCO


def test_coco_files_load_with_pycocotools_and_carry_ids_area_iscrowd_info(converted):
    from pycocotools.coco import COCO

    out, _ = converted
    total = 0
    for split in ("train", "val", "test"):
        coco = COCO(str(out / "coco" / f"{split}.json"))
        data = json.loads((out / "coco" / f"{split}.json").read_text())
        assert "info" in data and [c["name"] for c in data["categories"]] == ["melt_layer", "melt_lens"]
        for ann in data["annotations"]:
            assert {"id", "image_id", "category_id", "bbox", "area", "iscrowd"} <= set(ann)
            x, y, w, h = ann["bbox"]
            img = coco.imgs[ann["image_id"]]
            assert x == 0 and w == img["width"] and 0 <= y and y + h <= img["height"] + 1e-6
            assert ann["area"] == pytest.approx(w * h, rel=1e-3)
        ids = sorted(a["id"] for a in data["annotations"])
        assert ids == list(range(1, len(ids) + 1))
        total += len(ids)
    assert total > 0
    crowd = [a for s in ("train", "val", "test")
             for a in json.loads((out / "coco" / f"{s}.json").read_text())["annotations"] if a["iscrowd"]]
    assert crowd, "ignore regions should be iscrowd=1 annotations"


def test_pycocotools_box_iou_equals_the_1d_interval_iou(converted):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    out, _ = converted
    coco = COCO(str(out / "coco" / "train.json"))
    anns = [a for a in coco.dataset["annotations"] if not a["iscrowd"]]
    assert len(anns) >= 2
    rng = np.random.default_rng(0)
    for ann in anns:
        x, y, w, h = ann["bbox"]
        for dy, dh in rng.uniform(-1.5, 1.5, (5, 2)) * h:
            other = [x, y + dy, w, max(h + dh, 0.5)]
            box_iou = mask_utils.iou([ann["bbox"]], [other], [0])[0, 0]
            assert box_iou == pytest.approx(_interval_iou((y, y + h), (other[1], other[1] + other[3])), abs=1e-9)
    # and against each other, as COCOeval sees two annotations of one strip
    a, b = anns[0]["bbox"], anns[1]["bbox"]
    assert mask_utils.iou([a], [b], [0])[0, 0] == pytest.approx(_interval_iou((a[1], a[1] + a[3]), (b[1], b[1] + b[3])))


# ---------------------------------------------------------------------------- YOLO


@settings(max_examples=300, deadline=None)
@given(data=st.data(), tile_rows=st.sampled_from([320, 640]), cls=st.sampled_from([0, 1]))
def test_a_yolo_line_gives_back_its_interval_within_half_a_working_pixel(data, tile_rows, cls):
    start = 1000
    height = data.draw(st.floats(TileConfig().min_box_rows, 300.0))
    top = data.draw(st.floats(-0.4 * height, tile_rows - 6.0))  # in the tile, or cut by one of its edges
    interval = (start + top, start + top + height)
    visible = (max(interval[0], start), min(interval[1], start + tile_rows))
    boxes = tile_boxes(np.array([interval]), np.array([cls]), start, tile_rows)
    if visible[1] - visible[0] < TileConfig().min_box_rows or (visible[1] - visible[0]) / height < 0.5:
        return  # too little of it in this tile: the overlapping tile holds it
    (c, t, b), = boxes
    back_cls, back_top, back_bottom = parse_yolo_line(yolo_line(c, t, b, tile_rows), tile_rows)
    assert back_cls == cls
    # the interval as the tile shows it (clipped at the tile's edges)
    assert back_top + start == pytest.approx(visible[0], abs=0.5)
    assert back_bottom + start == pytest.approx(visible[1], abs=0.5)


def test_thin_boxes_grow_to_the_minimum_height_and_survive_ultralytics_scale_augmentation():
    (cls, top, bottom), = tile_boxes(np.array([[100.0, 102.0]]), np.array([0]), 0, 640)
    assert bottom - top == pytest.approx(TileConfig().min_box_rows)
    assert (top + bottom) / 2 == pytest.approx(101.0)
    assert (bottom - top) * 0.5 > 2  # box_candidates keeps h > 2 px after scale 0.5


def test_yolo_dataset_matches_the_intervals_and_leaves_out_ignore_tiles(converted):
    out, _ = converted
    data = yaml.safe_load((out / "yolo" / "data.yaml").read_text())
    assert Path(data["path"]).is_absolute() and all(Path(data[s]).is_absolute() for s in ("train", "val", "test"))
    assert data["names"] == {0: "melt_layer", 1: "melt_lens"}
    tiles = pd.read_csv(out / "yolo" / "tiles.csv")
    strips = pd.read_csv(out / "strips.csv").set_index("image")
    intervals = pd.read_csv(out / "intervals.csv")
    assert set(tiles["split"]) <= {"train", "val", "test"}
    found = 0
    for tile in tiles.itertuples():
        s = strips.loc[tile.image]
        assert tile.split == s.split
        mine = intervals[intervals["image"] == tile.image]
        to_strip = lambda r: (r - s.row0) / s.image_rows_per_row  # noqa: E731
        for ign in mine[mine["type"].isin(IGNORE_TYPES)].itertuples():
            a, b = to_strip(ign.row_from), to_strip(ign.row_to)
            assert b <= tile.start or a >= tile.start + tile.rows, "a tile touching an ignore region was kept"
        pixels = cv2.imread(str(out / "yolo" / "images" / tile.tile), cv2.IMREAD_GRAYSCALE)
        assert pixels.shape == (tile.rows, s.width)
        lines = (out / "yolo" / "labels" / tile.tile).with_suffix(".txt").read_text().splitlines()
        pos = mine[mine["type"].isin(["melt_layer", "melt_lens"])]
        for line in lines:
            cls, top, bottom = parse_yolo_line(line, tile.rows)
            centre = (top + bottom) / 2 + tile.start
            match = [r for r in pos.itertuples()
                     if to_strip(r.row_from) - 3.5 <= centre <= to_strip(r.row_to) + 3.5]
            assert match, (tile.tile, line)
            found += 1
    assert found > 0


# ---------------------------------------------------------------------------- readers


@pytest.mark.skipif(not EGRIP_TAB.is_file(), reason=f"the real EastGRIP manifest is not at {EGRIP_TAB} "
                                                      "(clone the project with shared/ beside the repository)")
def test_the_real_egrip_manifest_reads_back_with_every_section_and_its_depths():
    manifest = read_manifest(EGRIP_TAB)
    table = manifest.table
    assert len(table) == 3687
    assert table["image"].is_unique
    bags = table["image"].map(section_of).astype(int)
    assert np.allclose(table["top_m"], 13.75 + (bags - 26) * 0.55)
    assert np.allclose(table["bottom_m"] - table["top_m"], 1.65)
    first = table.set_index("image").loc["227.bmp"]
    assert (first.top_m, first.bottom_m) == pytest.approx((124.30, 125.95))
    assert table["top_m"].min() == pytest.approx(13.75) and table["top_m"].max() == pytest.approx(2119.15)
    assert (table["exposure"] == "bright").any() and (table["exposure"] == "dark").any()
    assert [p.kind for p in manifest.problems if p.kind != "manifest_overlap"] == []


# ---------------------------------------------------------------------------- bad input


@pytest.fixture()
def broken_core(tiny_core, tmp_path):
    """The tiny core with one of each kind of bad input."""
    core = tmp_path / "broken"
    shutil.copytree(tiny_core / "images", core / "images")
    # a corrupt (truncated) image that the manifest lists
    data = (core / "images" / "233.png").read_bytes()
    (core / "images" / "236.png").write_bytes(data[: len(data) // 3])
    # an image not in the manifest
    shutil.copy(core / "images" / "227.png", core / "images" / "999.png")
    manifest = pd.read_csv(tiny_core / "sections.csv")
    extra = pd.DataFrame({"image": ["236.png", "239.png"], "top_m": [129.25, 130.90], "bottom_m": [130.90, 132.55]})
    pd.concat([manifest, extra]).to_csv(core / "sections.csv", index=False)  # 239.png: missing from disk
    labels = (tiny_core / "features.csv").read_text().splitlines()
    labels += ["227,124.9000,124.8900,900.0,1100.0,meltLayer",  # depth to < depth from
               "227,124.9500,124.9520,900.0,1100.0,meltPuddle",  # unknown type
               "1500,800.0000,800.0020,5000.0,-3000.0,meltLayer"]  # outside every section
    (core / "features.csv").write_text("\n".join(labels) + "\n")
    return core, len(labels) + 1


def test_each_kind_of_bad_input_is_reported_with_file_and_row_and_the_rest_is_converted(broken_core, tmp_path):
    core, n_lines = broken_core
    out = tmp_path / "out"
    result = convert(core / "images", core / "sections.csv", core / "features.csv", out, show_progress=False)
    warnings = pd.read_csv(out / "warnings.csv")
    by_kind = {k: g for k, g in warnings.groupby("kind")}
    assert {"image_missing", "image_not_in_manifest", "label_outside_sections", "label_negative_thickness",
            "label_unknown_type", "image_unreadable"} <= set(by_kind)
    missing = by_kind["image_missing"].iloc[0]
    assert missing.file.endswith("sections.csv") and missing.row == 6 and "239.png" in missing.message
    assert by_kind["image_not_in_manifest"].iloc[0].file.endswith("999.png")
    assert by_kind["image_unreadable"].iloc[0].file.endswith("236.png")
    assert by_kind["label_negative_thickness"].iloc[0].row == n_lines - 3
    assert by_kind["label_unknown_type"].iloc[0].row == n_lines - 2
    assert n_lines - 1 in set(by_kind["label_outside_sections"]["row"])
    assert (by_kind["label_outside_sections"]["file"].str.endswith("features.csv")).all()
    # the rest is converted
    assert sorted(result.strips["image"]) == ["227.png", "230.png", "233.png"]
    assert (result.intervals["type"] == MELT_LAYER).sum() > 0
    # one summary line per kind, and the full list on disk
    lines = result.warning_lines()
    assert sum("lies in no imaged section" in line for line in lines) == 1
    assert len(lines) == len(by_kind) + 1
    assert lines[-1].endswith("warnings.csv")


def test_nothing_usable_left_raises(tiny_core, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "227.png").write_bytes(b"not a png at all")
    with pytest.raises(DatasetError, match="no usable image"):
        convert(images, tiny_core / "sections.csv", tiny_core / "features.csv", tmp_path / "out", show_progress=False)
    assert (tmp_path / "out" / "warnings.csv").is_file()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "cli.py"), "convert", *args, "--quiet"],
                          capture_output=True, text=True)


def test_the_cli_exits_zero_with_bad_rows_and_non_zero_with_one_line_when_nothing_is_usable(broken_core, tmp_path):
    core, _ = broken_core
    ok = _cli("--images", str(core / "images"), "--sections", str(core / "sections.csv"),
              "--labels", str(core / "features.csv"), "--out", str(tmp_path / "ok"))
    assert ok.returncode == 0, ok.stderr
    assert "unknown type of feature" in ok.stderr and "warnings.csv" in ok.stderr
    assert (tmp_path / "ok" / "intervals.csv").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "227.png").write_bytes(b"\x89PNG broken")
    bad = _cli("--images", str(empty), "--sections", str(core / "sections.csv"),
               "--labels", str(core / "features.csv"), "--out", str(tmp_path / "bad"))
    assert bad.returncode != 0
    errors = [line for line in bad.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "no usable image" in errors[0]
    assert "Traceback" not in bad.stderr


def test_a_second_run_into_the_same_folder_leaves_no_stale_tiles(tiny_core, tmp_path):
    out = tmp_path / "out"
    convert(tiny_core / "images", tiny_core / "sections.tab", tiny_core / "features.csv", out,
            ConvertConfig(tiles=TileConfig(rows=320)), show_progress=False)
    result = convert(tiny_core / "images", tiny_core / "sections.tab", tiny_core / "features.csv", out,
                     ConvertConfig(), show_progress=False)
    on_disk = sorted(p.relative_to(out / "yolo" / "images").as_posix() for p in (out / "yolo" / "images").rglob("*.png"))
    assert on_disk == sorted(result.tiles["tile"])


def test_compare_finds_the_images_convert_read_from_any_folder(tiny_core, tmp_path):
    """convert records where each image is (absolute), so compare needs no --images, run from anywhere."""
    from conftest import invoke_cli

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copytree(tiny_core, tmp_path / "a" / "core")
    result = invoke_cli("convert", "--images", "core/images", "--sections", "core/sections.tab", "--labels",
                        "core/features.csv", "--out", tmp_path / "conv", "--px-per-mm", 4, "--quiet",
                        cwd=tmp_path / "a")
    assert result.returncode == 0, result.stderr
    assert pd.read_csv(tmp_path / "conv" / "strips.csv")["path"].map(lambda p: Path(p).is_absolute()).all()
    weights = Path(__file__).resolve().parents[1] / "weights" / "regression.pt"
    compared = invoke_cli("compare", "--data", tmp_path / "conv", "--weights", weights, "--out", tmp_path / "report",
                          "--quiet", cwd=tmp_path / "b")
    assert compared.returncode == 0, compared.stderr
    assert len(pd.read_csv(tmp_path / "report" / "compare.csv")) == 1
