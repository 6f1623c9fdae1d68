"""Label alignment: one shift per image puts the logged melt layers on the dark bands."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from meltloc import MELT_LAYER
from meltloc.alignment import AlignConfig, align_profile, align_section, seed_shift
from meltloc.convert import near_section
from meltloc.geometry import CoreBounds, DepthScale
from meltloc.labels import read_labels
from meltloc.manifest import read_manifest
from meltloc.section import load_section

PX_PER_MM = 10.0


def _core_image(bands: list[tuple[float, float]], rows: int = 4000, gain: float = 1.0, seed: int = 0) -> np.ndarray:
    """A plain core (rows 100..rows-100) with dark bands [from, to) drawn with sub-pixel coverage."""
    rng = np.random.default_rng(seed)
    image = np.zeros((rows, 60), np.float32)
    ice = 120 + 25 * np.sin(np.arange(rows) / 37.0)[:, None] + rng.normal(0, 8, (rows, 50))
    image[:, 5:55] = ice
    y = np.arange(rows, dtype=np.float32)[:, None]
    for a, b in bands:
        cover = np.clip(np.minimum(y + 1, b) - np.maximum(y, a), 0, 1)
        image[:, 5:55] *= 1 - 0.9 * cover
    image[:100] = 0
    image[rows - 100:] = 0
    return np.clip(image * gain, 0, 255).astype(np.uint8)


def _bounds(rows: int = 4000) -> CoreBounds:
    return CoreBounds(100.0, rows - 100.0, 5, 54, rows, 60)


def _scale(rows: int = 4000) -> DepthScale:
    return DepthScale(100.0, 100.0 + (rows - 200) / (PX_PER_MM * 1000), 100.0, rows - 100.0)


def test_a_known_sub_pixel_shift_is_recovered():
    true_bands = [(812.3, 841.0), (1500.7, 1507.9), (2990.2, 3051.6)]
    shift = 37.4
    image = _core_image(true_bands)
    scale = _scale()
    table_depths = scale.row_to_depth(np.array(true_bands) - shift)
    result = align_section("x.png", image, _bounds(), scale, table_depths)
    assert result.shift_px == pytest.approx(shift, abs=0.15)
    assert result.shift_mm == pytest.approx(shift / PX_PER_MM, abs=0.015)
    assert result.confidence > 0.5 and result.flag == ""


def test_exposure_does_not_move_the_shift():
    bands = [(900.0, 930.0), (2100.0, 2112.0)]
    scale = _scale()
    table = scale.row_to_depth(np.array(bands) + 55.0)
    dark = align_section("d", _core_image(bands, gain=0.4), _bounds(), scale, table)
    bright = align_section("b", _core_image(bands, gain=1.8), _bounds(), scale, table)
    assert dark.shift_px == pytest.approx(-55.0, abs=0.2)
    assert bright.shift_px == pytest.approx(dark.shift_px, abs=0.2)


def test_an_image_without_a_labelled_layer_gets_shift_0_and_a_flag():
    result = align_section("x.png", _core_image([]), _bounds(), _scale(), np.empty((0, 2)))
    assert (result.shift_px, result.shift_mm, result.confidence, result.layers) == (0.0, 0.0, 0.0, 0)
    assert result.flag == "no_layer"


def test_two_equally_dark_candidates_give_a_low_confidence_and_one_band_a_high_one():
    norm = np.ones(3000)
    norm[1000:1020] = 0.2
    norm[1080:1100] = 0.2  # an unlogged twin 8 mm below
    layer = np.array([[1000.0, 1020.0]])
    _, twin_confidence, _ = align_profile(norm, layer, PX_PER_MM)
    norm[1080:1100] = 1.0
    shift, single_confidence, _ = align_profile(norm, layer, PX_PER_MM)
    assert twin_confidence < 0.1
    assert single_confidence > 0.9 and shift == pytest.approx(0.0, abs=0.1)


def test_the_search_range_bounds_the_shift():
    norm = np.ones(3000)
    norm[1300:1320] = 0.1  # 30 mm below the logged layer: out of a 15 mm search
    shift, _, at_limit = align_profile(norm, np.array([[1000.0, 1020.0]]), PX_PER_MM, AlignConfig(search_mm=15))
    assert abs(shift) <= 150 + 1e-9
    shift, confidence, at_limit = align_profile(norm, np.array([[1000.0, 1020.0]]), PX_PER_MM, AlignConfig(search_mm=40))
    assert shift == pytest.approx(300.0, abs=0.2) and not at_limit


def test_the_seeds_method_finds_a_plain_band_to_within_its_padding():
    bands = [(1500.0, 1530.0)]
    image = _core_image(bands)
    assert abs(seed_shift(image, np.array(bands) - 60.0) - 60) <= 20


def test_the_recovered_shift_on_the_tiny_core_is_within_half_a_pixel_of_the_truth(tiny_core):
    manifest = read_manifest(tiny_core / "sections.tab")
    labels = read_labels(tiny_core / "features.csv").table
    truth = pd.read_csv(tiny_core / "truth_sections.csv").set_index("image")
    extents = labels[["depth_from_m", "depth_to_m"]].to_numpy()
    checked = 0
    for rec in manifest.table.itertuples():
        section = load_section(tiny_core / "images" / rec.image, manifest)
        mask = near_section(extents, rec.top_m, rec.bottom_m, 15.0) & (labels["type"] == MELT_LAYER).to_numpy()
        result = align_section(rec.image, section.image, section.bounds, section.scale, extents[mask])
        if truth.loc[rec.image, "melt_layers"] == 0:
            continue
        px_per_mm = section.scale.px_per_m / 1000  # 2 px/mm at 20 px/cm
        assert abs(result.shift_mm - truth.loc[rec.image, "offset_mm"]) * px_per_mm <= 0.5, rec.image
        assert result.confidence > 0.5
        checked += 1
    assert checked >= 2
