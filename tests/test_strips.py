"""Cutting a core strip: the area mean every head sees, the same as OpenCV's INTER_AREA up to float rounding."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meltloc.geometry import CoreBounds
from meltloc.strips import area_resize, make_strip


@settings(max_examples=150, deadline=None)
@given(rows=st.integers(1, 300), cols=st.integers(1, 200), out_rows=st.floats(0.0, 1.0), out_cols=st.floats(0.0, 1.0),
       sixteen_bit=st.booleans(), chunk_rows=st.integers(1, 64), seed=st.integers(0, 2 ** 31 - 1))
def test_area_resize_gives_opencvs_inter_area_rounded_to_the_nearest_level(rows, cols, out_rows, out_cols,
                                                                           sixteen_bit, chunk_rows, seed):
    dtype = np.uint16 if sixteen_bit else np.uint8
    image = np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, (rows, cols)).astype(dtype)
    n_rows, width = max(1, round(out_rows * rows)), max(1, round(out_cols * cols))
    ours = area_resize(image, width, n_rows, chunk_rows=chunk_rows)
    theirs = cv2.resize(image, (width, n_rows), interpolation=cv2.INTER_AREA).reshape(n_rows, width)
    exact = cv2.resize(image.astype(np.float64), (width, n_rows), interpolation=cv2.INTER_AREA).reshape(n_rows, width)
    assert ours.dtype == dtype and ours.shape == (n_rows, width)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    assert np.abs(ours - exact).max() <= 0.5 + 1e-6 * np.iinfo(dtype).max  # the nearest level, up to float error


def test_area_resize_refuses_what_is_not_a_reduction_of_an_8_or_16_bit_image():
    with pytest.raises(ValueError, match="only reduces"):
        area_resize(np.zeros((100, 50), np.uint8), 64, 10)
    with pytest.raises(ValueError, match="uint8 or uint16"):
        area_resize(np.zeros((100, 50), np.float32), 8, 10)


def test_a_strip_of_a_core_photograph_is_opencvs_area_mean_in_all_but_a_few_pixels():
    rng = np.random.default_rng(3)
    image = rng.normal(120, 30, (9_173, 700)).clip(0, 255).astype(np.uint8)
    image[4_000:4_037] //= 4  # a melt layer
    bounds = CoreBounds(top_row=51.4, bottom_row=9_101.7, left_col=37, right_col=661, height=9_173, width=700)
    strip = make_strip(image, bounds, image_px_per_mm=18.6)
    crop = image[51:9_102, 37 + 31:661 + 1 - 31]
    reference = cv2.resize(crop, strip.pixels.shape[::-1], interpolation=cv2.INTER_AREA)
    differ = np.abs(strip.pixels.astype(int) - reference.astype(int))
    assert differ.max() <= 1 and (differ > 0).mean() < 1e-4
    layer_rows = strip.to_strip_rows([4_000, 4_037])
    assert strip.pixels[int(layer_rows[0]) + 1:int(layer_rows[1]) - 1].mean() < 40 < strip.pixels[:1_000].mean()


def test_a_bright_wide_image_summed_in_large_blocks_does_not_overflow():
    white = np.full((3_000, 3_000), 255, np.uint8)  # 3,000 x 3,000 x 255 is more than a 32-bit integer holds
    assert (area_resize(white, 64, 100, chunk_rows=100_000) == 255).all()


def test_a_core_reduced_by_whole_numbers_gets_opencvs_strip_exactly():
    """OpenCV has a quicker path of its own for reductions by whole numbers; the strip is then OpenCV's, exactly."""
    image = np.random.default_rng(5).integers(0, 256, (4_000, 1_280)).astype(np.uint8)
    bounds = CoreBounds(top_row=10.0, bottom_row=3_990.0, left_col=0, right_col=1_279, height=4_000, width=1_280)
    strip = make_strip(image, bounds, image_px_per_mm=40.0)  # 3,980 rows to 995; 1,152 columns to 64
    crop = image[10:3_990, 64:1_216]
    assert strip.pixels.shape == (995, 64)
    assert np.array_equal(strip.pixels, cv2.resize(crop, (64, 995), interpolation=cv2.INTER_AREA))


def test_a_dim_16_bit_strip_is_brightened_without_clipping_its_bubbly_ice():
    # A dim 16-bit scan of mostly clear ice (black in a dark-field scan, 3 levels on the 8-bit scale) with a bubbly
    # stretch at 60 levels holding a layer 30 % darker: brightened, but the bubbly ice stays under 255 and the layer
    # keeps its depth, where taking the median ice to 16 levels alone would clip the bubbly ice at 255.
    from meltloc.strips import strip_levels

    pixels = np.full((2_000, 64), 3 * 257, np.uint16)
    pixels[1_200:1_800] = 60 * 257
    pixels[1_400:1_420] = 42 * 257
    pixels[0, 0] = 65_535  # a bright speck: 16-bit data
    strip = strip_levels(pixels)
    assert strip.dtype == np.uint8
    assert strip[1:1_000].mean() > 3 * 1.5  # brightened
    assert strip[1_200:1_400].max() < 255
    assert strip[1_200:1_400].mean() - strip[1_400:1_420].mean() > 0.3 * 60 * 1.5


def test_a_dim_scan_with_a_lifted_black_is_brightened_above_its_black():
    # 12-bit data whose black sits at 256 of 4,095 (a camera offset, 16 levels on the 8-bit scale) and whose ice
    # stands 1.5 levels above it: the ice is brought 16 levels above the black, and a layer 30 % darker than the
    # ice (counted above the black) stays levels deep.
    from meltloc.strips import strip_levels

    black = 256
    pixels = np.full((2_000, 64), black + 24, np.uint16)  # 24 of 4,095 = 1.5 levels on the 8-bit scale
    pixels[1_000:1_020] = black + 17
    pixels[0, 0] = 4_095  # 12-bit data
    strip = strip_levels(pixels, black=black)
    assert strip[1:1_000].mean() - black / 16 == pytest.approx(16, abs=1)
    assert strip[1:1_000].mean() - strip[1_000:1_020].mean() >= 4


def test_a_crop_converted_with_its_images_divisor_keeps_the_images_8_bit_levels():
    from meltloc.imageio import to_8bit_scale, to_uint8
    from meltloc.strips import levels_8bit

    # 12-bit data (brightest pixel 4,095) whose left half stays under 1,024: alone, that half reads as 10-bit data
    # and comes out 4 x brighter; with the whole image's divisor it keeps the image's levels. A divisor too small for
    # the data clips at white instead of wrapping round to black.
    rng = np.random.default_rng(3)
    image = rng.integers(0, 1_024, (50, 40)).astype(np.uint16)
    image[:, 20:] = rng.integers(2_000, 4_096, (50, 20))
    image[0, 39] = 4_095
    crop = image[:, :20]
    assert np.array_equal(to_uint8(crop, to_8bit_scale(image)), to_uint8(image)[:, :20])
    assert np.array_equal(levels_8bit(crop, crop, divisor=to_8bit_scale(image)), to_uint8(image)[:, :20])  # review tiles
    assert to_uint8(crop).max() > 3 * to_uint8(crop, to_8bit_scale(image)).max()
    assert to_uint8(np.array([[4_000]], np.uint16), 4.0)[0, 0] == 255  # 1,000 levels, not 1,000 - 3 x 256
    with pytest.raises(ValueError, match="at least 1"):
        to_uint8(crop, 0.5)
