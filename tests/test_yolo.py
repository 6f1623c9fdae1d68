"""The YOLO head: thin boxes survive ultralytics' augmentation, training and detection run offline.

Tiny data: the session's synthetic core converted at 2 strip rows per mm
into 128-row tiles, one or two epochs at imgsz 128.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest

from meltloc.errors import CheckpointError, DatasetError, MeltlocError

TILE_ROWS = 128


@pytest.fixture(scope="module")
def yolo_data(tiny_core, tmp_path_factory):
    """The tiny core converted: 2 train sections, 1 val section, 128-row tiles at 2 rows per mm."""
    from meltloc.convert import ConvertConfig, convert
    from meltloc.formats_yolo import TileConfig

    out = tmp_path_factory.mktemp("yolo_conv")
    config = ConvertConfig(px_per_mm=2.0, val=0.34, test=0.0, tiles=TileConfig(rows=TILE_ROWS))
    convert(tiny_core / "images", tiny_core / "sections.tab", tiny_core / "features.csv", out, config,
            show_progress=False)
    return out


def _thin_box_dataset(root: Path, n_tiles: int = 6, box_rows: float = 6.0, rows: int = 256, width: int = 64) -> Path:
    """A hand-made convert-like YOLO dataset: tiles with dark full-width bands ``box_rows`` high, away from the edges."""
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / "yolo" / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "yolo" / "labels" / split).mkdir(parents=True, exist_ok=True)
    for i in range(n_tiles):
        tile = rng.integers(120, 200, size=(rows, width), dtype=np.uint8)
        lines = []
        for centre in (rows * 0.35, rows * 0.6):
            top = int(centre - box_rows / 2)
            tile[top:top + int(box_rows)] = 10
            lines.append(f"0 0.5 {centre / rows:.6f} 1 {box_rows / rows:.6f}")
        cv2.imwrite(str(root / "yolo" / "images" / "train" / f"t_{i:03d}.png"), tile)
        (root / "yolo" / "labels" / "train" / f"t_{i:03d}.txt").write_text("\n".join(lines) + "\n")
    (root / "strips.csv").write_text(
        "image,split,row0,image_rows_per_row,px_per_mm,width,top_m,bottom_m,top_row,bottom_row\n"
        f"a.png,train,0,1,10,{width},0,1,0,{rows}\n")
    return root


def test_thin_boxes_survive_the_training_augmentation(tmp_path):
    """Every 6-row box (0.6 mm at 10 px/mm) comes out of ultralytics' own dataset pipeline, pass after pass."""
    from meltloc.heads.yolo.config import YoloSettings
    from meltloc.heads.yolo.data import count_kept_labels

    data = _thin_box_dataset(tmp_path)
    n_in, n_out = count_kept_labels(data, YoloSettings(batch=4), passes=4)
    assert n_in == 4 * 6 * 2
    assert n_out == n_in


def test_ultralytics_default_scaling_would_lose_thin_boxes(tmp_path):
    """The reason for scale=0: with a strong scale jitter ultralytics drops thin boxes (the check itself works)."""
    from meltloc.heads.yolo.config import YoloSettings
    from meltloc.heads.yolo.data import count_kept_labels

    import random

    random.seed(0)  # ultralytics draws its augmentation from `random` and numpy
    np.random.seed(0)
    data = _thin_box_dataset(tmp_path, box_rows=4.0)
    n_in, n_out = count_kept_labels(data, YoloSettings(batch=4, scale=0.9), passes=16)
    assert n_out < n_in


def test_convert_dataset_keeps_every_box_without_translation(yolo_data):
    """On a real convert output, only translation (cutting boxes at the tile edge) may remove a box."""
    from meltloc.heads.yolo.config import YoloSettings
    from meltloc.heads.yolo.data import count_kept_labels

    n_in, n_out = count_kept_labels(yolo_data, YoloSettings(imgsz=TILE_ROWS, translate=0.0))
    assert n_in > 0 and n_out == n_in


def test_dataset_config_reads_tiling_and_refuses_too_small_images(yolo_data):
    from meltloc.heads.yolo.data import dataset_config

    cfg = dataset_config(yolo_data)
    assert (cfg.tile_rows, cfg.tile_overlap, cfg.imgsz) == (TILE_ROWS, 0.25, TILE_ROWS)
    assert cfg.input_hw == (TILE_ROWS, 64) and cfg.px_per_mm == 2.0
    with pytest.raises(DatasetError, match="2 px or less"):
        dataset_config(yolo_data, imgsz=32)  # a 6-row box at 1/4 scale is 1.5 px


