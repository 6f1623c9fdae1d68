"""meltloc from Python: the README's example runs, and the API gives the rows 'meltloc detect' writes."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import meltloc
from meltloc.errors import MeltlocError

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "sample"


def readme_example() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## From Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    code = readme_example().replace("/tmp/meltloc-api.csv", str(tmp_path / "api.csv"))
    monkeypatch.chdir(REPO)
    exec(compile(code, "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "3 images," in printed
    written = pd.read_csv(tmp_path / "api.csv")
    assert set(written["image"]) <= {"227.png", "230.png", "233.png"} and len(written) > 0


def test_detect_returns_the_rows_meltloc_detect_writes_in_meters(tmp_path):
    detector = meltloc.load_detector()
    assert detector.head == "regression"
    section = meltloc.read_section(SAMPLE / "images" / "227.png", sections=SAMPLE / "sections.tab")
    layers = detector.detect(section)
    summary = meltloc.detect_images([SAMPLE / "images" / "227.png"], out=tmp_path / "d.csv",
                                    sections=SAMPLE / "sections.tab")
    written = pd.read_csv(tmp_path / "d.csv")
    assert len(layers) == summary.detections == len(written) > 0
    np.testing.assert_allclose(layers["depth_from_m"], written["depth_from_m"], atol=1e-6)
    np.testing.assert_allclose(layers["depth_to_m"], written["depth_to_m"], atol=1e-6)
    # depths lie inside the section, in meters
    top, bottom = section.scale.top_m, section.scale.bottom_m
    assert ((layers["depth_from_m"] >= top) & (layers["depth_to_m"] <= bottom)).all()
    np.testing.assert_allclose(layers["thickness_mm"], (layers["depth_to_m"] - layers["depth_from_m"]) * 1000)
    from meltloc.errors import OutputError

    with pytest.raises(OutputError):  # an existing output is replaced only when asked
        meltloc.detect_images([SAMPLE / "images" / "227.png"], out=tmp_path / "d.csv", sections=SAMPLE / "sections.tab")
    again = meltloc.detect_images([SAMPLE / "images" / "227.png"], out=tmp_path / "d.csv",
                                  sections=SAMPLE / "sections.tab", overwrite=True)
    assert again.detections == len(layers)


def test_a_section_from_an_array_with_its_depths_matches_the_file(tmp_path):
    detector = meltloc.load_detector()
    from_file = meltloc.read_section(SAMPLE / "images" / "230.png", sections=SAMPLE / "sections.tab")
    from_array = meltloc.section_from_array(from_file.image, from_file.scale.top_m, from_file.scale.bottom_m,
                                            name="230.png")
    a, b = detector.detect(from_file), detector.detect(from_array)
    pd.testing.assert_frame_equal(a, b)
    no_depths = detector.detect(meltloc.section_from_array(from_file.image))
    assert len(no_depths) == len(a) and no_depths["depth_from_m"].isna().all()


def test_bad_api_input_is_one_precise_error():
    image = np.zeros((10, 10, 2, 2), np.uint8)
    with pytest.raises(MeltlocError, match="2-D"):
        meltloc.section_from_array(image)
    with pytest.raises(MeltlocError, match="both top_m and bottom_m"):
        meltloc.section_from_array(np.zeros((100, 50), np.uint8), top_m=1.0)
    with pytest.raises(MeltlocError, match="not in the manifest"):
        meltloc.read_section(Path("elsewhere/999.png"), sections=SAMPLE / "sections.tab")
