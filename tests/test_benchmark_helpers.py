"""Benchmark helpers a user runs to reproduce the README's figures (``benchmarks/``): what they promise."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def helper(name: str):
    """A module of benchmarks/ as its scripts import it (their folder on sys.path)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)


def run_helper(script: str, *args):
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *map(str, args)], capture_output=True,
                          text=True, timeout=600)


def test_a_folder_built_aside_leaves_nothing_when_the_build_fails(tmp_path):
    built_aside = helper("folder_aside").built_aside
    out = tmp_path / "new" / "deeper" / "out"
    with pytest.raises(RuntimeError):
        with built_aside(out) as partial:
            (partial / "half.csv").write_text("a,b\n")
            raise RuntimeError("the build failed")
    assert list(tmp_path.iterdir()) == []  # no OUT, no hidden folder, not the folders made on the way


def test_a_folder_built_aside_never_replaces_one_made_meanwhile(tmp_path):
    aside = helper("folder_aside")
    out = tmp_path / "out"
    with pytest.raises(FileExistsError, match="nothing is overwritten"):
        with aside.built_aside(out) as partial:
            (partial / "result.csv").write_text("a\n")
            out.mkdir()  # another run made it after the caller's check
    assert list(out.iterdir()) == [] and [p.name for p in tmp_path.iterdir()] == ["out"]

    # the last step itself: an empty folder that appears between any check and the rename, which a plain rename
    # would replace silently
    built, theirs = tmp_path / ".built", tmp_path / "theirs"
    built.mkdir()
    (built / "result.csv").write_text("a\n")
    theirs.mkdir()
    with pytest.raises(FileExistsError, match="nothing is overwritten"):
        aside.rename_no_replace(built, theirs)
    assert (built / "result.csv").is_file() and list(theirs.iterdir()) == []
    aside.rename_no_replace(built, tmp_path / "free")
    assert (tmp_path / "free" / "result.csv").is_file() and not built.exists()


def test_rank_levels_barely_move_under_gain_or_gamma_and_blur_runs_along_depth_only():
    rl = helper("yolo_rank_levels")
    rng = np.random.default_rng(0)
    rows, px_per_mm = 3000, 10.0
    ice = rng.uniform(90, 230, (rows, 64)) * np.linspace(1.0, 0.7, rows)[:, None]  # bubbles, light falling off
    ice[1500:1520] *= 0.45  # a melt layer 2 mm thick, 55 % darker
    strip = np.clip(np.rint(ice), 0, 255).astype(np.uint8)
    levelled = rl.rank_levels(strip, px_per_mm).astype(float)
    for changed in (strip * 0.6, 255.0 * (strip / 255.0) ** 1.8):  # a gain; a darker gamma
        changed = np.clip(np.rint(changed), 0, 255).astype(np.uint8)
        assert np.abs(changed.astype(float) - strip).mean() > 20
        assert np.abs(rl.rank_levels(changed, px_per_mm).astype(float) - levelled).mean() < 3
    assert levelled[1500:1520].mean() < levelled[1000:1400].mean() - 60  # the layer stays dark

    line = np.zeros((41, 8), np.uint8)
    line[20] = 200
    blurred = rl.blurred_along_depth(line, 2.0)
    assert (blurred == blurred[:, :1]).all()  # nothing spreads across the core
    assert blurred[20, 0] == 40 and blurred[18, 0] == 24 and blurred[:14].max() == 0  # a Gaussian of 2 rows


def test_blur_share_swaps_a_training_tile_for_its_blurred_variant_resized_as_the_tile_read(tmp_path):
    rl = helper("yolo_rank_levels")
    from meltloc.imageio import write_image

    tile = np.full((64, 8), 100, np.uint8)
    for sigma, grey in ((0.1, 10), (0.3, 30)):
        (tmp_path / "yolo" / "blur" / f"{sigma:g}mm" / "train").mkdir(parents=True)
        write_image(tmp_path / "yolo" / "blur" / f"{sigma:g}mm" / "train" / "s_000000.png", np.full_like(tile, grey))
    seen = []

    def draw_augment(self, labels):  # what DrawAugment receives after the swap
        seen.append(labels["img"].copy())
        return labels

    def labels(img):
        return {"im_file": str(tmp_path / "run" / "tiles" / "images" / "train" / "s_000000.png"), "img": img,
                "ori_shape": (64, 8), "resized_shape": img.shape[:2]}

    always = rl.with_blurred_tiles(draw_augment, tmp_path, [0.1, 0.3], 1.0, seed=0)
    for _ in range(20):
        always(None, labels(np.repeat(tile[..., None], 3, axis=2)))
    assert all(img.shape == (64, 8, 3) and len(np.unique(img)) == 1 for img in seen)
    assert {int(img[0, 0, 0]) for img in seen} == {10, 30}  # both sigmas drawn
    always(None, labels(np.full((32, 4, 3), 100, np.uint8)))  # ultralytics had halved the tile
    assert seen[-1].shape == (32, 4, 3) and int(np.ptp(seen[-1])) == 0 and int(seen[-1][0, 0, 0]) in (10, 30)

    seen.clear()
    never = rl.with_blurred_tiles(draw_augment, tmp_path, [0.1, 0.3], 0.0, seed=0)
    never(None, labels(np.repeat(tile[..., None], 3, axis=2)))
    assert (seen[0] == 100).all()