def test_bad_input_raises_meltloc_errors(tmp_path, yolo_data):
    from meltloc.heads.yolo import YoloHead

    with pytest.raises(DatasetError):
        YoloHead.train(tmp_path / "nothing", tmp_path / "y.pt")
    with pytest.raises(MeltlocError, match="no option"):
        YoloHead.train(yolo_data, tmp_path / "y.pt", steps_per_epoch=3)
    with pytest.raises(CheckpointError, match="never downloads"):
        YoloHead.train(yolo_data, tmp_path / "y.pt", model="yolov8n.pt", imgsz=TILE_ROWS)
    with pytest.raises(CheckpointError):
        YoloHead({"head": "yolo", "config": {}, "model": {}})


CHILD = textwrap.dedent("""
    import json, socket, sys
    attempts = []

    def refuse(kind):
        def blocked(*args, **kwargs):
            attempts.append(f"{kind} {args[1:] if kind == 'connect' else args[:1]}")
            raise OSError(f"network disabled in this test ({kind})")
        return blocked

    socket.socket.connect = refuse("connect")
    socket.socket.connect_ex = refuse("connect")
    socket.getaddrinfo = refuse("getaddrinfo")

    from typer.testing import CliRunner
    from meltloc.cli import app
    from meltloc.heads.yolo import YoloHead

    data, out, runs, images, sections, det = sys.argv[1:7]
    result = YoloHead.train(data, out, epochs=2, batch=8, imgsz=128, runs=runs)
    res = CliRunner().invoke(app, ["detect", images, "--sections", sections, "--weights", out, "--out", det,
                                   "--min-score", "0.001", "--quiet"])
    print(json.dumps({"attempts": attempts, "message": result["message"], "detect_exit": res.exit_code,
                      "detect_output": res.output[-2000:]}))
""")


