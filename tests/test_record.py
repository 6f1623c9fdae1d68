"""`meltloc record`: melt record, ages, coverage, agreement; every figure computed by hand below.

The core used throughout (made in the tests):

    s1.png 10.0-11.0 m, s2.png 11.0-12.0 m, s3.png 12.5-13.5 m   (12.0-12.5 m never imaged)

with 0.5 m bins 10.0 | 10.5 | 11.0 | 11.5 | 12.0 | 12.5 | 13.0 | 13.5 and these detections:

    L1 10.2000-10.2040  4 mm  bin 0
    L2 10.4990-10.5030  4 mm  crosses 10.5: 1 mm in bin 0, 3 mm in bin 1; midpoint 10.501 -> counted in bin 1
    lens 11.3000-11.3010      bin 2 (no melt_mm: lenses are not layers)
    L3 11.7000-11.7020  2 mm  bin 3
    (bin 4, 12.0-12.5: not imaged)
    L4 12.8000-12.8100 10 mm  bin 5
    L5 13.2000-13.2030  3 mm  bin 6

Age scale: 10 m -> 100 b2k, 12 m -> 140 b2k, 14 m -> 200 b2k (20 then 30 years per meter).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import run_cli
from meltloc.agescale import AgeScaleError, read_age_scale, read_thinning
from meltloc.errors import MeltlocError
from meltloc.record import make_record

DETECT_HEADER = ["image", "depth_from_m", "depth_to_m", "thickness_mm", "type", "score", "row_from", "row_to"]
DETECTIONS = [
    ["s1.png", 10.2000, 10.2040, 4.0, "melt_layer", 0.9],
    ["s1.png", 10.4990, 10.5030, 4.0, "melt_layer", 0.8],
    ["s2.png", 11.3000, 11.3010, 1.0, "melt_lens", 0.7],
    ["s2.png", 11.7000, 11.7020, 2.0, "melt_layer", 0.9],
    ["s3.png", 12.8000, 12.8100, 10.0, "melt_layer", 0.95],
    ["s3.png", 13.2000, 13.2030, 3.0, "melt_layer", 0.6],
]
EMPTY = None  # an empty cell: nothing imaged


def _write_csv(path: Path, header, rows) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def core(tmp_path):
    """Manifest, detections and age scale of the core in the module docstring."""
    manifest = _write_csv(tmp_path / "sections.csv", ["image", "top_m", "bottom_m"],
                          [["s1.png", 10.0, 11.0], ["s2.png", 11.0, 12.0], ["s3.png", 12.5, 13.5]])
    det = _write_csv(tmp_path / "det.csv", DETECT_HEADER, [r + [0, 0] for r in DETECTIONS])
    scale = _write_csv(tmp_path / "scale.csv", ["depth_m", "age_b2k"], [[10, 100], [12, 140], [14, 200]])
    return {"dir": tmp_path, "manifest": manifest, "det": det, "scale": scale}


def _cell(value):
    return None if pd.isna(value) else value


def _check_column(table: pd.DataFrame, column: str, expected: list) -> None:
    got = [_cell(v) for v in table[column]]
    assert len(got) == len(expected), (column, got)
    for g, e in zip(got, expected):
        if e is None:
            assert g is None, (column, got, expected)
        else:
            assert g is not None and math.isclose(float(g), e, rel_tol=1e-9, abs_tol=1e-6), (column, got, expected)


def test_record_csv_every_column_by_depth(core):
    out = core["dir"] / "rec"
    make_record(core["det"], core["manifest"], out, age_scale=core["scale"], bin_m=0.5)
    table = pd.read_csv(out / "record.csv")
    assert list(table.columns[:10]) == ["bin_top_m", "bin_bot_m", "age_top_b2k", "age_bot_b2k", "imaged_m",
                                        "n_layers", "n_lenses", "melt_mm", "melt_percent", "layers_per_m"]
    _check_column(table, "bin_top_m", [10.0, 10.5, 11.0, 11.5, 12.0, 12.5, 13.0])
    _check_column(table, "bin_bot_m", [10.5, 11.0, 11.5, 12.0, 12.5, 13.0, 13.5])
    # 20 years per meter above 12 m, 30 below: 100 + 20 (d - 10), 140 + 30 (d - 12).
    _check_column(table, "age_top_b2k", [100, 110, 120, 130, 140, 155, 170])
    _check_column(table, "age_bot_b2k", [110, 120, 130, 140, 155, 170, 185])
    _check_column(table, "imaged_m", [0.5, 0.5, 0.5, 0.5, 0.0, 0.5, 0.5])
    _check_column(table, "n_layers", [1, 1, 0, 1, EMPTY, 1, 1])
    _check_column(table, "n_lenses", [0, 0, 1, 0, EMPTY, 0, 0])
    # L2 split by length: 1 mm above 10.5 m, 3 mm below.
    _check_column(table, "melt_mm", [4 + 1, 3, 0, 2, EMPTY, 10, 3])
    # melt_mm / (imaged_m * 1000) * 100 with imaged_m = 0.5: melt_mm / 5.
    _check_column(table, "melt_percent", [1.0, 0.6, 0.0, 0.4, EMPTY, 2.0, 0.6])
    # n_layers / 0.5
    _check_column(table, "layers_per_m", [2, 2, 0, 2, EMPTY, 2, 2])
    _check_column(table, "cum_melt_mm", [5, 8, 8, 10, 10, 20, 23])
    for name in ("features.csv", "record_depth.png", "record_depth.svg", "record_age.png", "record_age.svg"):
        assert (out / name).stat().st_size > 0, name


def test_features_csv_ages_and_columns(core):
    out = core["dir"] / "rec"
    make_record(core["det"], core["manifest"], out, age_scale=core["scale"], bin_m=0.5, plots=False)
    f = pd.read_csv(out / "features.csv")
    assert list(f.columns) == ["image", "depth_from_m", "depth_to_m", "thickness_mm", "type", "score",
                               "age_b2k", "age_ce"]
    assert list(f["image"]) == ["s1.png", "s1.png", "s2.png", "s2.png", "s3.png", "s3.png"]
    assert list(f["type"]) == ["melt_layer", "melt_layer", "melt_lens", "melt_layer", "melt_layer", "melt_layer"]
    # Age of depth_from_m: 100 + 20 * (d - 10) above 12 m, 140 + 30 * (d - 12) below; CE = 2000 - b2k.
    expected_b2k = [104.0, 109.98, 126.0, 134.0, 164.0, 176.0]
    assert np.allclose(f["age_b2k"], expected_b2k)
    assert np.allclose(f["age_ce"], [2000 - a for a in expected_b2k])
    assert np.allclose(f["thickness_mm"], [4, 4, 1, 2, 10, 3])
    assert np.allclose(f["score"], [0.9, 0.8, 0.7, 0.9, 0.95, 0.6])


def test_age_bins(core):
    """50-year bins: 100-150 b2k is 10.0-12.333 m, 150-200 b2k is 12.333-13.5 m (the core ends at 13.5 m)."""
    out = core["dir"] / "rec"
    make_record(core["det"], core["manifest"], out, age_scale=core["scale"], bin_years=50, plots=False)
    t = pd.read_csv(out / "record.csv")
    _check_column(t, "age_top_b2k", [100, 150])
    _check_column(t, "age_bot_b2k", [150, 200])
    _check_column(t, "bin_top_m", [10.0, 12 + 10 / 30])
    _check_column(t, "bin_bot_m", [12 + 10 / 30, 13.5])
    _check_column(t, "imaged_m", [2.0, 1.0])  # 12.0-12.5 m is a gap
    _check_column(t, "n_layers", [3, 2])
    _check_column(t, "n_lenses", [1, 0])
    _check_column(t, "melt_mm", [4 + 4 + 2, 10 + 3])
    _check_column(t, "melt_percent", [10 / 2000 * 100, 13 / 1000 * 100])
    _check_column(t, "layers_per_m", [1.5, 2.0])


def test_images_folder_gives_coverage(core):
    """With --images only images present and with a core count: s2 is missing, s3 unreadable."""
    import cv2

    images = core["dir"] / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    img = np.zeros((800, 80), np.uint8)
    img[40:760, 12:68] = rng.integers(120, 200, (720, 56))
    cv2.imwrite(str(images / "s1.png"), img)
    (images / "s3.png").write_text("not an image")
    out = core["dir"] / "rec"
    result = make_record(core["det"], core["manifest"], out, bin_m=1.0, images=images, plots=False)
    t = pd.read_csv(out / "record.csv")
    _check_column(t, "bin_top_m", [10.0])  # only 10-11 m was imaged and processed
    _check_column(t, "imaged_m", [1.0])
    _check_column(t, "n_layers", [2])
    _check_column(t, "melt_mm", [8])
    assert any(p.kind == "record_image_unusable" for p in result.problems)
    assert any(p.kind == "record_outside_imaged" and "4 feature(s)" in p.message for p in result.problems)


def test_thinning_correction(core):
    thin = _write_csv(core["dir"] / "thinning.csv", ["depth_m", "thinning_factor"], [[10, 1.0], [14, 0.5]])
    out = core["dir"] / "rec"
    make_record(core["det"], core["manifest"], out, bin_m=0.5, thinning=thin, plots=False)
    f = pd.read_csv(out / "features.csv")
    # factor at the midpoint 1 - 0.5 (d - 10) / 4; L1 mid 10.202 -> 0.97475; L4 mid 12.805 -> 0.649375.
    assert math.isclose(f["thickness_corrected_mm"][0], 4 / 0.97475, rel_tol=1e-3)
    assert math.isclose(f["thickness_corrected_mm"][4], 10 / 0.649375, rel_tol=1e-3)
    t = pd.read_csv(out / "record.csv")
    assert math.isclose(t["melt_corrected_mm"][5], 10 / 0.649375, rel_tol=1e-3)
    assert np.isnan(t["melt_corrected_mm"][4])


def test_review_file_counts_accepted_edited_added_only(core):
    rows = [r + [0, 0, s, "", ""] for r, s in zip(DETECTIONS, ["accepted", "rejected", "unreviewed", "edited",
                                                              "added", "rejected"])]
    review = _write_csv(core["dir"] / "det.review.csv", DETECT_HEADER + ["status", "note", "reviewed_at"], rows)
    out = core["dir"] / "rec"
    result = make_record(review, core["manifest"], out, bin_m=0.5, plots=False)
    t = pd.read_csv(out / "record.csv")
    _check_column(t, "n_layers", [1, 0, 0, 1, EMPTY, 1, 0])
    _check_column(t, "n_lenses", [0, 0, 0, 0, EMPTY, 0, 0])
    _check_column(t, "melt_mm", [4, 0, 0, 2, EMPTY, 10, 0])
    assert any(p.kind == "record_unreviewed" for p in result.problems)


def _log(path: Path, rows) -> Path:
    return _write_csv(path, ["bag", "depth from", "depth to", "age (b2k)", "age (CE)", "type of feature"], rows)


def test_melt_log_with_alignment_and_from_labels_scale(core):
    """A log 2 mm shallow in s1 (alignment +2 mm), an uncertain entry, a layer in the gap (not imaged)."""
    log = _log(core["dir"] / "log.csv", [
        [1, 10.1980, 10.2020, 104.0, 1896.0, "meltLayer"],
        [1, 10.4970, 10.5010, 110.0, 1890.0, "meltLayer"],
        [2, 11.7000, 11.7020, 134.0, 1866.0, "meltLayer"],
        [2, 11.8000, "NaN", 136.0, 1864.0, "meltLayer uncertain"],
        ["NaN", 12.2000, 12.2050, 146.0, 1854.0, "meltLayer"],
        [3, 12.8000, 12.8100, 164.0, 1836.0, "meltLayer"],
    ])
    align = _write_csv(core["dir"] / "alignment.csv", ["image", "shift_px", "shift_mm", "confidence"],
                       [["s1.png", 0, 2.0, 1], ["s2.png", 0, 0.0, 1], ["s3.png", 0, 0.0, 1]])
    out = core["dir"] / "rec"
    result = make_record(log, core["manifest"], out, bin_m=0.5, alignment=align, age_scale="from-labels", plots=False)
    f = pd.read_csv(out / "features.csv")
    assert np.allclose(f["depth_from_m"], [10.2000, 10.4990, 11.7000, 12.8000])
    assert list(f["image"]) == ["s1.png", "s1.png", "s2.png", "s3.png"]
    # The log's own pairs are the scale: 10.198 -> 104, 10.497 -> 110, 11.7 -> 134, 11.8 -> 136, 12.2 -> 146,
    # 12.8 -> 164. Aligned 10.200 m: 104 + 6 * 0.002 / 0.299.
    assert math.isclose(f["age_b2k"][0], 104 + 6 * 0.002 / 0.299, abs_tol=1e-3)
    t = pd.read_csv(out / "record.csv")
    _check_column(t, "melt_mm", [5, 3, 0, 2, EMPTY, 10, 0])
    _check_column(t, "n_layers", [1, 1, 0, 1, EMPTY, 1, 0])
    kinds = {p.kind for p in result.problems}
    assert {"record_not_melt", "record_outside_imaged"} <= kinds


def test_compare_side_by_side_and_agreement(core):
    """The log misses L5 and gives L4 as 8 mm."""
    log = _log(core["dir"] / "log.csv", [
        [1, 10.2000, 10.2040, "", "", "meltLayer"],
        [1, 10.4990, 10.5030, "", "", "meltLayer"],
        [2, 11.3000, 11.3000, "", "", "meltLens"],
        [2, 11.7000, 11.7020, "", "", "meltLayer"],
        [3, 12.8000, 12.8080, "", "", "meltLayer"],
    ])
    out = core["dir"] / "rec"
    result = make_record(core["det"], core["manifest"], out, bin_m=0.5, compare=log, xlsx=True)
    c = pd.read_csv(out / "compare.csv")
    _check_column(c, "melt_mm_detections", [5, 3, 0, 2, EMPTY, 10, 3])
    _check_column(c, "melt_mm_log", [5, 3, 0, 2, EMPTY, 8, 0])
    _check_column(c, "melt_mm_diff", [0, 0, 0, 0, EMPTY, 2, 3])
    _check_column(c, "n_layers_diff", [0, 0, 0, 0, EMPTY, 0, 1])
    a = dict(pd.read_csv(out / "agreement.csv").itertuples(index=False))
    # Pearson r over the six imaged bins of the per-bin lists above.
    assert math.isclose(a["r_melt_mm"], np.corrcoef([5, 3, 0, 2, 10, 3], [5, 3, 0, 2, 8, 0])[0, 1], rel_tol=1e-5)
    assert math.isclose(a["r_n_layers"], np.corrcoef([1, 1, 0, 1, 1, 1], [1, 1, 0, 1, 1, 0])[0, 1], rel_tol=1e-5)
    assert a["total_melt_mm_detections"] == pytest.approx(23)
    assert a["total_melt_mm_log"] == pytest.approx(18)
    assert a["bins"] == 6
    assert result.agreement.figures["n_layers_log"] == 4
    for name in ("compare.png", "compare.svg", "record.xlsx"):
        assert (out / name).stat().st_size > 0
    sheets = pd.read_excel(out / "record.xlsx", sheet_name=None)
    assert {"record", "features", "compare", "agreement"} <= set(sheets)
    assert sheets["record"]["melt_mm"].isna().tolist() == [False, False, False, False, True, False, False]


def test_age_scale_headers_recognised(tmp_path):
    tsv = tmp_path / "gicc05.tab"
    tsv.write_text("/* DATA DESCRIPTION:\nCitation:\tsomeone\n*/\nDepth [m]\tGICC05 age (b2k)\tMCE\n"
                   "10\t100\t1\n12\t140\t1\n")
    scale = read_age_scale(tsv)
    assert scale.at(11.0) == pytest.approx(120)
    assert np.isnan(scale.at(9.0)) and np.isnan(scale.at(12.5))
    xlsx = tmp_path / "scale.xlsx"
    pd.DataFrame({"Depth (m)": [10, 12], "Age (b2k)": [100, 140]}).to_excel(xlsx, index=False)
    assert read_age_scale(xlsx).at(10.5) == pytest.approx(110)
    odd = _write_csv(tmp_path / "odd.csv", ["z_top", "years"], [[10, 100], [12, 140]])
    with pytest.raises(AgeScaleError, match="--depth-column"):
        read_age_scale(odd)
    assert read_age_scale(odd, depth_column="z_top", age_column="years").at(11) == pytest.approx(120)


@pytest.mark.parametrize("header, message", [
    ("Age [ka BP]", "thousands of years"),
    ("age (a BP)", "before 1950"),
])
def test_age_scale_in_other_units_refused(tmp_path, header, message):
    scale = _write_csv(tmp_path / "scale.csv", ["depth_m", header], [[10, 1.0], [12, 1.2]])
    with pytest.raises(AgeScaleError, match=message):
        read_age_scale(scale)


@pytest.mark.parametrize("rows, message", [
    ([[10, 100], [12, 140], [11, 150]], r"row 4: depth 11 m does not increase"),
    ([[10, 100], [12, 140], [13, 130]], r"row 4: age 130 b2k is younger"),
    ([[10, 100], ["twelve", 140]], r"row 3: 'depth_m' is 'twelve', not a number"),
])
def test_bad_age_scale_rows_named(tmp_path, rows, message):
    bad = _write_csv(tmp_path / "bad.csv", ["depth_m", "age_b2k"], rows)
    with pytest.raises(AgeScaleError, match=message):
        read_age_scale(bad)


def test_bad_thinning_factor(tmp_path):
    bad = _write_csv(tmp_path / "thin.csv", ["depth_m", "thinning"], [[10, 1.0], [12, 0]])
    with pytest.raises(AgeScaleError, match=r"row 3: thinning factor 0"):
        read_thinning(bad)


@pytest.mark.parametrize("header, rows, message", [
    (["depth_m", "age_b2k"], [[10, 100], [9, 140]], "row 3: depth 9 m does not increase"),
    (["depth_m", "age_b2k"], [[10, 100], [12, "old"]], "row 3: 'age_b2k' is 'old', not a number"),
    (["depth_m", "comment"], [[10, "a"], [12, "b"]], "no age (b2k) column"),
])
def test_cli_bad_scale_one_line(core, header, rows, message):
    bad = _write_csv(core["dir"] / "bad_scale.csv", header, rows)
    result = run_cli("record", core["det"], "--sections", core["manifest"], "--out", core["dir"] / "rec",
                     "--age-scale", bad)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "bad_scale.csv" in lines[0], result.stderr
    assert not (core["dir"] / "rec" / "record.csv").exists()


def test_cli_refuses_existing_record_unless_overwrite(core):
    out = core["dir"] / "rec"
    first = run_cli("record", core["det"], "--sections", core["manifest"], "--out", out, "--bin-m", "0.5")
    assert first.returncode == 0, first.stderr
    again = run_cli("record", core["det"], "--sections", core["manifest"], "--out", out)
    assert again.returncode == 2 and "--overwrite" in again.stderr
    assert pd.read_csv(out / "record.csv")["bin_bot_m"][0] == 10.5  # untouched
    replaced = run_cli("record", core["det"], "--sections", core["manifest"], "--out", out, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert pd.read_csv(out / "record.csv")["bin_bot_m"][0] == 11.0


def test_never_writes_where_an_input_is(core):
    from meltloc.errors import OutputError

    with pytest.raises(OutputError, match="input"):
        make_record(core["det"], core["manifest"], core["dir"], overwrite=True, plots=False)
    assert not (core["dir"] / "record.csv").exists()


def test_exposure_variants_not_counted_twice_and_empty_input(core):
    """Two exposures of one section cover it once; a run without detections is a record of zeros, not gaps."""
    manifest = _write_csv(core["dir"] / "variants.csv", ["image", "top_m", "bottom_m"],
                          [["s1.png", 10.0, 11.0], ["s1_1.png", 10.0, 11.0], ["s2.png", 11.0, 11.5]])
    empty = _write_csv(core["dir"] / "none.csv", DETECT_HEADER, [])
    out = core["dir"] / "rec"
    make_record(empty, manifest, out, bin_m=1.0, plots=False)
    t = pd.read_csv(out / "record.csv")
    _check_column(t, "imaged_m", [1.0, 0.5])
    _check_column(t, "n_layers", [0, 0])
    _check_column(t, "melt_mm", [0, 0])
    _check_column(t, "melt_percent", [0, 0])
    assert len(pd.read_csv(out / "features.csv")) == 0


def test_bin_years_needs_scale(core):
    with pytest.raises(MeltlocError, match="--bin-years needs an age scale"):
        make_record(core["det"], core["manifest"], core["dir"] / "rec", bin_years=100)


def test_sample_in_one_command(tmp_path):
    """No INPUT: the shipped weights on the shipped sample, compared with its log, on the made-up scale."""
    result = run_cli("record", "--out", tmp_path / "rec", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "rec"
    for name in ("detections.csv", "features.csv", "record.csv", "record_depth.png", "record_age.png",
                 "compare.csv", "agreement.csv", "compare.png"):
        assert (out / name).stat().st_size > 0, name
    t = pd.read_csv(out / "record.csv")
    assert t["imaged_m"].sum() == pytest.approx(3 * 1.65)  # the three sample sections, 124.30-129.25 m
    assert t["age_top_b2k"].notna().all()
    figures = dict(pd.read_csv(out / "agreement.csv").itertuples(index=False))
    assert {"r_melt_mm", "r_n_layers", "total_melt_mm_detections", "total_melt_mm_log"} <= set(figures)
    assert "made up" in result.stderr
