"""End refinement (`meltloc detect --refine-ends`): each melt layer's ends moved onto the layer's, after any head."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import invoke_cli

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "weights" / "end_refiner.pt"
MM_PER_UNIT = 0.4  # one unit of the networks' shift: 4 strip rows at 10 rows per mm


def constant_refiner(path: Path, top_units: float, bottom_units: float, nets: int = 1, cfg=None) -> Path:
    """An end refiner whose networks say "move the top end by ``top_units`` and the bottom end by ``bottom_units``"
    (x 0.4 mm, down positive) whatever they see: the last layer outputs its bias only. On an up-down flipped crop
    the same answer means the bottom end moves up by ``top_units`` and the top end up by ``bottom_units``; averaged
    with it, the top end moves by (top - bottom) / 2 units and the bottom end by minus that."""
    from meltloc.heads.ends import EndNet, save_end_refiner

    states = []
    for _ in range(nets):
        net = EndNet()
        with torch.no_grad():
            net.out[2].weight.zero_()
            net.out[2].bias.copy_(torch.tensor([0.0, top_units, bottom_units]))
        states.append(net.state_dict())
    save_end_refiner(path, states, cfg)
    return path


def layers_of(section, truth: pd.DataFrame):
    from meltloc.detections import Detection

    rows = truth[(truth["image"] == section.name) & (truth["type"] == "melt_layer")]
    return [Detection("melt_layer", 0.9, *map(float, section.scale.depth_to_row([r.depth_from_m, r.depth_to_m])))
            for r in rows.itertuples()]


@pytest.fixture(scope="module")
def sections(tiny_core):
    from meltloc.manifest import read_manifest
    from meltloc.section import load_section

    manifest = read_manifest(tiny_core / "sections.tab")
    truth = pd.read_csv(tiny_core / "truth.csv")
    return [load_section(p, manifest) for p in sorted((tiny_core / "images").glob("*.png"))], truth


def test_refine_moves_each_melt_layers_ends_by_the_networks_shift_in_mm_and_nothing_else(sections, tmp_path):
    from meltloc.detections import Detection
    from meltloc.heads.ends import load_end_refiner

    section = sections[0][0]
    mm = section.scale.px_per_m / 1000  # image rows per mm
    # "top down 1 unit, bottom down 0.5": with the flipped crops' answers, 0.25 units (0.1 mm) inwards each side
    refiner = load_end_refiner(constant_refiner(tmp_path / "r.pt", 1.0, 0.5))
    layer = Detection("melt_layer", 0.8, 1000.0, 1000.0 + 3 * mm)
    lens = Detection("melt_lens", 0.7, 2000.0, 2000.0 + 3 * mm)
    out = refiner.refine(section, [layer, lens])
    assert [d.type for d in out] == ["melt_layer", "melt_lens"]
    assert [d.score for d in out] == [0.8, 0.7]
    assert out[0].row_from == pytest.approx(layer.row_from + 0.25 * MM_PER_UNIT * mm, abs=1e-3 * mm)
    assert out[0].row_to == pytest.approx(layer.row_to - 0.25 * MM_PER_UNIT * mm, abs=1e-3 * mm)
    assert out[1] == lens
    assert refiner.refine(section, [lens]) == [lens]
    assert refiner.refine(section, []) == []
    # 2 mm inwards each side: a 1 mm layer would be reversed, it keeps its ends
    thin = Detection("melt_layer", 0.6, 2500.0, 2500.0 + 1 * mm)
    assert load_end_refiner(constant_refiner(tmp_path / "s.pt", 5.0, -5.0)).refine(section, [thin]) == [thin]
    # 0.4 mm inwards each side: it would be 0.2 mm thick, under 0.3 mm: it keeps its ends too
    assert load_end_refiner(constant_refiner(tmp_path / "t.pt", 1.0, -1.0)).refine(section, [thin]) == [thin]
    # while a 1.6 mm layer becomes 0.8 mm
    wide = Detection("melt_layer", 0.6, 2500.0, 2500.0 + 1.6 * mm)
    (moved,) = load_end_refiner(constant_refiner(tmp_path / "u.pt", 1.0, -1.0)).refine(section, [wide])
    assert (moved.row_to - moved.row_from) / mm == pytest.approx(0.8, abs=1e-3)


def test_ends_moved_past_the_core_end_are_clipped_and_a_layer_never_vanishes(sections):
    from meltloc.detections import Detection, to_depths
    from meltloc.heads.ends import move_ends

    section = sections[0][0]
    mm = section.scale.px_per_m / 1000
    bottom = section.bounds.bottom_row
    layer = Detection("melt_layer", 0.9, bottom - 1.5 * mm, bottom - 0.2 * mm)
    # moved 0.7 mm down: its bottom end is clipped to the core's, 0.8 mm remain
    moved = move_ends(section, [layer], {0: (layer.row_from + 0.7 * mm, layer.row_to + 0.7 * mm)})
    assert moved[0].row_to == bottom and moved[0].row_from == pytest.approx(bottom - 0.8 * mm)
    # moved 1.4 mm down: 0.1 mm would be left inside the core, so the layer keeps its ends and is written
    kept = move_ends(section, [layer], {0: (layer.row_from + 1.4 * mm, layer.row_to + 1.4 * mm)})
    assert kept == [layer]
    assert len(to_depths(section, kept)) == 1


def test_the_shipped_end_refiner_moves_misplaced_ends_onto_the_layers(sections):
    """Every layer of the tiny core, its ends put 0.5 mm off (up or down at random): the shipped networks bring them
    back nearer the drawn layer's (measured: 0.24 mm on average, every layer nearer)."""
    from dataclasses import replace

    from meltloc.heads.ends import load_end_refiner

    refiner = load_end_refiner(SHIPPED)
    assert len(refiner.nets) == 2
    rng = np.random.default_rng(0)
    before, after = [], []
    for section in sections[0]:
        mm = section.scale.px_per_m / 1000
        true = layers_of(section, sections[1])
        off = [replace(d, row_from=d.row_from + rng.choice([-0.5, 0.5]) * mm,
                       row_to=d.row_to + rng.choice([-0.5, 0.5]) * mm) for d in true]
        moved = refiner.refine(section, off)
        assert len(moved) == len(off)  # no layer lost or added
        for t, o, m in zip(true, off, moved):
            before.append((abs(o.row_from - t.row_from) + abs(o.row_to - t.row_to)) / 2 / mm)
            after.append((abs(m.row_from - t.row_from) + abs(m.row_to - t.row_to)) / 2 / mm)
    assert len(before) >= 8 and np.allclose(before, 0.5)
    assert np.mean(after) < 0.35
    assert np.mean(np.array(after) < np.array(before)) >= 0.75