def test_train_and_detect_never_touch_the_network(tiny_core, yolo_data, tmp_path):
    """A tiny training and a detection in a fresh process where every connection attempt fails and is recorded."""
    import pandas as pd
    import torch

    from meltloc.checkpoint import load_checkpoint

    out, runs, det = tmp_path / "yolo.pt", tmp_path / "my_runs", tmp_path / "det.csv"
    env = {k: v for k, v in os.environ.items() if k not in ("YOLO_OFFLINE", "YOLO_CONFIG_DIR")}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")  # the private ultralytics settings folder goes here
    proc = subprocess.run([sys.executable, "-c", CHILD, str(yolo_data), str(out), str(runs),
                           str(tiny_core / "images"), str(tiny_core / "sections.tab"), str(det)],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["attempts"] == []
    assert report["detect_exit"] == 0, report["detect_output"]

    # The run folder is where it was asked for; nothing lands in the working directory.
    assert (runs / "train" / "weights" / "best.pt").is_file()
    private = tmp_path / "cache" / "meltloc" / "Ultralytics"
    assert (private / "Arial.ttf").is_file()
    settings = json.loads((private / "settings.json").read_text())
    assert not settings["sync"] and not settings["mlflow"]
    assert not (tmp_path / "runs").exists()

    ck = load_checkpoint(out, expect_head="yolo")
    assert set(ck["model"]) == {"yaml", "state_dict"}  # plain data
    assert set(ck["train"]["libraries"]) == {"torch", "numpy", "opencv", "ultralytics"}
    import ultralytics

    assert ck["train"]["libraries"]["ultralytics"] == ultralytics.__version__
    assert ck["score_threshold"] in {round(0.05 * k, 2) for k in range(1, 20)}  # the val grid 0.05 ... 0.95
    torch.load(out, weights_only=True)
    cfg = ck["config"]
    assert cfg["px_per_mm"] == 2.0 and cfg["tile_rows"] == TILE_ROWS and cfg["input_hw"] == [TILE_ROWS, 64]
    assert cfg["classes"] == ["melt_layer", "melt_lens"]
    assert ck["train"]["epochs"] == 2 and ck["train"]["seconds"] > 0 and ck["train"]["scale"] == 0.0

    table = pd.read_csv(det)
    assert list(table.columns[:8]) == ["image", "depth_from_m", "depth_to_m", "thickness_mm", "type", "score",
                                       "row_from", "row_to"]
    status = pd.read_csv(det.with_name("det.status.csv"))
    assert sorted(status["image"]) == ["227.png", "230.png", "233.png"] and set(status["status"]) == {"processed"}
    assert status["detections"].sum() == len(table)  # two epochs from scratch find none yet, even at 0.001
    assert set(table["type"]) <= {"melt_layer", "melt_lens"}
    assert (table["row_to"] > table["row_from"]).all()


def test_detector_maps_tile_boxes_back_to_strip_rows(monkeypatch):
    """Boxes the network reports in tiles come back at the strip rows they cover: duplicates from overlapping
    tiles merge, and a box cut by an inner tile edge gives way to the whole one in the next tile."""
    import torch

    from meltloc.heads.yolo import infer as yolo
    from meltloc.heads.yolo.env import import_ultralytics

    import_ultralytics()
    cfg = yolo.YoloConfig(tile_rows=128, tile_overlap=0.25, imgsz=128, input_hw=(128, 64), width=64)
    strip = np.full((300, 64), 150, dtype=np.uint8)
    starts = yolo.tile_starts(300, 128, 0.25)
    assert starts == [0, 96, 172]
    # (tile start) -> boxes in tile rows (top, bottom, score, class)
    reported = {0: [(110, 116, 0.9, 0), (120, 128, 0.8, 0)],   # a layer, and one cut by the bottom edge
                96: [(14, 20, 0.85, 0), (24, 39, 0.7, 1)],     # the same layer, and the cut one whole (a lens)
                172: []}

    def fake_nms(x, conf_thres, iou_thres, agnostic, max_det, end2end):
        assert tuple(x.shape[1:]) == (3, 128, 64)
        return [torch.tensor([[0.0, a, 64.0, b, p, c] for a, b, p, c in reported[s]]).reshape(-1, 6)
                for s in starts]

    monkeypatch.setattr("ultralytics.utils.nms.non_max_suppression", fake_nms)
    found = yolo.detect_strip(lambda x: x, strip, cfg, 0.1)
    assert [(n, round(p, 2)) for n, p, _, _ in found] == [("melt_layer", 0.9), ("melt_lens", 0.7)]
    assert found[0][2:] == pytest.approx((110.0, 116.0))
    assert found[1][2:] == pytest.approx((120.0, 135.0))


def test_run_folder_defaults_beside_the_checkpoint_but_never_in_the_repository(tmp_path):
    from meltloc.heads.yolo.train import default_runs

    repo = Path(__file__).resolve().parents[1]
    assert default_runs(tmp_path / "yolo.pt") == tmp_path / "yolo.pt.runs"
    assert not default_runs(repo / "weights" / "yolo.pt").is_relative_to(repo)


def _tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in sorted(root.rglob("*"))}


def test_look_augmentation_changes_training_tiles_but_never_their_boxes(yolo_data, tmp_path, monkeypatch):
    """``YoloSettings(look=1)``: every training tile ultralytics builds gets the regression head's look change
    (another picture, still grey), its boxes untouched; the run records the setting for --resume; and training
    writes nothing into the convert output (ultralytics' label caches go to the run folder)."""
    from meltloc.checkpoint import load_checkpoint
    from meltloc.heads.yolo.config import YoloSettings
    from meltloc.heads.yolo.look import LookAugment
    from meltloc.heads.yolo.train import RUN_FILE, train

    seen = []
    change = LookAugment.__call__

    def spy(self, labels):
        before, boxes = labels["img"].copy(), labels["instances"].bboxes.copy()
        after = change(self, labels)
        seen.append((before, after["img"], boxes, after["instances"].bboxes.copy()))
        return after

    monkeypatch.setattr(LookAugment, "__call__", spy)
    before_tree = _tree(yolo_data)
    out, runs = tmp_path / "yolo.pt", tmp_path / "runs"
    train(yolo_data, out, YoloSettings(batch=8, epochs=1, imgsz=TILE_ROWS, look=1.0, runs=str(runs)))

    listed = (runs / "train" / "train.txt").read_text().split()
    assert len(seen) == len(listed) > 0  # every training tile of the epoch, none of the val tiles
    assert all(not np.array_equal(before, after) for before, after, _, _ in seen)
    assert all(after.dtype == np.uint8 and (after == after[..., :1]).all() for _, after, _, _ in seen)
    assert all(np.array_equal(b0, b1) for _, _, b0, b1 in seen)
    assert sum(len(b) for _, _, b, _ in seen) > 0
    assert load_checkpoint(out, expect_head="yolo")["train"]["look"] == 1.0
    assert json.loads((runs / "train" / RUN_FILE).read_text())["share"] == 1.0
    assert _tree(yolo_data) == before_tree
    assert list((runs / "train" / "tiles" / "labels").glob("*.cache"))


