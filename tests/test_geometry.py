"""Core geometry: the depth <-> row map, the core's ends, and the check of each image's scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meltloc.errors import GeometryError
from meltloc.geometry import DepthScale, find_core, scale_outliers
from meltloc.imageio import read_image

scales = st.builds(
    lambda top_m, length_m, top_row, px_per_m: DepthScale(top_m, top_m + length_m, top_row, top_row + length_m * px_per_m),
    top_m=st.floats(13.75, 2120.0),
    length_m=st.floats(0.5, 2.0),
    top_row=st.floats(0.0, 2000.0),
    px_per_m=st.floats(500.0, 40000.0),
)


@settings(max_examples=200, deadline=None)
@given(scale=scales, fraction=st.floats(-0.1, 1.1))
def test_depth_to_row_to_depth_gives_back_the_depth(scale, fraction):
    depth = scale.top_m + fraction * (scale.bottom_m - scale.top_m)
    assert float(scale.row_to_depth(scale.depth_to_row(depth))) == pytest.approx(depth, abs=1e-9)


@settings(max_examples=200, deadline=None)
@given(scale=scales, row=st.floats(0.0, 45000.0))
def test_row_to_depth_to_row_gives_back_the_row(scale, row):
    assert float(scale.depth_to_row(scale.row_to_depth(row))) == pytest.approx(row, abs=1e-6)


@given(scale=scales)
def test_the_core_ends_map_to_the_manifest_depths(scale):
    assert float(scale.depth_to_row(scale.top_m)) == pytest.approx(scale.top_row)
    assert float(scale.depth_to_row(scale.bottom_m)) == pytest.approx(scale.bottom_row)
    assert scale.mm_to_rows(1000.0) == pytest.approx(scale.px_per_m)


def test_found_core_ends_lie_within_a_third_of_a_millimetre_of_the_drawn_ends(tiny_core):
    sections = pd.read_csv(tiny_core / "truth_sections.csv")
    for sec in sections.itertuples():
        bounds = find_core(read_image(tiny_core / "images" / sec.image))
        px_per_mm = sec.px_per_m / 1000
        assert abs(bounds.top_row - sec.top_row) / px_per_mm < 0.3
        assert abs(bounds.bottom_row - sec.bottom_row) / px_per_mm < 0.3


def test_an_image_whose_scale_is_more_than_5_percent_off_the_others_is_named():
    scales_px_per_m = {"227.png": 18600.0, "230.png": 18650.0, "233.png": 18550.0, "236.png": 20000.0}
    off = scale_outliers(scales_px_per_m)
    assert list(off) == ["236.png"]
    assert off["236.png"] == pytest.approx(20000 / 18625 - 1)


def test_scales_within_5_percent_and_a_lone_image_are_not_named():
    assert scale_outliers({"a": 18600.0, "b": 19400.0, "c": 18000.0}) == {}
    assert scale_outliers({"a": 18600.0}) == {}


def test_find_core_is_unchanged_by_exposure():
    rng = np.random.default_rng(0)
    image = np.zeros((1200, 120), np.float32)
    image[100:1100, 10:110] = 120 + 30 * rng.random((1000, 100))
    dark = find_core(image.astype(np.uint8))
    bright = find_core(np.clip(image * 1.8, 0, 255).astype(np.uint8))
    assert dark.top_row == pytest.approx(100, abs=0.6)
    assert dark.bottom_row == pytest.approx(1100, abs=0.6)
    assert bright.top_row == pytest.approx(dark.top_row, abs=0.3)
    assert bright.bottom_row == pytest.approx(dark.bottom_row, abs=0.3)


def test_core_finding_percentiles_are_numpys_from_a_histogram():
    from meltloc.geometry import _integer_percentiles

    rng = np.random.default_rng(1)
    for dtype, top in ((np.uint8, 256), (np.uint16, 1024), (np.uint16, 65536)):
        for n in (1, 2, 7, 1000, 100_000):
            values = rng.integers(0, top, n).astype(dtype)
            values[: n // 3] = values[0]  # ties
            qs = (0, 1, 50, 80, 100)
            assert _integer_percentiles(values, qs) == pytest.approx(
                [np.percentile(values.astype(np.float64), q) for q in qs], abs=1e-9)


def test_a_dim_image_with_a_noisy_background_has_its_core_ends_and_sides_where_the_ice_is():
    # As a dim 16-bit scan draws it (hard_big's 1811.png): ice three times the black around it, and sensor noise
    # that lifts several background pixels in a hundred of the coarse mask over the lit threshold. That speckle must
    # not be glued to the core, which put its ends at the image's edges, in the black (16 mm off there).
    rng = np.random.default_rng(3)
    height, width = 16000, 300                                                   # about 8 px per mm
    image = 1030 + 900 * rng.standard_normal((height, width))                 # black, noisy
    top, bottom, left, right = 1500, 15000, 30, 270
    image[top:bottom, left:right] += 2100 + 700 * rng.random((bottom - top, right - left))
    bounds = find_core(np.clip(image, 0, 65535).astype(np.uint16))
    px_per_mm = (bottom - top) / 1650
    assert abs(bounds.top_row - top) / px_per_mm < 0.3
    assert abs(bounds.bottom_row - bottom) / px_per_mm < 0.3
    # the sides within 3 coarse pixels (the strips are cut 5 % of the width in from them); before, at the image's edges
    assert abs(bounds.left_col - left) <= 12 and abs(bounds.right_col - right) <= 12


@pytest.mark.parametrize("stretch_row", [8000, 14300])
def test_a_long_dark_noisy_stretch_inside_a_core_does_not_cut_it(stretch_row):
    # 58 mm of dim, noisy ice (below the lit threshold on average, above it in places) in the middle of the core or
    # near its bottom end: the core still runs from end to end.
    rng = np.random.default_rng(0)
    height, width = 16000, 300
    image = 8 + 6 * rng.standard_normal((height, width))
    image[1500:15000, 30:270] = 120 + 30 * rng.random((13500, 240))
    image[stretch_row:stretch_row + 475, 30:270] = 30 + 20 * rng.standard_normal((475, 240))
    bounds = find_core(np.clip(image, 0, 255).astype(np.uint8))
    assert bounds.top_row == pytest.approx(1500, abs=3)
    assert bounds.bottom_row == pytest.approx(15000, abs=3)


def test_a_16_bit_frame_of_sensor_noise_alone_holds_no_core():
    # A dim 16-bit scan's core is looked for on a finer scale than 8 bits, but only where it stands clear of the
    # black's own noise: a frame of noise alone is still refused.
    rng = np.random.default_rng(4)
    frame = np.clip(1000 + 40 * rng.standard_normal((4000, 200)), 0, 65535).astype(np.uint16)
    frame[0, 0] = 65535  # 16-bit data
    with pytest.raises(GeometryError, match="no core found"):
        find_core(frame)


def test_an_evenly_lit_dim_16_bit_frame_with_no_core_is_refused():
    # A dim, empty 16-bit frame lit from end to end with a smooth fall-off towards its sides (vignetting) and no
    # noise to give it away: nothing is a core, for it has no black beyond any core's ends.
    rows, cols = 4000, 200
    x = np.linspace(-1.0, 1.0, cols)
    frame = np.repeat((1000 + 600 * (1 - x ** 2))[None, :], rows, axis=0).astype(np.uint16)
    frame[0, 0] = 65535  # 16-bit data
    with pytest.raises(GeometryError, match="no core found"):
        find_core(frame)


def test_an_8_bit_file_as_dim_as_a_found_16_bit_scan_still_holds_no_core():
    # The sample section at a 50th of its levels, as an 8-bit file: 2-3 levels of contrast and nothing finer to give.
    image = read_image(Path(__file__).resolve().parents[1] / "datasets" / "sample" / "images" / "227.png")
    with pytest.raises(GeometryError, match="no core found"):
        find_core(image // 50)
