"""`meltloc synth`: synthetic EastGRIP-like cores that the rest of meltloc reads."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from meltloc import MELT_LAYER
from meltloc.geometry import find_core
from meltloc.imageio import list_images, read_image
from meltloc.labels import read_labels
from meltloc.manifest import read_manifest
from meltloc.synth import SynthConfig, write_core

REPO = Path(__file__).resolve().parents[1]


def _digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_same_seed_gives_same_bytes_and_another_seed_differs(tmp_path):
    cfg = SynthConfig(px_per_cm=12)
    write_core(tmp_path / "a", n_sections=2, seed=5, config=cfg)
    write_core(tmp_path / "b", n_sections=2, seed=5, config=cfg)
    write_core(tmp_path / "c", n_sections=2, seed=6, config=cfg)
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert a == b
    assert a["images/227.png"] != c["images/227.png"]


def test_every_written_file_reads_back_with_meltlocs_readers(tiny_core):
    for name in ("sections.tab", "sections.csv"):
        manifest = read_manifest(tiny_core / name)
        assert list(manifest.table["image"]) == ["227.png", "230.png", "233.png"]
        assert manifest.table["top_m"].tolist() == pytest.approx([124.30, 125.95, 127.60])
        assert (manifest.table["bottom_m"] - manifest.table["top_m"]).tolist() == pytest.approx([1.65] * 3)
        assert manifest.problems == []
    labels = read_labels(tiny_core / "features.csv")
    assert labels.problems == []
    assert len(labels.table) > 0
    assert set(labels.table["type"]) <= {"melt_layer", "melt_lens", "uncertain", "bubble_free"}
    images = list_images(tiny_core / "images")
    assert [p.name for p in images] == ["227.png", "230.png", "233.png"]
    for path in images:
        image = read_image(path)
        assert image.dtype == np.uint8 and image.ndim == 2
    truth = pd.read_csv(tiny_core / "truth.csv")
    assert {"image", "type", "depth_from_m", "depth_to_m", "row_from", "row_to", "offset_mm"} <= set(truth.columns)


def test_labels_are_misaligned_by_one_offset_per_section(tiny_core):
    truth = pd.read_csv(tiny_core / "truth.csv")
    labels = read_labels(tiny_core / "features.csv").table
    layers = truth[(truth["type"] == MELT_LAYER) & truth["logged"]]
    assert len(layers) > 0
    for rec in layers.itertuples():
        logged = labels[(labels["type"] == MELT_LAYER) & ((labels["depth_from_m"] - rec.depth_from_m).abs() < 0.02)]
        # table depth + offset = true depth, to the 0.1 mm rounding plus the picking scatter
        best = (logged["depth_from_m"] + rec.offset_mm / 1000 - rec.depth_from_m).abs().min()
        assert best < 0.0002


def test_true_melt_layers_are_darker_than_the_ice_around_them(tiny_core):
    truth = pd.read_csv(tiny_core / "truth.csv")
    sections = pd.read_csv(tiny_core / "truth_sections.csv").set_index("image")
    layers = truth[truth["type"] == MELT_LAYER]
    assert len(layers) >= 3
    for rec in layers.itertuples():
        image = read_image(tiny_core / "images" / rec.image).astype(np.float32)
        sec = sections.loc[rec.image]
        cols = slice(int(sec.left_col), int(sec.right_col))
        profile = image[:, cols].mean(axis=1)
        inside = profile[int(np.ceil(rec.row_from)):int(np.floor(rec.row_to)) + 1]
        px_per_mm = sec.px_per_m / 1000
        around = np.r_[profile[int(rec.row_from - 6 * px_per_mm):int(rec.row_from - 2 * px_per_mm)],
                       profile[int(rec.row_to + 2 * px_per_mm):int(rec.row_to + 6 * px_per_mm)]]
        assert inside.min() < 0.6 * np.median(around), rec


def test_manifest_depths_match_the_core_ends_in_the_image(tiny_core):
    manifest = read_manifest(tiny_core / "sections.tab").table.set_index("image")
    sections = pd.read_csv(tiny_core / "truth_sections.csv")
    for sec in sections.itertuples():
        bounds = find_core(read_image(tiny_core / "images" / sec.image))
        px_per_mm = sec.px_per_m / 1000
        # found ends within 0.5 mm of the drawn ends, which the manifest depths pin
        assert abs(bounds.top_row - sec.top_row) < 0.5 * px_per_mm
        assert abs(bounds.bottom_row - sec.bottom_row) < 0.5 * px_per_mm
        assert manifest.loc[sec.image, "top_m"] == pytest.approx(sec.top_m)
        assert manifest.loc[sec.image, "bottom_m"] == pytest.approx(sec.bottom_m)
        # the core's length in the image is 1.65 m within 1 %
        assert (bounds.bottom_row - bounds.top_row) / (sec.px_per_m * 1.65) == pytest.approx(1.0, abs=0.01)


def test_synth_writes_bmp_when_asked(tmp_path):
    write_core(tmp_path, n_sections=1, seed=1, config=SynthConfig(px_per_cm=10, image_format="bmp"))
    assert (tmp_path / "images" / "227.bmp").read_bytes()[:2] == b"BM"
    assert read_manifest(tmp_path / "sections.tab").table["image"].tolist() == ["227.bmp"]


def test_cli_py_shows_the_same_help_as_the_console_script():
    via_script = subprocess.run([sys.executable, "-m", "meltloc.cli", "--help"], capture_output=True, text=True)
    via_cli_py = subprocess.run([sys.executable, str(REPO / "cli.py"), "--help"], capture_output=True, text=True)
    assert via_script.returncode == 0 and via_cli_py.returncode == 0
    assert "synth" in via_cli_py.stdout and "detect" in via_cli_py.stdout
    assert via_script.stdout == via_cli_py.stdout


def test_synth_command_writes_a_core(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "cli.py"), "synth", str(tmp_path / "c"), "--sections", "1",
                             "--px-per-cm", "10", "--seed", "2"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    for name in ("images/227.png", "sections.tab", "sections.csv", "features.csv", "truth.csv"):
        assert (tmp_path / "c" / name).is_file()


def test_the_classic_style_draws_the_first_rounds_pixels():
    """Earlier figures stay reproducible: --style classic gives the pixels the first round's synth gave."""
    from meltloc.synth import draw_section

    section = draw_section(227, 5, SynthConfig(px_per_cm=12, style="classic"))
    assert section.image.shape == (2015, 116)
    assert hashlib.sha256(section.image.tobytes()).hexdigest() == \
        "ad616ba336b4f95b9e41e2e2e79c5bde8d2d35d51cf46f748bbe3b5c6656f901"