def test_drawn_in_layers_get_full_width_boxes_and_breaks_none(tmp_path):
    """``YoloSettings(insert_layers=..., insert_breaks=...)``: through ultralytics' own training pipeline (drawing
    first, then its translation, flips and box filter), tiles come out with extra full-width boxes of the
    melt-layer class, none thinner than convert's smallest box, each over a dark band; drawn breaks add no box;
    the tiles' own boxes all survive."""
    from meltloc.heads.yolo.config import YoloSettings
    from meltloc.heads.yolo.data import dataset_config, linked_tiles
    from meltloc.heads.yolo.env import import_ultralytics
    from meltloc.heads.yolo.look import DrawAugment

    import_ultralytics()
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_yolo_dataset

    from meltloc.formats_yolo import CLASSES
    from meltloc.heads.yolo.config import STRIDE, train_overrides

    data = _thin_box_dataset(tmp_path / "data", n_tiles=8, rows=640)
    settings = YoloSettings(batch=4)
    cfg = dataset_config(data, settings.imgsz)
    args = get_cfg(overrides={k: v for k, v in train_overrides(settings, cfg, Path("x"), Path("x")).items()
                              if k not in ("data", "project", "name")})
    tiles = linked_tiles(data, tmp_path / "tiles")

    def boxes_out(draw: DrawAugment) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        dataset = build_yolo_dataset(args, str(tiles / "images" / "train"), 4, {
            "names": dict(enumerate(CLASSES)), "nc": len(CLASSES), "channels": 3}, mode="train", rect=True,
            stride=STRIDE)
        dataset.transforms.insert(0, draw)
        out = []
        for k in range(len(dataset)):
            item = dataset[k]
            out.append((item["img"][0].numpy(), item["bboxes"].numpy(), item["cls"].numpy().reshape(-1)))
        return out

    drawn = 0
    for img, boxes, cls in boxes_out(DrawAugment(10.0, 6.0, layers=1.0, breaks=0.0, seed=0)):
        assert len(boxes) >= 2  # the tile's own two layers are all kept
        extra = len(boxes) - 2
        drawn += extra
        assert (cls == 0).all()  # melt layers
        assert np.allclose(boxes[:, 2], boxes[0, 2]) and boxes[0, 2] > 0.85  # full width, shifted like the true ones
        h = img.shape[0]
        heights = boxes[:, 3] * h
        assert heights.min() >= 6.0 - 1e-3
        for cx, cy, bw, bh in boxes:
            band = img[int(np.ceil((cy - bh / 2) * h)):int((cy + bh / 2) * h)]
            assert band.mean() < img.mean()  # a dark band lies under every box
    assert drawn >= 6  # one or two per tile where there is room

    for img, boxes, cls in boxes_out(DrawAugment(10.0, 6.0, layers=0.0, breaks=1.0, seed=0)):
        assert len(boxes) == 2  # breaks are not melt
    assert sum((img < 60).sum() for img, _, _ in boxes_out(DrawAugment(10.0, 6.0, 0.0, 1.0, seed=1))) > \
        sum((img < 60).sum() for img, _, _ in boxes_out(DrawAugment(10.0, 6.0, 0.0, 0.0, seed=1)))
    assert not list((data / "yolo" / "labels").glob("*.cache"))