def test_a_rank_levelled_copy_cuts_every_tile_from_its_levelled_strip_and_blurs_train_tiles_only(tiny_trained,
                                                                                                 tmp_path):
    conv, _ = tiny_trained
    rl = helper("yolo_rank_levels")
    from meltloc.imageio import read_image

    before = {p.relative_to(conv): p.read_bytes() for p in conv.rglob("*") if p.is_file()}
    inside = run_helper("yolo_rank_levels.py", "copy", conv, conv / "levelled")
    assert inside.returncode == 1 and inside.stderr.strip().splitlines() == [
        "error: DST cannot lie inside SRC (nothing is written into an input)"]
    result = run_helper("yolo_rank_levels.py", "copy", conv, tmp_path / "levelled", "--blur-mm", "0.1,0.3")
    assert result.returncode == 0, result.stderr
    after = {p.relative_to(conv): p.read_bytes() for p in conv.rglob("*") if p.is_file()}
    assert after == before  # the input is untouched

    copy = tmp_path / "levelled"
    tiles = pd.read_csv(copy / "yolo" / "tiles.csv")
    table = pd.read_csv(conv / "strips.csv")
    px_per_mm = {Path(r.image).stem: float(r.px_per_mm) for r in table.itertuples()}
    for t in tiles.itertuples():
        stem = Path(t.image).stem
        raw = read_image(conv / "strips" / f"{stem}.png")
        rows = slice(int(t.start), int(t.start) + int(t.rows))
        assert np.array_equal(read_image(copy / "yolo" / "images" / t.tile), rl.rank_levels(raw, px_per_mm[stem])[rows])
        for sigma in (0.1, 0.3):
            variant = copy / "yolo" / "blur" / f"{sigma:g}mm" / t.tile
            assert variant.is_file() == (t.split == "train")
            if variant.is_file():
                want = rl.rank_levels(rl.blurred_along_depth(raw, sigma * px_per_mm[stem]), px_per_mm[stem])[rows]
                assert np.array_equal(read_image(variant), want)
    assert (tiles["split"] == "train").any()
    again = run_helper("yolo_rank_levels.py", "copy", conv, copy)
    assert again.returncode == 1 and "exists; nothing is overwritten" in again.stderr