def test_detect_refine_ends_writes_consistent_rows_with_the_ends_moved(tiny_core, tmp_path):
    images, sections_tab = tiny_core / "images", tiny_core / "sections.tab"
    refiner = constant_refiner(tmp_path / "r.pt", 1.0, -1.0, nets=2)
    plain, moved = tmp_path / "plain.csv", tmp_path / "moved.csv"
    for out, extra in ((plain, []), (moved, ["--end-refiner", refiner])):
        result = invoke_cli("detect", images, "--sections", sections_tab, "--out", out, "-q", *extra)
        assert result.returncode == 0, result.stderr
    a, b = pd.read_csv(plain), pd.read_csv(moved)
    assert len(a) == len(b) and (a["type"] == "melt_layer").sum() >= 3
    assert list(a["score"]) == list(b["score"]) and list(a["type"]) == list(b["type"])
    thick = (a["type"] == "melt_layer") & (a["thickness_mm"] >= 2 * MM_PER_UNIT + 0.3 + 1e-6)
    assert thick.any()
    np.testing.assert_allclose(b.loc[thick, "depth_from_m"] - a.loc[thick, "depth_from_m"], MM_PER_UNIT / 1000,
                               atol=1e-7)
    np.testing.assert_allclose(a.loc[thick, "depth_to_m"] - b.loc[thick, "depth_to_m"], MM_PER_UNIT / 1000, atol=1e-7)
    # every column follows the ends: thickness, and the image rows at the image's rows per meter
    np.testing.assert_allclose(b["thickness_mm"], (b["depth_to_m"] - b["depth_from_m"]) * 1000, atol=1e-3)
    px_per_mm = (a["row_to"] - a["row_from"]) / a["thickness_mm"]
    np.testing.assert_allclose((b["row_to"] - b["row_from"]) / b["thickness_mm"], px_per_mm, rtol=1e-3)
    assert (b["thickness_mm"] >= 0.3).all()
    pd.testing.assert_frame_equal(a[~thick], b[~thick])  # lenses, and layers too thin to move, as detected