def test_resumed_yolo_run_keeps_its_look_augmentation(yolo_data, tmp_path, monkeypatch):
    """An interrupted run with ``look`` resumed with default settings goes on with the run's own augmentation,
    and the checkpoint says so."""
    from meltloc.checkpoint import load_checkpoint
    from meltloc.heads.yolo import look as look_module
    from meltloc.heads.yolo import train as yolo_train
    from meltloc.heads.yolo.config import YoloSettings

    class Stop(Exception):
        pass

    def stop_after_first_epoch(trainer):
        if trainer.epoch == 0:
            raise Stop

    register = yolo_train._register_callbacks

    def with_stop(yolo):
        register(yolo)
        yolo.add_callback("on_fit_epoch_end", stop_after_first_epoch)

    monkeypatch.setattr(yolo_train, "_register_callbacks", with_stop)
    runs = tmp_path / "runs"
    with pytest.raises(Stop):
        yolo_train.train(yolo_data, tmp_path / "yolo.pt",
                         YoloSettings(batch=8, epochs=2, imgsz=TILE_ROWS, look=1.0, runs=str(runs)))
    monkeypatch.setattr(yolo_train, "_register_callbacks", register)
    # as runs from before the links wrote it: data.yaml pointing into the convert output
    root = (yolo_data / "yolo").resolve()
    (runs / "train" / "data.yaml").write_text(json.dumps({
        "path": root.as_posix(), "train": (runs / "train" / "train.txt").as_posix(),
        "val": (root / "images" / "val").as_posix(), "names": {0: "melt_layer", 1: "melt_lens"}}))
    before_tree = _tree(yolo_data)

    calls, firsts = [], []
    change = look_module.LookAugment.__call__
    monkeypatch.setattr(look_module.LookAugment, "__call__",
                        lambda self, labels: calls.append(1) or firsts.append(self.rng.bit_generator.state)
                        or change(self, labels))
    out = tmp_path / "resumed.pt"
    yolo_train.train(yolo_data, out, YoloSettings(imgsz=TILE_ROWS), resume=runs / "train")
    assert len(calls) == len((runs / "train" / "train.txt").read_text().split())  # the second epoch's tiles
    # the resumed epoch draws its own looks, not the first epoch's again
    assert firsts[0] != look_module.LookAugment(10.0, 1.0, seed=0).rng.bit_generator.state
    assert load_checkpoint(out, expect_head="yolo")["train"]["look"] == 1.0
    assert _tree(yolo_data) == before_tree  # no label cache written into the convert output


@pytest.mark.parametrize("setting", [{"insert_layers": 1.5}, {"insert_breaks": -0.1}, {"look": 2.0},
                                     {"positive_repeats": 0}, {"translate": 1.2}, {"hsv_v": -0.5},
                                     {"look": "half"}, {"positive_repeats": float("nan")},
                                     {"insert_layers": float("inf")}])
def test_yolo_settings_out_of_range_are_refused_by_name(setting, tmp_path):
    """A share of the training tiles or a fraction (translate, hsv_v) outside 0-1, a value that is no number, or
    no positive tile listed at all is refused, naming the setting, before any training starts."""
    from meltloc.heads.yolo.config import YoloSettings

    from meltloc.heads import head_class

    name, value = next(iter(setting.items()))
    shown = repr(value) if isinstance(value, str) else value
    with pytest.raises(MeltlocError, match=rf"{name}={shown}"):
        YoloSettings(**setting)
    with pytest.raises(MeltlocError, match=rf"{name}={shown}"):  # the registry's call, as the CLI and Python use it
        head_class("yolo").train(tmp_path / "no-data", tmp_path / "w.pt", **setting)
    assert not (tmp_path / "w.pt").exists() and not (tmp_path / "w.pt.runs").exists()
    YoloSettings(**{name: 1})  # the edges of the range are allowed
    if name != "positive_repeats":
        YoloSettings(**{name: 0})
        assert getattr(YoloSettings(**{name: "0.5"}), name) == 0.5  # a number as text is that number


# ---------------------------------------------------------------------- ensembles (README, "The twelfth round")
def test_fused_bands_score_the_mean_of_the_members_and_lie_between_their_boxes():
    from meltloc.heads.yolo.ensemble import fuse

    first = [("melt_layer", 0.8, 100.0, 110.0),   # both see this band
             ("melt_layer", 0.9, 300.0, 320.0),   # only the first sees this one
             ("melt_layer", 0.6, 101.0, 111.0)]   # the first's second box on the band: not a second vote
    second = [("melt_layer", 0.4, 102.0, 112.0),
              ("melt_lens", 0.3, 500.0, 505.0)]
    found = fuse([first, second], merge_iou=0.3)
    assert [(n, round(s, 3)) for n, s, _, _ in found] == [("melt_layer", 0.6), ("melt_layer", 0.45),
                                                          ("melt_lens", 0.15)]
    # boundaries: the score-weighted mean of the two members' boxes (0.8 and 0.4)
    assert found[0][2:] == pytest.approx(((0.8 * 100 + 0.4 * 102) / 1.2, (0.8 * 110 + 0.4 * 112) / 1.2))
    assert found[1][2:] == (300.0, 320.0)
    assert fuse([first, []], merge_iou=0.3)[0][1] == pytest.approx(0.45)  # a silent member halves every score
    assert fuse([[], []], merge_iou=0.3) == []