def test_blurred_drawing_blurs_what_is_drawn_by_the_swapped_tiles_sigma_and_nothing_else(tmp_path):
    rl = helper("yolo_rank_levels")
    from meltloc.imageio import write_image

    rows_per_mm = 6.4  # as DrawAugment passes it for a resized tile: not the strips' 10
    (tmp_path / "yolo" / "blur" / "0.3mm" / "train").mkdir(parents=True)
    variant = np.full((200, 6), 200, np.uint8)
    variant[40] = 20  # the tile's own feature, blurred already in the variant: not to be blurred again
    write_image(tmp_path / "yolo" / "blur" / "0.3mm" / "train" / "s_000000.png", variant)

    def draw_line(crop, iv, cls, ign, rng, rows_per_mm, *rest):  # draws as meltloc's draw_layers: multiplying
        out = np.array(crop, np.float32)
        out[120, :3] *= 0.1  # across half the core
        return out, np.concatenate([iv.reshape(-1, 2), [[120.0, 121.0]]]), np.concatenate([cls, [0]])

    sigma = {"mm": None}
    drawn = rl.blurred_drawing(draw_line, 5, sigma)
    outputs = []

    def draw_augment(self, labels):  # DrawAugment's call: the drawing on the tile as swapped
        outputs.append(drawn(labels["img"][..., 0].astype(np.float32), np.zeros((0, 2)), np.zeros(0, np.int64),
                             np.zeros((0, 2)), None, rows_per_mm))
        assert sigma["mm"] == (0.3 if int(labels["img"][0, 0, 0]) == 200 else None)  # set while drawing only
        return labels

    def labels(img):
        return {"im_file": str(tmp_path / "run" / "tiles" / "images" / "train" / "s_000000.png"), "img": img,
                "ori_shape": (200, 6), "resized_shape": img.shape[:2]}

    for share in (1.0, 0.0):
        rl.with_blurred_tiles(draw_augment, tmp_path, [0.3], share, seed=0, drawn_sigma=sigma)(
            None, labels(np.full((200, 6, 3), 150, np.uint8)))
        assert sigma["mm"] is None
    (swapped, iv_swapped, _), (kept, iv_kept, _) = outputs
    np.testing.assert_array_equal(iv_swapped, [[120.0, 121.0]])  # a blurred layer keeps its true interval
    np.testing.assert_array_equal(iv_kept, [[120.0, 121.0]])
    assert swapped[39:42, 0] == pytest.approx([200, 20, 200], abs=1e-3)  # the tile's own content left as it was
    darkening = 1.0 - swapped[:, 0] / 200.0
    rows = np.arange(200)
    spread_rows = np.sqrt((darkening * (rows - 120) ** 2)[80:160].sum() / darkening[80:160].sum())
    assert spread_rows == pytest.approx(0.3 * rows_per_mm, rel=0.05)  # blurred by the tile's sigma, along depth
    assert darkening[80:160].sum() == pytest.approx(0.9, rel=0.02)  # the same darkening, spread
    assert swapped[80:160, 3:] == pytest.approx(200.0, abs=1e-3)  # not across the core
    assert kept[119:122, 0] == pytest.approx([150, 15, 150])  # a tile not swapped: drawn sharp


def test_training_with_blur_drawn_draws_breaks_blurred_on_swapped_tiles_only(tmp_path, monkeypatch):
    """The wiring of ``train --blur-drawn``: meltloc's own DrawAugment, as patched by the helper's train, draws its
    breaks blurred by the swapped tile's sigma (and sharp without the option)."""
    rl = helper("yolo_rank_levels")
    import meltloc.heads.yolo.look as look
    import meltloc.heads.yolo.train as yolo_train
    from meltloc.imageio import write_image
    from ultralytics.utils.instance import Instances

    for name in ("draw_layers", "draw_breaks"):  # the helper's train patches these: undone after the test
        monkeypatch.setattr(look, name, getattr(look, name))
    monkeypatch.setattr(look.DrawAugment, "__call__", look.DrawAugment.__call__)
    data = tmp_path / "levelled"
    (data / "yolo" / "blur" / "0.8mm" / "train").mkdir(parents=True)
    write_image(data / "yolo" / "blur" / "0.8mm" / "train" / "s_000000.png", np.full((400, 16), 200, np.uint8))
    (data / rl.MARKER).write_text('{"levels": "rank", "blur_mm": [0.8]}')
    darkest = []

    class Stop(Exception):
        pass

    def stub_training(data_dir, out, settings):  # one tile through DrawAugment as training's first step
        augment = look.DrawAugment(6.4, 6.0, layers=0.0, breaks=1.0, seed=0)
        for seed in range(5):
            augment.rng = np.random.default_rng(seed)
            labels = {"im_file": str(data / "yolo" / "images" / "train" / "s_000000.png"),
                      "img": np.full((400, 16, 3), 200, np.uint8), "ori_shape": (400, 16), "resized_shape": (400, 16),
                      "instances": Instances(np.zeros((0, 4), np.float32), segments=None, keypoints=None,
                                             bbox_format="xywh", normalized=True), "cls": np.zeros((0, 1), np.float32)}
            darkest.append(int(augment(labels)["img"].min()))
        raise Stop

    monkeypatch.setattr(yolo_train, "train", stub_training)
    unpatched = look.draw_layers, look.draw_breaks, look.DrawAugment.__call__
    for blur_drawn in (True, False):
        with pytest.raises(Stop):
            rl.train(data, tmp_path / "y.pt", tmp_path / "runs", 0, 1, blur_share=1.0, blur_drawn=blur_drawn)
        look.draw_layers, look.draw_breaks, look.DrawAugment.__call__ = unpatched  # as a new process has them
    blurred, sharp = darkest[:5], darkest[5:]
    # a break is 0.1-0.5 mm thick and 80-100 % dark: drawn sharp at 6.4 rows per mm at least one row falls below
    # half the ice; blurred by 0.8 mm (5.1 rows) its darkening spreads to under a third
    assert max(sharp) < 110 and min(blurred) > 130