def _layer_contrast(image: np.ndarray, sec, rec) -> float:
    """1 - (mean of the layer's rows) / (median of the ice 2-6 mm either side), over the core's columns."""
    profile = image[:, int(sec.left_col):int(sec.right_col)].astype(np.float32).mean(axis=1)
    px_per_mm = sec.px_per_m / 1000
    inside = profile[int(np.ceil(rec.row_from)):int(np.floor(rec.row_to)) + 1]
    around = np.r_[profile[max(0, int(rec.row_from - 6 * px_per_mm)):int(rec.row_from - 2 * px_per_mm)],
                   profile[int(rec.row_to + 2 * px_per_mm):int(rec.row_to + 6 * px_per_mm)]]
    return 1 - float(inside.mean()) / float(np.median(around))


def test_wide_and_hard_styles_draw_faint_to_black_layers_and_record_their_darkness(tmp_path):
    for style in ("wide", "hard"):
        out = tmp_path / style
        write_core(out, n_sections=8, seed=4, config=SynthConfig(px_per_cm=30, style=style, first_bag=1211))
        truth = pd.read_csv(out / "truth.csv")
        layers = truth[truth["type"] == MELT_LAYER]
        assert len(layers) >= 8
        assert layers["darkness"].between(0.2, 1.0).all()
        assert truth.loc[truth["type"] != "melt_layer", "edge_mm"].notna().all()
        sections = pd.read_csv(out / "truth_sections.csv").set_index("image")
        contrast, darkness = [], []
        for rec in layers.itertuples():
            if rec.thickness_mm < 2:  # thin layers are blurred at 30 px/cm: their mean says little
                continue
            image = read_image(out / "images" / rec.image)
            image = image.astype(np.float32) / (257.0 if image.dtype == np.uint16 else 1.0)
            contrast.append(_layer_contrast(image, sections.loc[rec.image], rec))
            darkness.append(rec.darkness)
        contrast, darkness = np.array(contrast), np.array(darkness)
        assert (contrast > 0).all(), (style, contrast)  # every layer is darker than the ice around it
        assert np.corrcoef(contrast, darkness)[0, 1] > 0.5  # and as dark as truth.csv says, roughly
        if style == "hard":
            assert (layers["darkness"] < 0.4).mean() >= 0.3  # the hard set is mostly faint
            assert layers["edge_mm"].median() >= 0.4        # and diffuse


def test_wide_style_varies_the_camera_and_writes_8_and_16_bit_files(tmp_path):
    write_core(tmp_path, n_sections=12, seed=2, config=SynthConfig(px_per_cm=10, style="wide"))
    depths = {read_image(p).dtype for p in list_images(tmp_path / "images")}
    assert depths == {np.dtype(np.uint8), np.dtype(np.uint16)}
    manifest = read_manifest(tmp_path / "sections.tab").table.set_index("image")
    sections = pd.read_csv(tmp_path / "truth_sections.csv")
    for sec in sections.itertuples():  # 16-bit or chipped, the core's ends are still found
        bounds = find_core(read_image(tmp_path / "images" / sec.image))
        assert abs(bounds.top_row - sec.top_row) < 0.7 * sec.px_per_m / 1000
        assert abs(bounds.bottom_row - sec.bottom_row) < 0.7 * sec.px_per_m / 1000
        assert manifest.loc[sec.image, "top_m"] == pytest.approx(sec.top_m)


def test_an_unknown_style_is_refused_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "cli.py"), "synth", str(tmp_path / "x"), "--style", "pretty"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "wide, hard, classic" in result.stderr and "Traceback" not in result.stderr