def _yolo_checkpoint(path: Path, config: dict | None = None) -> Path:
    """The shipped YOLO network as a checkpoint of its own, with another config when given."""
    from meltloc.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(Path(__file__).resolve().parents[1] / "weights" / "yolo.pt", expect_head="yolo")
    save_checkpoint(path, {**ck, "config": config or ck["config"]})
    return path


def test_an_ensemble_scores_each_band_by_the_mean_of_its_networks(tmp_path):
    """The shipped network twice detects what it does alone; beside a network that sees nothing (its class
    biases at -30), every band keeps its place and scores half."""
    import torch

    from meltloc.checkpoint import load_checkpoint, save_checkpoint
    from meltloc.heads import load_detector
    from meltloc.manifest import read_manifest
    from meltloc.section import load_section

    sample = Path(__file__).resolve().parents[1] / "datasets" / "sample"
    single = _yolo_checkpoint(tmp_path / "single.pt")
    ck = load_checkpoint(single, expect_head="yolo")
    state = ck["model"]["state_dict"]
    blind = {k: torch.full_like(v, -30.0) if k.startswith("model.22.cv3.") and k.endswith(".2.bias") else v
             for k, v in state.items()}
    save_checkpoint(tmp_path / "twice.pt", {**ck, "members": [{"config": ck["config"], "model": ck["model"]}]})
    save_checkpoint(tmp_path / "half.pt", {**ck, "members": [{"config": ck["config"],
                                                             "model": {**ck["model"], "state_dict": blind}}]})
    section = load_section(sample / "images" / "230.png", read_manifest(sample / "sections.tab"))
    alone = load_detector(single).detect(section, 0.2)
    assert len(alone) >= 3  # the sample section's layers
    for name, factor, threshold in (("twice.pt", 1.0, 0.2), ("half.pt", 0.5, 0.1)):
        detector = load_detector(tmp_path / name)
        assert len(detector.members) == 1
        found = detector.detect(section, threshold)
        assert [d.type for d in found] == [d.type for d in alone], name
        assert [d.score for d in found] == pytest.approx([factor * d.score for d in alone], abs=1e-4), name
        assert [x for d in found for x in (d.row_from, d.row_to)] == pytest.approx(
            [x for d in alone for x in (d.row_from, d.row_to)], abs=1e-3), name


def test_combine_chooses_the_threshold_on_val_and_refuses_what_does_not_fit(yolo_data, tmp_path):
    import torch

    from meltloc.checkpoint import load_checkpoint
    from meltloc.errors import DatasetError
    from meltloc.heads.yolo.data import dataset_config
    from meltloc.heads.yolo.ensemble import combine

    config = dataset_config(yolo_data, TILE_ROWS).to_dict()
    a, b = _yolo_checkpoint(tmp_path / "a.pt", config), _yolo_checkpoint(tmp_path / "b.pt", config)
    summary = combine([a, b], yolo_data, tmp_path / "ens.pt")
    assert summary["members"] == 2 and summary["score_threshold"] in {round(0.05 * k, 2) for k in range(1, 20)}
    ck = load_checkpoint(tmp_path / "ens.pt", expect_head="yolo")
    assert len(ck["members"]) == 1 and [m["file"] for m in ck["train"]["ensemble"]] == ["a.pt", "b.pt"]
    torch.load(tmp_path / "ens.pt", weights_only=True)
    small = combine([a, b], yolo_data, tmp_path / "small.pt", compact=True)
    assert (tmp_path / "small.pt").stat().st_size < 0.6 * (tmp_path / "ens.pt").stat().st_size  # from float16
    assert all(m["model"]["int8_scales"] for m in load_checkpoint(tmp_path / "small.pt")["members"])
    assert small["score_threshold"] in {round(0.05 * k, 2) for k in range(1, 20)}

    with pytest.raises(MeltlocError, match="two or more"):
        combine([a], yolo_data, tmp_path / "one.pt")
    before = a.read_bytes()
    with pytest.raises(MeltlocError, match="overwrite its member"):
        combine([a, b], yolo_data, a)
    assert a.read_bytes() == before
    with pytest.raises(CheckpointError, match="is an ensemble already"):
        combine([tmp_path / "ens.pt", b], yolo_data, tmp_path / "e2.pt")
    other = _yolo_checkpoint(tmp_path / "other.pt", {**config, "tile_rows": 2 * TILE_ROWS})
    with pytest.raises(CheckpointError, match="other tiles"):
        combine([a, other], yolo_data, tmp_path / "e3.pt")
    scale = _yolo_checkpoint(tmp_path / "s1.pt", {**config, "px_per_mm": 10.0})
    with pytest.raises(DatasetError, match="not the members'"):
        combine([scale, _yolo_checkpoint(tmp_path / "s2.pt", {**config, "px_per_mm": 10.0})], yolo_data,
                tmp_path / "e4.pt")
    assert not any((tmp_path / f"e{i}.pt").exists() for i in (2, 3, 4)) and not (tmp_path / "one.pt").exists()