def test_detect_refine_ends_in_worker_processes_writes_what_one_process_writes(tiny_core, tmp_path):
    from meltloc.api import detect_images

    one, two = tmp_path / "one.csv", tmp_path / "two.csv"
    for out, workers in ((one, 1), (two, 2)):
        summary = detect_images([tiny_core / "images"], out, sections=tiny_core / "sections.tab", workers=workers,
                                refine_ends=True, show_progress=False)
        assert summary.workers == workers
    assert one.read_bytes() == two.read_bytes()
    plain = tmp_path / "plain.csv"
    detect_images([tiny_core / "images"], plain, sections=tiny_core / "sections.tab", show_progress=False)
    assert plain.read_bytes() != one.read_bytes()  # the shipped networks did move some end


def test_resuming_a_refined_run_without_refinement_is_refused(tiny_core, tmp_path):
    from meltloc.detect import _difference, run_identity
    from meltloc.heads.ends import EndRefiner, load_end_refiner

    images = sorted((tiny_core / "images").glob("*.png"))

    def identity(refiner):
        return run_identity([tiny_core / "images"], images, SHIPPED.with_name("regression.pt"), None, None, None,
                            end_refiner_sha256=None if refiner is None else refiner.sha256)

    plain = identity(None)
    refined = identity(load_end_refiner(SHIPPED))
    other = identity(load_end_refiner(constant_refiner(tmp_path / "r.pt", 1.0, -1.0)))
    in_memory = identity(EndRefiner(torch.load(tmp_path / "r.pt", weights_only=True)))  # no file to hash
    for before, now in ((refined, plain), (plain, refined), (refined, other), (plain, in_memory)):
        assert "--refine-ends" in _difference(before, now)
    assert _difference(refined, identity(load_end_refiner(SHIPPED))) is None
    assert _difference(in_memory, identity(EndRefiner(torch.load(tmp_path / "r.pt", weights_only=True)))) is None


def _bad_config(tmp: Path) -> Path:
    from meltloc.heads.ends import EndRefinerConfig

    return constant_refiner(tmp / "bad.pt", 1.0, -1.0, cfg=EndRefinerConfig(crop_rows="x"))


@pytest.mark.parametrize("make, words", [
    (lambda tmp: REPO / "weights" / "regression.pt", ["regression", "not an end refiner"]),
    (lambda tmp: (tmp / "junk.pt").write_bytes(b"not a checkpoint") and tmp / "junk.pt", ["junk.pt", "readable"]),
    (lambda tmp: tmp / "missing.pt", ["missing.pt", "end refiner file not found"]),
    (_bad_config, ["bad.pt", "crop_rows"]),
], ids=["a head's checkpoint", "junk", "missing", "bad setting"])
def test_a_wrong_end_refiner_file_is_one_line_before_any_work(tiny_core, tmp_path, make, words):
    out = tmp_path / "d.csv"
    result = invoke_cli("detect", tiny_core / "images", "--end-refiner", make(tmp_path), "--out", out, "-q")
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr, result.stderr
    assert all(w in errors[0] for w in words), errors[0]
    assert not out.exists()


def test_the_end_refiner_given_as_a_heads_weights_says_where_it_goes(tiny_core, tmp_path):
    result = invoke_cli("detect", tiny_core / "images", "--weights", SHIPPED, "--out", tmp_path / "d.csv", "-q")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert result.returncode != 0 and len(errors) == 1, result.stderr
    assert "end refiner" in errors[0] and "--end-refiner" in errors[0]


