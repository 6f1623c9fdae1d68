"""Nothing lost, nothing run (issue 16): checkpoints that cannot execute code, inputs never overwritten,
resume that checks what it resumes, one clear line for each fault, and a non-editable install that works."""

from __future__ import annotations

import hashlib
import io
import os
import resource
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args):
    """``meltloc ARGS`` in this process (as the console script runs it: one-line errors, exit codes), which spares
    the seconds of a fresh interpreter per command; returns (returncode, stdout, stderr) like subprocess."""
    import contextlib
    import types

    from meltloc import cli

    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["meltloc", *map(str, args)]
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = argv
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())


def one_line_error(result) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def digest(*paths: Path) -> dict:
    """The bytes (as hashes) of every file under the given files and folders."""
    files = []
    for p in paths:
        files += sorted(q for q in Path(p).rglob("*") if q.is_file()) if Path(p).is_dir() else [Path(p)]
    return {str(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in files}


# ----------------------------------------------------------------------------------------------------------------------
# 1. Checkpoints that cannot run code
# ----------------------------------------------------------------------------------------------------------------------

class _WritesMarker:
    """Unpickling this object creates a file: the stand-in for a payload that runs code."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _evil_file(path: Path, marker: Path, **outer) -> Path:
    torch.save({"format": "meltloc-checkpoint", "head": "regression", "config": {}, **outer,
                "model": _WritesMarker(marker)}, path)
    return path


@pytest.fixture()
def evil(tmp_path):
    """A hostile checkpoint, a meltloc-looking YOLO checkpoint whose inner blob is hostile, and the marker."""
    from meltloc.checkpoint import save_checkpoint
    from meltloc.heads.yolo.config import YoloConfig

    marker = tmp_path / "PWNED"
    plain_evil = _evil_file(tmp_path / "evil.pt", marker)
    blob = io.BytesIO()
    torch.save({"model": _WritesMarker(marker), "epoch": 3, "optimizer": {}}, blob)
    yolo_evil = tmp_path / "yolo_evil.pt"
    save_checkpoint(yolo_evil, {"head": "yolo", "config": YoloConfig().to_dict(), "model": blob.getvalue()})
    last = tmp_path / "run" / "weights" / "last.pt"
    last.parent.mkdir(parents=True)
    last.write_bytes(blob.getvalue())
    # the test is only worth something if unpickling really runs the payload
    torch.load(plain_evil, weights_only=False)
    assert marker.exists()
    marker.unlink()
    return {"marker": marker, "plain": plain_evil, "yolo": yolo_evil, "last": last}


def test_a_hostile_checkpoint_runs_no_code_through_any_command(evil, tiny_core, tiny_trained, tmp_path):
    conv, _ = tiny_trained
    images = tiny_core / "images"
    commands = {
        "detect --weights": ["detect", images, "--weights", evil["plain"], "--out", tmp_path / "d.csv"],
        "detect, yolo inner blob": ["detect", images, "--weights", evil["yolo"], "--out", tmp_path / "d2.csv"],
        "detect --end-refiner": ["detect", images, "--end-refiner", evil["plain"], "--out", tmp_path / "d3.csv"],
        "train --resume": ["train", "--head", "regression", "--data", conv, "--out", tmp_path / "w.pt",
                           "--resume", evil["plain"], "--epochs", 1, "--steps-per-epoch", 1, "--batch", 2],
        "train --resume (classifier)": ["train", "--head", "simple-cnn", "--data", conv, "--out", tmp_path / "c.pt",
                                        "--resume", evil["plain"], "--epochs", 1],
        "compare --weights": ["compare", "--data", conv, "--images", images, "--weights", evil["plain"],
                              "--out", tmp_path / "report", "-q"],
        "compare, yolo inner blob": ["compare", "--data", conv, "--images", images, "--weights", evil["yolo"],
                                     "--out", tmp_path / "report2", "-q"],
        "train --head yolo --model": ["train", "--head", "yolo", "--data", conv, "--out", tmp_path / "y.pt",
                                      "--model", evil["plain"], "--epochs", 1],
        "train --head yolo --model (inner blob)": ["train", "--head", "yolo", "--data", conv, "--out",
                                                   tmp_path / "y2.pt", "--model", evil["yolo"], "--epochs", 1],
        "train --head yolo --resume": ["train", "--head", "yolo", "--data", conv, "--out", tmp_path / "y3.pt",
                                       "--resume", evil["last"]],
        "upgrade-checkpoint without trust": ["upgrade-checkpoint", evil["plain"], "--out", tmp_path / "new.pt"],
    }
    for name, args in commands.items():
        line = one_line_error(run_cli(*args))
        assert not evil["marker"].exists(), f"{name}: the checkpoint ran code"
        assert "--trust-checkpoint" in line, (name, line)
        assert "pickle" in line or "run code" in line, (name, line)


def _old_style_checkpoint(weights: Path, path: Path) -> Path:
    """A meltloc checkpoint as older versions wrote it: a pickle holding a Python object (here a Path)."""
    ck = torch.load(weights, weights_only=True)
    ck["train"]["data"] = Path("/somewhere/conv")
    torch.save(ck, path)
    return path


def test_an_old_checkpoint_is_refused_loaded_with_trust_and_upgraded_once(tiny_core, tiny_trained, tmp_path):
    _, weights = tiny_trained
    old = _old_style_checkpoint(weights, tmp_path / "old.pt")
    images = tiny_core / "images" / "227.png"
    line = one_line_error(run_cli("detect", images, "--weights", old, "--out", tmp_path / "a.csv", "-q"))
    assert "old.pt" in line and "upgrade-checkpoint" in line

    trusted = run_cli("detect", images, "--weights", old, "--out", tmp_path / "b.csv", "-q", "--trust-checkpoint")
    assert trusted.returncode == 0, trusted.stderr
    assert "warning:" in trusted.stderr and "--trust-checkpoint" in trusted.stderr and "run" in trusted.stderr

    up = run_cli("upgrade-checkpoint", old, "--out", tmp_path / "new.pt", "--trust-checkpoint")
    assert up.returncode == 0, up.stderr
    new = torch.load(tmp_path / "new.pt", weights_only=True)
    assert new["head"] == "regression" and new["train"]["data"] == "/somewhere/conv"
    again = run_cli("detect", images, "--weights", tmp_path / "new.pt", "--out", tmp_path / "c.csv", "-q")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "b.csv").read_bytes() == (tmp_path / "c.csv").read_bytes()


def test_every_checkpoint_meltloc_writes_loads_with_weights_only(tiny_trained):
    conv, weights = tiny_trained
    for path in (weights, weights.with_suffix(".last.pt"), REPO / "weights" / "regression.pt",
                 REPO / "weights" / "end_refiner.pt"):
        ck = torch.load(path, map_location="cpu", weights_only=True)
        assert ck["format"] == "meltloc-checkpoint"


def test_save_checkpoint_turns_python_objects_into_plain_data(tmp_path):
    from meltloc.checkpoint import load_checkpoint, save_checkpoint

    save_checkpoint(tmp_path / "c.pt", {"head": "regression", "config": {"scale": np.float32(2.5)},
                                        "model": {"w": torch.ones(2)},
                                        "train": {"data": tmp_path, "n": np.int64(3), "a": np.arange(3)}})
    ck = torch.load(tmp_path / "c.pt", weights_only=True)
    assert ck["train"]["data"] == str(tmp_path) and ck["train"]["n"] == 3 and ck["config"]["scale"] == 2.5
    assert load_checkpoint(tmp_path / "c.pt")["model"]["w"].sum() == 2


def _random_yolo():
    from meltloc.heads.yolo.env import import_ultralytics

    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    return DetectionModel("yolov8n.yaml", ch=3, nc=2, verbose=False)


def test_a_yolo_checkpoint_is_plain_data_and_rebuilds_the_same_network_offline(tmp_path):
    from meltloc.checkpoint import load_checkpoint, save_checkpoint, trusting, upgrade_checkpoint
    from meltloc.errors import CheckpointError
    from meltloc.heads.yolo import YoloHead
    from meltloc.heads.yolo.config import YoloConfig
    from meltloc.heads.yolo.network import network_payload

    net = _random_yolo().eval()
    cfg = YoloConfig(tile_rows=128, imgsz=128, input_hw=(128, 64)).to_dict()
    save_checkpoint(tmp_path / "y.pt", {"head": "yolo", "config": cfg, "model": network_payload(net)})
    ck = torch.load(tmp_path / "y.pt", weights_only=True)  # no pickled object anywhere
    detector = YoloHead(load_checkpoint(tmp_path / "y.pt"))
    x = torch.rand(2, 3, 128, 64)
    with torch.no_grad():
        want, got = net.fuse(verbose=False)(x), detector.model(x)
    want = want[0] if isinstance(want, (tuple, list)) else want
    got = got[0] if isinstance(got, (tuple, list)) else got
    assert torch.allclose(want, got, atol=1e-4)
    assert set(ck["model"]) == {"yaml", "state_dict"}

    # an older YOLO checkpoint held ultralytics' pickle: refused, loaded with trust, upgraded once
    blob = io.BytesIO()
    torch.save({"model": _random_yolo(), "epoch": 1}, blob)
    save_checkpoint(tmp_path / "old.pt", {"head": "yolo", "config": cfg, "model": blob.getvalue()})
    with pytest.raises(CheckpointError, match="pickled"):
        YoloHead(load_checkpoint(tmp_path / "old.pt"))
    with trusting():
        YoloHead(load_checkpoint(tmp_path / "old.pt"))
        upgrade_checkpoint(tmp_path / "old.pt", tmp_path / "upgraded.pt")
    assert isinstance(torch.load(tmp_path / "upgraded.pt", weights_only=True)["model"], dict)
    YoloHead(load_checkpoint(tmp_path / "upgraded.pt"))


def test_a_foreign_yolo_pt_as_starting_weights_is_one_line(tiny_trained, tmp_path):
    """An ultralytics .pt (a pickle of model objects) given to train --head yolo --model."""
    conv, _ = tiny_trained
    torch.save({"model": _random_yolo(), "epoch": -1}, tmp_path / "yolov8n.pt")
    line = one_line_error(run_cli("train", "--head", "yolo", "--data", conv, "--out", tmp_path / "y.pt",
                                  "--model", tmp_path / "yolov8n.pt", "--epochs", 1))
    assert "yolov8n.pt" in line and "--trust-checkpoint" in line
    assert not (tmp_path / "y.pt").exists()


# ----------------------------------------------------------------------------------------------------------------------
# 2. Inputs are sacred
# ----------------------------------------------------------------------------------------------------------------------

@pytest.fixture()
def images(tiny_core, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    for name in ("227.png", "230.png"):
        shutil.copy(tiny_core / "images" / name, folder / name)
    return folder


def test_overlays_into_the_image_folder_are_refused(images, tiny_trained, tmp_path):
    _, weights = tiny_trained
    before = digest(images)
    line = one_line_error(run_cli("detect", images, "--weights", weights, "--out", tmp_path / "d.csv",
                                  "--overlays", images, "-q"))
    assert "scans" in line and "input" in line
    assert digest(images) == before and not (tmp_path / "d.csv").exists()
    # a folder of the user's own files is refused too; an empty or new one is fine
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "227.png").write_bytes(b"my own picture")
    one_line_error(run_cli("detect", images, "--weights", weights, "--out", tmp_path / "d.csv",
                           "--overlays", tmp_path / "mine", "-q", "--overwrite"))
    assert (tmp_path / "mine" / "227.png").read_bytes() == b"my own picture"
    ok = run_cli("detect", images, "--weights", weights, "--out", tmp_path / "d.csv", "--overlays",
                 tmp_path / "ov", "-q")
    assert ok.returncode == 0, ok.stderr
    assert sorted(p.name for p in (tmp_path / "ov").glob("*.png")) == ["227.png", "230.png"]


@pytest.mark.parametrize("target", ["image", "manifest", "weights"])
def test_detect_never_writes_onto_an_input(target, images, tiny_core, tiny_trained, tmp_path):
    _, weights = tiny_trained
    manifest = tmp_path / "sections.tab"
    shutil.copy(tiny_core / "sections.tab", manifest)
    w = tmp_path / "w.pt"
    shutil.copy(weights, w)
    out = {"image": images / "227.png", "manifest": manifest, "weights": w}[target]
    before = digest(images, manifest, w)
    line = one_line_error(run_cli("detect", images, "--sections", manifest, "--weights", w, "--out", out, "-q",
                                  "--overwrite"))
    assert out.name in line and "input" in line
    assert digest(images, manifest, w) == before


def test_evaluate_never_writes_onto_its_truth_or_predictions(tiny_core, tmp_path):
    truth = tmp_path / "truth.csv"
    shutil.copy(tiny_core / "truth.csv", truth)
    pred = tmp_path / "pred.csv"
    pd.read_csv(truth).assign(score=1.0).to_csv(pred, index=False)
    before = digest(truth, pred)
    for option, target in (("--csv", truth), ("--json", pred)):
        line = one_line_error(run_cli("evaluate", "--pred", pred, "--truth", truth, option, target, "--overwrite"))
        assert target.name in line and "input" in line
    assert digest(truth, pred) == before
    ok = run_cli("evaluate", "--pred", pred, "--truth", truth, "--csv", tmp_path / "m.csv")
    assert ok.returncode == 0, ok.stderr
    again = one_line_error(run_cli("evaluate", "--pred", pred, "--truth", truth, "--csv", tmp_path / "m.csv"))
    assert "--overwrite" in again
    assert run_cli("evaluate", "--pred", pred, "--truth", truth, "--csv", tmp_path / "m.csv",
                   "--overwrite").returncode == 0


def test_a_read_only_output_is_never_replaced_even_with_overwrite(tiny_core, tmp_path, monkeypatch):
    pred = tmp_path / "pred.csv"
    pd.read_csv(tiny_core / "truth.csv").assign(score=1.0).to_csv(pred, index=False)
    kept = tmp_path / "kept.csv"
    kept.write_text("my results\n")
    kept.chmod(stat.S_IRUSR | stat.S_IRGRP)
    real_access = os.access  # root may write read-only files: let the check see what a user would
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p) == kept and mode & os.W_OK
                        else real_access(p, mode, **kw))
    try:
        line = one_line_error(run_cli("evaluate", "--pred", pred, "--truth", tiny_core / "truth.csv", "--csv", kept,
                                      "--overwrite"))
        assert "kept.csv" in line and "read-only" in line
        assert kept.read_text() == "my results\n"
    finally:
        kept.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_a_read_only_file_is_never_replaced_by_the_writers(tmp_path, monkeypatch):
    """The same guarantee in the library (root may write read-only files, so permission is simulated)."""
    from meltloc import atomic
    from meltloc.errors import OutputError

    kept = tmp_path / "kept.csv"
    kept.write_text("mine")
    real_access = os.access
    monkeypatch.setattr(atomic.os, "access",
                        lambda p, mode: False if Path(p) == kept and mode == os.W_OK else real_access(p, mode))
    with pytest.raises(OutputError, match="read-only"):
        atomic.write_text(kept, "theirs")
    assert kept.read_text() == "mine"


def test_convert_refuses_a_folder_with_the_users_files_and_replaces_its_own_only_when_asked(tiny_core, tmp_path):
    out = tmp_path / "conv"
    (out / "strips").mkdir(parents=True)
    (out / "strips" / "227.png").write_bytes(b"the user's own strip")
    (out / "strips" / "holiday.png").write_bytes(b"a photo")
    before = digest(out)
    args = ["convert", "--images", tiny_core / "images", "--sections", tiny_core / "sections.tab", "--labels",
            tiny_core / "features.csv", "--px-per-mm", 2, "--quiet"]
    for extra in ([], ["--overwrite"]):
        line = one_line_error(run_cli(*args, "--out", out, *extra))
        assert "conv" in line and "empty or new folder" in line
    assert digest(out) == before
    inputs = digest(tiny_core)
    line = one_line_error(run_cli(*args, "--out", tiny_core / "images", "--overwrite"))  # into the input folder
    assert "holds an input" in line
    assert digest(tiny_core) == inputs

    mine = tmp_path / "conv2"
    assert run_cli(*args, "--out", mine).returncode == 0
    line = one_line_error(run_cli(*args, "--out", mine))
    assert "--overwrite" in line
    assert run_cli(*args, "--out", mine, "--overwrite").returncode == 0


def test_convert_stopped_over_another_run_is_refused_and_train_checks_the_strips(tiny_core, tmp_path):
    import json

    out = tmp_path / "conv"
    args = ["convert", "--images", tiny_core / "images", "--sections", tiny_core / "sections.tab", "--labels",
            tiny_core / "features.csv", "--quiet", "--out", out]
    assert run_cli(*args, "--px-per-mm", 2).returncode == 0
    # a convert with other settings that was killed half-way: its record says so, one strip is of the new scale
    record = json.loads((out / ".meltloc.json").read_text())
    record["complete"] = False
    (out / ".meltloc.json").write_text(json.dumps(record))
    line = one_line_error(run_cli(*args, "--px-per-mm", 3))
    assert "px_per_mm" in line and "--overwrite" in line
    line = one_line_error(run_cli("train", "--head", "regression", "--data", out, "--out", tmp_path / "w.pt"))
    assert "unfinished" in line
    record["complete"] = True
    (out / ".meltloc.json").write_text(json.dumps(record))
    import cv2

    strip = out / "strips" / "227.png"
    cv2.imwrite(str(strip), np.zeros((17, 64), np.uint8))
    line = one_line_error(run_cli("train", "--head", "regression", "--data", out, "--out", tmp_path / "w.pt",
                                  "--epochs", 1))
    assert "227.png" in line and "strips.csv" in line
    # the same settings again finish an unfinished run without --overwrite
    record["complete"] = False
    (out / ".meltloc.json").write_text(json.dumps(record))
    assert run_cli(*args, "--px-per-mm", 2).returncode == 0


def test_synth_refuses_a_folder_with_the_users_files(tmp_path):
    out = tmp_path / "core"
    out.mkdir()
    (out / "features.csv").write_text("my melt log\n")
    (out / "sections.csv").write_text("my sections\n")
    before = digest(out)
    for extra in ([], ["--overwrite"]):
        line = one_line_error(run_cli("synth", out, "--sections", 1, "--px-per-cm", 4, *extra))
        assert "core" in line and "empty or new folder" in line
    assert digest(out) == before
    fresh = tmp_path / "fresh"
    assert run_cli("synth", fresh, "--sections", 1, "--px-per-cm", 4).returncode == 0
    assert "--overwrite" in one_line_error(run_cli("synth", fresh, "--sections", 1, "--px-per-cm", 4))
    assert run_cli("synth", fresh, "--sections", 1, "--px-per-cm", 4, "--overwrite").returncode == 0


def test_training_over_the_shipped_weights_needs_overwrite(tiny_trained, tmp_path):
    conv, weights = tiny_trained
    shipped = REPO / "weights" / "regression.pt"
    before = digest(shipped)
    line = one_line_error(run_cli("train", "--head", "regression", "--data", conv, "--out", shipped,
                                  "--epochs", 1, "--steps-per-epoch", 1, "--batch", 2))
    assert "regression.pt" in line and "--overwrite" in line
    assert digest(shipped) == before
    # any existing checkpoint: the same; a file of the convert output is its input, even with --overwrite
    line = one_line_error(run_cli("train", "--head", "regression", "--data", conv, "--out", weights, "--epochs", 1))
    assert "--overwrite" in line
    table = digest(conv / "strips.csv")
    line = one_line_error(run_cli("train", "--head", "regression", "--data", conv, "--out", conv / "strips.csv",
                                  "--overwrite", "--epochs", 1))
    assert "strips.csv" in line and "input" in line
    assert digest(conv / "strips.csv") == table


# ----------------------------------------------------------------------------------------------------------------------
# 3. Resume that knows its run
# ----------------------------------------------------------------------------------------------------------------------

class _StopAfter:
    """A detector that is interrupted (as by Ctrl-C) on its n-th image."""

    def __init__(self, detector, n: int):
        self.inner, self.n, self.head = detector, n, detector.head

    def detect(self, section, score_threshold=None):
        self.n -= 1
        if self.n < 0:
            raise KeyboardInterrupt
        return self.inner.detect(section, score_threshold=score_threshold)


@pytest.fixture()
def stopped_run(tiny_core, tiny_trained, tmp_path):
    """A folder of 6 images, the uninterrupted CSV, and a run into ``out`` stopped after 2 images with a
    half-written third."""
    from meltloc.detect import detect_images
    from meltloc.heads import load_detector

    _, weights = tiny_trained
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(6):
        shutil.copy(tiny_core / "images" / ["227.png", "230.png", "233.png"][i % 3], folder / f"{500 + i}.png")
    args = ["detect", folder, "--weights", weights, "--min-score", 0.01, "-q"]
    whole = tmp_path / "whole.csv"
    result = run_cli(*args, "--out", whole)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "out.csv"
    with pytest.raises(KeyboardInterrupt):
        detect_images([folder], _StopAfter(load_detector(weights), 2), out, None, None, False, 0.01,
                      show_progress=False, threads=1, weights=weights, overwrite=False)
    partial = tmp_path / "out.csv.partial"
    with open(partial, "a", newline="") as f:
        f.write("502.png,,,,melt_layer,0.5")  # an image cut off in the middle of its rows
    return {"args": args, "whole": whole, "out": out, "partial": partial, "folder": folder, "weights": weights}


def test_a_resumed_csv_is_byte_identical_to_an_uninterrupted_one(stopped_run):
    r = stopped_run
    result = run_cli(*r["args"], "--out", r["out"], "--resume")
    assert result.returncode == 0, result.stderr
    assert "2 already done" in result.stderr
    data = r["out"].read_bytes()
    assert data == r["whole"].read_bytes()
    assert b"\r" not in data
    assert not r["partial"].exists() and not Path(str(r["out"]) + ".run.json").exists()


def test_resume_with_another_run_is_refused_naming_the_difference(stopped_run, tmp_path):
    from meltloc.checkpoint import load_checkpoint, save_checkpoint

    r = stopped_run
    before = digest(r["partial"])
    other_weights = tmp_path / "other.pt"
    ck = load_checkpoint(r["weights"])
    ck["score_threshold"] = 0.123
    save_checkpoint(other_weights, ck)
    other_folder = tmp_path / "elsewhere"
    shutil.copytree(r["folder"], other_folder)
    args = [a for a in r["args"]]
    cases = {
        "min_score": [*args[:-2], 0.5, "-q"],
        "weights": [args[0], args[1], "--weights", other_weights, *args[4:]],
        "inputs": [args[0], other_folder, *args[2:]],
        "end refinement": [*args, "--refine-ends"],
    }
    for word, case in cases.items():
        line = one_line_error(run_cli(*case, "--out", r["out"], "--resume"))
        assert word in line and "--resume" in line, (word, line)
        assert digest(r["partial"]) == before
    # a rerun without --resume does not throw the finished images away
    line = one_line_error(run_cli(*args, "--out", r["out"]))
    assert "--resume" in line and "--overwrite" in line
    assert digest(r["partial"]) == before
    # --overwrite starts again
    assert run_cli(*args, "--out", r["out"], "--overwrite").returncode == 0
    assert r["out"].read_bytes() == r["whole"].read_bytes()


def test_a_second_process_on_the_same_output_is_refused(stopped_run):
    from meltloc.detect import output_lock

    r = stopped_run
    with output_lock(r["out"]):
        line = one_line_error(run_cli(*r["args"], "--out", r["out"], "--resume"))
    assert "another" in line and "out.csv" in line
    assert run_cli(*r["args"], "--out", r["out"], "--resume").returncode == 0


# ----------------------------------------------------------------------------------------------------------------------
# 4. One clear line
# ----------------------------------------------------------------------------------------------------------------------

def test_a_label_table_exported_from_excel_in_cp1252_is_read(tiny_core, tmp_path):
    labels = pd.read_csv(tiny_core / "features.csv", dtype=str)
    labels["comment"] = "at -30 °C"
    labels.to_csv(tmp_path / "log.csv", index=False, encoding="cp1252")
    assert b"\xb0" in (tmp_path / "log.csv").read_bytes()
    pd.read_csv(tiny_core / "truth.csv").assign(score=1.0).to_csv(tmp_path / "pred.csv", index=False)
    result = run_cli("evaluate", "--pred", tmp_path / "pred.csv", "--truth", tmp_path / "log.csv",
                     "--sections", tiny_core / "sections.tab")
    assert result.returncode == 0, result.stderr
    assert "codec" not in result.stderr


def test_spreadsheets_in_the_wrong_place_are_one_line(tiny_core, tmp_path):
    pd.read_csv(tiny_core / "sections.csv").to_excel(tmp_path / "sections.xlsx", index=False)
    (tmp_path / "labels.xlsx").write_text((tiny_core / "features.csv").read_text())  # a CSV named .xlsx
    base = ["convert", "--images", tiny_core / "images", "--out", tmp_path / "o"]
    line = one_line_error(run_cli(*base, "--sections", tmp_path / "sections.xlsx", "--labels",
                                  tiny_core / "features.csv"))
    assert "sections.xlsx" in line and "Excel" in line and "CSV" in line and "tokenizing" not in line
    line = one_line_error(run_cli(*base, "--sections", tiny_core / "sections.tab", "--labels",
                                  tmp_path / "labels.xlsx"))
    assert "labels.xlsx" in line and "not an Excel workbook" in line


def test_a_full_disk_names_the_file_and_what_was_kept(tiny_core, tmp_path):
    pred = tmp_path / "pred.csv"
    pd.read_csv(tiny_core / "truth.csv").assign(score=1.0).to_csv(pred, index=False)

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (300, 300))

    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), "evaluate", "--pred", str(pred), "--truth",
                           str(tiny_core / "truth.csv"), "--json", str(tmp_path / "m.json")],
                          capture_output=True, text=True, preexec_fn=small_files, timeout=300)
    line = one_line_error(proc)
    assert "m.json" in line and "kept" in line and "requested" not in line
    assert not (tmp_path / "m.json").exists() and not list(tmp_path.glob(".m.*"))


def test_ctrl_c_in_train_says_what_is_kept(tiny_trained, tmp_path):
    conv, _ = tiny_trained
    out = tmp_path / "w.pt"
    proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "train", "--head", "regression", "--data",
                             str(conv), "--out", str(out), "--epochs", "1000", "--steps-per-epoch", "1", "--batch",
                             "2"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # even if we ignore it
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not out.with_suffix(".last.pt").exists():
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    stderr = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "w.last.pt" in stderr and "--resume" in stderr


def _swallow_signal_on_call(n: int, real, sig=signal.SIGINT):
    """``real`` with ``sig`` (Ctrl-C by default) arriving during its ``n``-th call, inside a library's catch-all
    that swallows what it raises (as Python does for an exception raised in a ``__del__``)."""
    calls = []

    def wrapped(*args, **kwargs):
        calls.append(1)
        if len(calls) == n:
            try:
                signal.raise_signal(sig)
            except BaseException:  # noqa: BLE001  (the swallowing catch-all)
                pass
        return real(*args, **kwargs)

    return wrapped, calls


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_a_swallowed_ctrl_c_or_sigterm_still_stops_training(tiny_trained, tmp_path, monkeypatch,
                                                            ctrl_c_at_a_terminal, sig, code):
    import meltloc.heads.regression.train as regression_train

    conv, _ = tiny_trained
    wrapped, calls = _swallow_signal_on_call(3, regression_train.losses, sig)
    monkeypatch.setattr(regression_train, "losses", wrapped)
    out = tmp_path / "w.pt"
    result = run_cli("train", "--head", "regression", "--data", conv, "--out", out, "--epochs", 40,
                     "--steps-per-epoch", 1, "--batch", 2)
    assert result.returncode == code, result.stderr[-2000:]
    assert len(calls) == 3  # stopped before the next step
    assert "w.last.pt" in result.stderr and "--resume" in result.stderr
    # the third epoch's one step had begun: it finished and was kept, the fourth never started
    assert torch.load(out.with_suffix(".last.pt"), weights_only=True)["epoch"] == 3


def test_a_ctrl_c_while_the_command_line_is_still_loading_ends_without_a_traceback():
    """Every command first imports the command line (~0.2 s); a Ctrl-C then reads as one later would."""
    ctrl_c_while_loading = (
        "import sys\n"
        "class CtrlC:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'meltloc.cli':\n"
        "            raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, CtrlC())\n"
        "from meltloc.__main__ import main\n"
        "main()\n")
    result = subprocess.run([sys.executable, "-c", ctrl_c_while_loading, "--help"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 130
    assert result.stderr.strip() == "interrupted"


# ----------------------------------------------------------------------------------------------------------------------
# 5. Installed, not only editable
# ----------------------------------------------------------------------------------------------------------------------

def test_a_non_editable_install_runs_detect_on_the_shipped_sample(tmp_path):
    """``pip install .`` (a wheel, no source tree beside the package) gives a working ``meltloc detect``."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("meltloc", "weights", "datasets"):
        shutil.copytree(REPO / name, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    wheels = tmp_path / "wheels"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                            "--no-index", "-w", str(wheels), str(src)], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    install = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                              *map(str, wheels.glob("*.whl"))], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-2000:]
    shutil.rmtree(src)  # nothing of the source tree is left to lean on
    work = tmp_path / "work"
    work.mkdir()
    where = subprocess.run([str(py), "-c", "import meltloc; print(meltloc.__file__)"], capture_output=True,
                           text=True, cwd=work, timeout=120)
    assert str(venv) in where.stdout, where.stdout + where.stderr
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([str(venv / "bin" / "meltloc"), "detect", "--quiet"], capture_output=True, text=True,
                            cwd=work, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(work / "detections.csv")
    assert len(table) > 0 and set(table["image"]) <= {"227.png", "230.png", "233.png"}


def test_yolo_training_starts_from_a_meltloc_yolo_checkpoint_without_unpickling(tmp_path):
    from meltloc.checkpoint import save_checkpoint
    from meltloc.heads.yolo.config import YoloConfig
    from meltloc.heads.yolo.network import network_payload
    from meltloc.heads.yolo.train import start_model

    net = _random_yolo()
    save_checkpoint(tmp_path / "start.pt", {"head": "yolo", "config": YoloConfig().to_dict(),
                                            "model": network_payload(net)})
    yolo = start_model(str(tmp_path / "start.pt"), tmp_path / "run")
    assert yolo.ckpt  # ultralytics then trains from these weights (Model.train: get_model(weights=self.model))
    want, got = net.state_dict(), yolo.model.state_dict()
    assert all(torch.equal(want[k].float(), got[k].float()) for k in want)


def test_yolo_resume_accepts_the_run_files_this_meltloc_wrote_and_no_others(tmp_path, monkeypatch):
    from meltloc.errors import CheckpointError
    from meltloc.heads.yolo import train as yolo

    monkeypatch.setattr(yolo, "_own_files", lambda: tmp_path / "own.txt")
    weights = tmp_path / "run" / "weights"
    weights.mkdir(parents=True)
    (weights / "last.pt").write_bytes(b"a run file")
    with pytest.raises(CheckpointError, match="trust-checkpoint"):
        yolo.check_resumable(weights / "last.pt")
    yolo._register_run_weights(type("Trainer", (), {"wdir": weights})())
    yolo.check_resumable(weights / "last.pt")
    (weights / "last.pt").write_bytes(b"swapped for another file")
    with pytest.raises(CheckpointError):
        yolo.check_resumable(weights / "last.pt")