def test_train_members_of_the_yolo_head_writes_one_checkpoint_that_detect_runs(yolo_data, tiny_core, tmp_path):
    import pandas as pd
    from conftest import invoke_cli

    from meltloc.checkpoint import load_checkpoint

    out = tmp_path / "ens.pt"
    result = invoke_cli("train", "--head", "yolo", "--data", yolo_data, "--out", out, "--epochs", 1, "--batch", 8,
                        "--imgsz", TILE_ROWS, "--members", 2, "--seed", 3)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 networks fused" in result.stdout + result.stderr
    ck = load_checkpoint(out, expect_head="yolo")
    assert len(ck["members"]) == 1 and [m["seed"] for m in ck["train"]["ensemble"]] == [3, 4]
    assert sorted(p.name for p in (tmp_path / "ens.pt.runs").glob("member*.pt")) == ["member1.pt", "member2.pt"]
    found = tmp_path / "found.csv"
    result = invoke_cli("detect", tiny_core / "images", "--sections", tiny_core / "sections.tab", "--weights", out,
                        "--out", found, "--workers", 1, "--min-score", 0.001)
    assert result.returncode == 0, result.stderr[-3000:]
    assert set(pd.read_csv(found.with_name("found.status.csv"))["status"]) == {"processed"}
    result = invoke_cli("train", "--head", "yolo", "--data", yolo_data, "--out", tmp_path / "r.pt", "--members", 2,
                        "--resume", tmp_path / "ens.pt.runs")
    assert result.returncode != 0 and "not an ensemble" in result.stderr and "Traceback" not in result.stderr


def test_a_yolo_network_stored_in_8_bits_detects_what_the_float_one_does(tmp_path):
    """:func:`compact_payload` (how a shipped ensemble stays small): a quarter of float32, the same layers."""
    import torch

    from meltloc.checkpoint import load_checkpoint, save_checkpoint
    from meltloc.heads import load_detector
    from meltloc.heads.yolo.network import compact_payload
    from meltloc.manifest import read_manifest
    from meltloc.section import load_section

    repo = Path(__file__).resolve().parents[1]
    ck = load_checkpoint(repo / "weights" / "yolo.pt", expect_head="yolo")
    floats = {k: v.float() for k, v in ck["model"]["state_dict"].items()}
    save_checkpoint(tmp_path / "f32.pt", {**ck, "model": {**ck["model"], "state_dict": floats}})
    save_checkpoint(tmp_path / "int8.pt", {**ck, "model": compact_payload(ck["model"])})
    once = compact_payload(ck["model"])
    assert compact_payload(once) is once  # compacting twice loses nothing
    assert (tmp_path / "int8.pt").stat().st_size < 0.3 * (tmp_path / "f32.pt").stat().st_size
    torch.load(tmp_path / "int8.pt", weights_only=True)
    section = load_section(repo / "datasets" / "sample" / "images" / "230.png",
                           read_manifest(repo / "datasets" / "sample" / "sections.tab"))
    full = load_detector(tmp_path / "f32.pt").detect(section)
    small = load_detector(tmp_path / "int8.pt").detect(section)
    assert len(full) >= 3 and [d.type for d in small] == [d.type for d in full]
    # measured: scores within 0.011, boundaries within 0.05 image rows on the sample (0.17 rows when the
    # 16-value box-edge ramp was rounded to 8 bits as well)
    assert [d.score for d in small] == pytest.approx([d.score for d in full], abs=0.03)
    assert [x for d in small for x in (d.row_from, d.row_to)] == pytest.approx(
        [x for d in full for x in (d.row_from, d.row_to)], abs=0.12)