def test_the_python_api_takes_yes_no_or_a_file_for_refine_ends(tmp_path):
    import meltloc
    from meltloc.errors import MeltlocError

    assert meltloc.load_detector(device="cpu", refine_ends=np.bool_(True)).end_refiner.path == SHIPPED
    assert meltloc.load_detector(device="cpu", refine_ends=0).end_refiner is None
    mine = constant_refiner(tmp_path / "r.pt", 1.0, -1.0)
    assert meltloc.load_detector(device="cpu", refine_ends=str(mine)).end_refiner.path == mine
    for bad in ("", [SHIPPED], 2):
        with pytest.raises(MeltlocError, match="refine_ends"):
            meltloc.load_detector(device="cpu", refine_ends=bad)


def test_the_python_api_never_writes_onto_the_end_refiner_it_uses(tiny_core, tmp_path, monkeypatch):
    import shutil

    import meltloc.shipped
    from meltloc.api import detect_images
    from meltloc.errors import OutputError

    # stands in for the shipped file, which refine_ends=True takes; named .csv so that only its being an input
    # can refuse it as the output
    copy = tmp_path / "end_refiner.csv"
    shutil.copy(SHIPPED, copy)
    monkeypatch.setattr(meltloc.shipped, "END_REFINER_WEIGHTS", copy)
    with pytest.raises(OutputError):
        detect_images([tiny_core / "images"], copy, sections=tiny_core / "sections.tab", refine_ends=True,
                      overwrite=True, show_progress=False)
    assert copy.read_bytes() == SHIPPED.read_bytes()


def test_detect_help_names_the_end_refinement():
    result = invoke_cli("detect", "--help")
    assert "--refine-ends" in result.stdout and "--end-refiner" in result.stdout


def test_the_python_api_refines_as_detect_does(tiny_core, tmp_path):
    import meltloc

    out = tmp_path / "d.csv"
    result = invoke_cli("detect", tiny_core / "images", "--sections", tiny_core / "sections.tab", "--refine-ends",
                        "--out", out, "-q")
    assert result.returncode == 0, result.stderr
    written = pd.read_csv(out)
    localizer = meltloc.load_detector(refine_ends=True, device="cpu")
    assert "end_refiner" in repr(localizer)
    for path in sorted((tiny_core / "images").glob("*.png")):
        table = localizer.detect(meltloc.read_section(path, sections=tiny_core / "sections.tab"))
        mine = written[written["image"] == path.name].reset_index(drop=True)
        assert len(table) == len(mine)
        np.testing.assert_allclose(table[["depth_from_m", "depth_to_m", "row_from", "row_to"]].to_numpy(float),
                                   mine[["depth_from_m", "depth_to_m", "row_from", "row_to"]].to_numpy(float),
                                   rtol=0, atol=1e-4)


def test_compare_refine_ends_adds_each_model_with_its_ends_moved(tiny_trained, tiny_core, tmp_path):
    conv, _ = tiny_trained
    report = tmp_path / "report"
    result = invoke_cli("compare", "--data", conv, "--weights", REPO / "weights" / "regression.pt", "--images",
                        tiny_core / "images", "--sections", tiny_core / "sections.tab", "--truth",
                        tiny_core / "truth.csv", "--out", report, "-q", "--end-refiner",
                        constant_refiner(tmp_path / "r.pt", 1.0, -1.0))
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(report / "compare.csv").set_index("head")
    assert list(table.index) == ["regression", "regression + ends"]
    plain = pd.read_csv(report / "detections" / "regression.csv")
    moved = pd.read_csv(next(p for p in (report / "detections").glob("*.csv") if p.name != "regression.csv"))
    assert len(plain) == len(moved) and (plain["type"] == "melt_layer").any()
    thick = (plain["type"] == "melt_layer") & (plain["thickness_mm"] >= 2 * MM_PER_UNIT + 0.3 + 1e-6)
    np.testing.assert_allclose(moved.loc[thick, "thickness_mm"], plain.loc[thick, "thickness_mm"] - 2 * MM_PER_UNIT,
                               atol=1e-3)
    # the same layers found; ends pulled 0.4 mm inwards on each side move them off the drawn ones
    assert table.loc["regression + ends", "n_pred"] == table.loc["regression", "n_pred"]
    assert table.loc["regression + ends", "boundary_mm"] > table.loc["regression", "boundary_mm"]
