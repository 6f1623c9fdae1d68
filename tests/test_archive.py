"""A whole archive in one command (issue #15): one answer per section, a status for every image, depths that can be
trusted, bad files skipped, devices, workers, outputs people open.

Runs the shipped weights on the shipped sample (three sections at 40 px/cm, about 0.2 s each), mostly in-process.
"""

from __future__ import annotations

import builtins
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import run_cli

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "datasets" / "sample"
WEIGHTS = REPO / "weights" / "regression.pt"
NAMES = ["227.png", "230.png", "233.png"]


@pytest.fixture(scope="module")
def detector():
    from meltloc.heads import load_detector

    return load_detector(WEIGHTS, "cpu")


@pytest.fixture(scope="module")
def manifest_rows():
    return pd.read_csv(SAMPLE / "sections.csv")


def write_manifest(path: Path, rows: list[tuple[str, float, float]]) -> Path:
    """A PANGAEA tab manifest: exposures come from the names (``227_1.png`` is the bright one, Integration 1)."""
    from meltloc.manifest import write_manifest as write

    write(pd.DataFrame(rows, columns=["image", "top_m", "bottom_m"]), tab_path=path)
    return path


def sample_manifest(tmp_path: Path, extra_variants=("_1",), scale: dict | None = None) -> Path:
    rows = []
    for rec in pd.read_csv(SAMPLE / "sections.csv").itertuples():
        top, bottom = rec.top_m, rec.bottom_m
        if scale and rec.image in scale:
            bottom = top + (bottom - top) * scale[rec.image]
        stem = Path(rec.image).stem
        rows.append((rec.image, top, bottom))
        rows += [(f"{stem}{v}.png", top, bottom) for v in extra_variants]
    return write_manifest(tmp_path / "sections.tab", rows)


def run(inputs, detector, out, manifest=None, **kw):
    from meltloc.detect import detect_images
    from meltloc.manifest import read_manifest

    m = read_manifest(manifest) if manifest is not None else None
    return detect_images([Path(i) for i in inputs], detector, out, m, show_progress=False, threads=1,
                         weights=WEIGHTS, **kw)


def bright(image: np.ndarray) -> np.ndarray:
    return np.clip(image.astype(np.float32) * 1.3 + 10, 0, 255).astype(np.uint8)


def read_gray(path: Path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def depth_rows(table: pd.DataFrame) -> pd.DataFrame:
    return table[["image", "depth_from_m", "depth_to_m", "type", "score"]].sort_values(
        ["depth_from_m"]).reset_index(drop=True)


# ----------------------------------------------------------------------------------------------------------------------
# 1. One answer per section
# ----------------------------------------------------------------------------------------------------------------------

def test_dark_bright_and_duplicate_images_give_each_layer_once_and_every_image_a_status(detector, tmp_path):
    manifest = sample_manifest(tmp_path)
    plain = tmp_path / "plain"
    shutil.copytree(SAMPLE / "images", plain)
    archive = tmp_path / "archive"
    archive.mkdir()
    for name in NAMES:
        image = read_gray(SAMPLE / "images" / name)
        cv2.imwrite(str(archive / name), image)                                   # dark
        cv2.imwrite(str(archive / (Path(name).stem + "_1.png")), bright(image))   # bright
    cv2.imwrite(str(archive / "230.tif"), read_gray(SAMPLE / "images" / "230.png"))  # the same section twice
    whole = run([plain], detector, tmp_path / "plain.csv", manifest)
    summary = run([archive], detector, tmp_path / "archive.csv", manifest)
    got = pd.read_csv(tmp_path / "archive.csv")
    # Exactly the layers of the dark images, once each: no two rows of one type overlap in depth.
    pd.testing.assert_frame_equal(depth_rows(got), depth_rows(whole.table))
    for _, rows in got.groupby("type"):
        rows = rows.sort_values("depth_from_m")
        assert (rows["depth_from_m"].to_numpy()[1:] >= rows["depth_to_m"].to_numpy()[:-1]).all()
    assert list(got.columns[:8]) == ["image", "depth_from_m", "depth_to_m", "thickness_mm", "type", "score",
                                     "row_from", "row_to"]
    assert {"path", "section", "exposure"} <= set(got.columns)
    assert set(got["exposure"]) == {"dark"}
    status = pd.read_csv(summary.status, dtype={"section": str}).set_index("path")
    assert len(status) == 7  # every input image
    assert (status.loc[NAMES, "status"] == "processed").all()
    for name in NAMES:
        bright_name = Path(name).stem + "_1.png"
        assert status.loc[bright_name, "status"] == "skipped"
        assert "bright" in status.loc[bright_name, "reason"] and name in status.loc[bright_name, "reason"]
    assert status.loc["230.tif", "status"] == "skipped" and "duplicate of 230.png" in status.loc["230.tif", "reason"]
    assert summary.skipped == 4 and summary.images == 3


def test_without_the_dark_image_the_next_exposure_is_used_and_exposure_picks_others(detector, tmp_path):
    manifest = sample_manifest(tmp_path, extra_variants=("_1", "_2"))
    archive = tmp_path / "archive"
    archive.mkdir()
    image = read_gray(SAMPLE / "images" / "227.png")
    cv2.imwrite(str(archive / "227_2.png"), image)
    cv2.imwrite(str(archive / "227_1.png"), bright(image))
    summary = run([archive], detector, tmp_path / "a.csv", manifest)
    status = pd.read_csv(summary.status).set_index("path")
    assert status.loc["227_1.png", "status"] == "processed"  # bright comes before additional-2
    assert status.loc["227_2.png", "status"] == "skipped"
    summary = run([archive], detector, tmp_path / "b.csv", manifest, exposures=["additional-2"])
    assert set(pd.read_csv(tmp_path / "b.csv")["image"]) == {"227_2.png"}
    summary = run([archive], detector, tmp_path / "c.csv", manifest, exposures=["all"])
    assert set(pd.read_csv(summary.status)["status"]) == {"processed"}
    from meltloc.errors import MeltlocError

    with pytest.raises(MeltlocError, match="unknown exposure 'grey'"):
        run([archive], detector, tmp_path / "d.csv", manifest, exposures=["grey"])


def test_two_folders_with_the_same_names_are_told_apart_and_overlays_do_not_collide(detector, tmp_path):
    a, b = tmp_path / "scans" / "a", tmp_path / "scans" / "b"
    a.mkdir(parents=True)
    b.mkdir()
    for name in ("227.png", "230.png"):
        shutil.copy(SAMPLE / "images" / name, a / name)
    shutil.copy(SAMPLE / "images" / "227.png", b / "227.png")   # the same section again: a duplicate
    shutil.copy(SAMPLE / "images" / "233.png", b / "233.png")
    manifest = sample_manifest(tmp_path)
    summary = run([a, b], detector, tmp_path / "d.csv", manifest, overlays=tmp_path / "ov")
    got = pd.read_csv(tmp_path / "d.csv")
    assert set(got["path"]) == {"a/227.png", "a/230.png", "b/233.png"}
    status = pd.read_csv(summary.status).set_index("path")
    assert status.loc["b/227.png", "status"] == "skipped" and "duplicate of a/227.png" in status.loc["b/227.png",
                                                                                                      "reason"]
    assert any(p.kind == "image_duplicate" and "b/227.png" in str(p) for p in summary.problems)
    assert sorted(p.name for p in (tmp_path / "ov").glob("*.png")) == ["a__227.png", "a__230.png", "b__233.png"]


# ----------------------------------------------------------------------------------------------------------------------
# 2. A status for every image; 4. a bad file is a skipped file
# ----------------------------------------------------------------------------------------------------------------------

def test_no_melt_is_a_processed_image_with_0_detections_and_a_bad_file_is_failed(detector, tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(SAMPLE / "images" / "227.png", folder / "227.png")
    core = np.zeros((6800, 420), np.uint8)  # a clear core without any layer
    rng = np.random.default_rng(0)
    core[50:6650, 40:380] = rng.normal(170, 4, (6600, 340)).clip(0, 255).astype(np.uint8)
    cv2.imwrite(str(folder / "230.png"), core)
    shutil.copy(SAMPLE / "images" / "233.png", folder / "233.png")
    (folder / "236.png").write_text("not an image")
    denied = folder / "233.png"
    real_open = builtins.open

    def no_permission(file, *args, **kwargs):  # the tests run as root, where chmod 000 denies nothing
        if Path(str(file)) == denied:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    import meltloc.imageio

    monkeypatch.setattr(meltloc.imageio, "open", no_permission, raising=False)
    summary = run([folder], detector, tmp_path / "d.csv", sample_manifest(tmp_path, ()))
    status = pd.read_csv(summary.status).set_index("path")
    assert status.loc["227.png", "status"] == "processed" and status.loc["227.png", "detections"] > 0
    table = pd.read_csv(tmp_path / "d.csv")
    assert status.loc["230.png", "status"] == "processed"  # a clear core: a status row whatever it holds
    assert status.loc["230.png", "detections"] == (table["image"] == "230.png").sum()
    none = run([folder / "227.png"], detector, tmp_path / "none.csv", sample_manifest(tmp_path, ()), score_threshold=1.0)
    assert pd.read_csv(none.status)[["path", "status", "detections"]].values.tolist() == [["227.png", "processed", 0]]
    assert status.loc["233.png", "status"] == "failed" and "Permission denied" in status.loc["233.png", "reason"]
    assert "free some space" not in status.loc["233.png", "reason"]
    assert status.loc["236.png", "status"] == "failed" and "not a BMP, PNG, TIFF or JPEG" in status.loc["236.png",
                                                                                                        "reason"]
    assert summary.failed == 2 and summary.images == 2
    assert set(table["image"]) <= {"227.png", "230.png"}


def test_an_unreadable_image_does_not_stop_convert(tmp_path, monkeypatch):
    from meltloc.convert import ConvertConfig, convert
    import meltloc.imageio

    denied = SAMPLE / "images" / "230.png"
    real_open = builtins.open

    def no_permission(file, *args, **kwargs):
        if Path(str(file)) == denied:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(meltloc.imageio, "open", no_permission, raising=False)
    result = convert(SAMPLE / "images", SAMPLE / "sections.tab", SAMPLE / "features.csv", tmp_path / "conv",
                     ConvertConfig(px_per_mm=2, yolo=False, coco=False), show_progress=False)
    assert set(result.alignment["image"]) == {"227.png", "233.png"}
    assert any(p.kind == "image_unreadable" and "Permission denied" in p.message for p in result.problems)


@pytest.mark.parametrize("bits", [8, 10, 12, 16])
def test_16_bit_images_with_8_to_16_bit_data_give_the_layers_of_the_8_bit_original(detector, tmp_path, bits):
    folder = tmp_path / "imgs"
    folder.mkdir()
    image = read_gray(SAMPLE / "images" / "227.png").astype(np.uint16)
    wide = image * 257 if bits == 16 else image << (bits - 8)
    cv2.imwrite(str(folder / "227.png"), wide.astype(np.uint16))
    assert read_gray(folder / "227.png").dtype == np.uint16
    original = run([SAMPLE / "images" / "227.png"], detector, tmp_path / "a.csv", SAMPLE / "sections.tab")
    got = run([folder / "227.png"], detector, tmp_path / "b.csv", SAMPLE / "sections.tab")
    assert len(original.table) > 0
    a, b = depth_rows(got.table), depth_rows(original.table)
    # The same layers; a 16-bit image is resampled to the strip at 16 bits, so scores differ in the last digits.
    pd.testing.assert_frame_equal(a.drop(columns="score"), b.drop(columns="score"), atol=2e-5)
    assert np.abs(a["score"] - b["score"]).max() < 0.03


def test_a_dim_16_bit_scan_gives_the_layers_of_the_8_bit_original(detector, tmp_path):
    # A scanner set dim, writing 16-bit files: each 8-bit level becomes 3 of 65,535, so the core stands 1.5-1.9
    # levels above the black on the 8-bit scale (under the 4 the core finder asks for there, and its layers would
    # vanish in an 8-bit strip); a bright scratch across the scan makes it 16-bit data, in the strip too. Before,
    # no core was found in it, and its strip held the ice about 1 level above black.
    folder = tmp_path / "dim"
    folder.mkdir()
    for name in NAMES:
        dim = read_gray(SAMPLE / "images" / name).astype(np.uint16) * 3
        dim[dim.shape[0] // 2] = 65535
        cv2.imwrite(str(folder / name), dim)
    original = run([SAMPLE / "images" / n for n in NAMES], detector, tmp_path / "a.csv", SAMPLE / "sections.tab")
    got = run([folder / n for n in NAMES], detector, tmp_path / "b.csv", SAMPLE / "sections.tab")
    assert not got.failed
    a, b = depth_rows(got.table), depth_rows(original.table)
    assert len(b) >= 8
    pd.testing.assert_frame_equal(a.drop(columns="score"), b.drop(columns="score"), atol=2e-5)
    assert np.abs(a["score"] - b["score"]).max() < 0.03


def test_headers_are_checked_before_a_file_is_read_whole_and_oversized_images_are_refused(tmp_path, monkeypatch):
    import struct
    import zlib

    import meltloc.imageio
    from meltloc.errors import ImageReadError
    from meltloc.imageio import read_image

    junk = tmp_path / "junk.tif"
    with open(junk, "wb") as f:  # 3 GB of nothing (sparse): refused after its first bytes
        f.write(b"<html>not a tiff</html>")
        f.truncate(3 * 2 ** 30)
    monkeypatch.setattr(meltloc.imageio.np, "fromfile", lambda *a, **k: pytest.fail("the file was read whole"))
    t0 = time.perf_counter()
    with pytest.raises(ImageReadError, match="not a BMP, PNG, TIFF or JPEG file"):
        read_image(junk)
    assert time.perf_counter() - t0 < 1.0

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    huge = tmp_path / "huge.png"
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 40000, 200000, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    with pytest.raises(ImageReadError, match=r"40,000 x 200,000 px .* more than the 400,000,000 px"):
        read_image(huge)
    tif = tmp_path / "huge.tif"  # a TIFF header claiming 30,000 x 30,000 px
    ifd = struct.pack("<H", 2) + struct.pack("<HHII", 256, 4, 1, 30000) + struct.pack("<HHII", 257, 4, 1, 30000)
    tif.write_bytes(b"II*\x00" + struct.pack("<I", 8) + ifd + b"\x00" * 4)
    with pytest.raises(ImageReadError, match="30,000 x 30,000 px"):
        read_image(tif)


# ----------------------------------------------------------------------------------------------------------------------
# 3. Depths you can trust
# ----------------------------------------------------------------------------------------------------------------------

def test_a_manifest_typo_is_named_and_listed_in_the_status_file(detector, tmp_path):
    manifest = sample_manifest(tmp_path, (), scale={"230.png": 1.5})
    summary = run([SAMPLE / "images"], detector, tmp_path / "d.csv", manifest)
    outliers = [p for p in summary.problems if p.kind == "scale_outlier"]
    assert len(outliers) == 1 and "230.png" in str(outliers[0]) and "-33" in str(outliers[0])
    status = pd.read_csv(summary.status).set_index("path")
    assert status.loc["230.png", "scale_off_percent"] == pytest.approx(-33.3, abs=0.5)
    assert "off the median" in status.loc["230.png", "reason"]
    assert abs(status.loc["227.png", "scale_off_percent"]) < 1


def test_depths_in_cm_stop_the_run_and_a_far_too_long_section_is_not_processed(detector, tmp_path):
    from meltloc.errors import MeltlocError

    rows = [(r.image, r.top_m * 100, r.bottom_m * 100) for r in pd.read_csv(SAMPLE / "sections.csv").itertuples()]
    with pytest.raises(MeltlocError, match="165 m on median .* depths in cm"):
        run([SAMPLE / "images"], detector, tmp_path / "d.csv", write_manifest(tmp_path / "cm.tab", rows))
    assert not (tmp_path / "d.csv").exists() and not (tmp_path / "d.status.csv").exists()
    summary = run([SAMPLE / "images"], detector, tmp_path / "e.csv", sample_manifest(tmp_path, (),
                                                                                     scale={"233.png": 10}))
    too_long = [p for p in summary.problems if p.kind == "manifest_section_too_long"]
    assert len(too_long) == 1 and "233.png" in str(too_long[0]) and "16.50 m section" in too_long[0].message
    status = pd.read_csv(summary.status).set_index("path")
    assert status.loc["233.png", "status"] == "failed" and "a typo" in status.loc["233.png", "reason"]
    assert set(summary.table["image"]) == {"227.png", "230.png"} and summary.failed == 1


def test_a_manifest_of_another_core_stops_with_one_line(tmp_path):
    manifest = write_manifest(tmp_path / "other.tab", [("1000.png", 550.0, 551.65), ("1003.png", 551.65, 553.3)])
    result = run_cli("detect", SAMPLE / "images", "--sections", manifest, "--weights", WEIGHTS,
                     "--out", tmp_path / "d.csv", "-q", "--device", "cpu")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "none of the 3 image(s)" in errors[0] and "another core" in errors[0]
    assert not (tmp_path / "d.csv").exists()


def test_an_image_not_in_the_manifest_gets_no_depths_and_a_preview_is_no_section(detector, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    shutil.copy(SAMPLE / "images" / "227.png", folder / "227.png")
    shutil.copy(SAMPLE / "images" / "230.png", folder / "999.png")
    small = cv2.resize(read_gray(SAMPLE / "images" / "233.png"), None, fx=0.25, fy=0.25)
    cv2.imwrite(str(folder / "preview.jpg"), small)
    summary = run([folder], detector, tmp_path / "d.csv", SAMPLE / "sections.tab")
    got = pd.read_csv(tmp_path / "d.csv")
    assert got[got["image"] == "999.png"]["depth_from_m"].isna().all()
    assert got[got["image"] == "227.png"]["depth_from_m"].notna().all()
    assert any(p.kind == "image_not_in_manifest" and "999.png" in str(p) for p in summary.problems)
    status = pd.read_csv(summary.status).set_index("path")
    assert status.loc["preview.jpg", "status"] == "skipped" and "not a section image" in status.loc["preview.jpg",
                                                                                                    "reason"]


# ----------------------------------------------------------------------------------------------------------------------
# 5. Devices and workers
# ----------------------------------------------------------------------------------------------------------------------

def test_device_auto_picks_cuda_when_present(monkeypatch):
    import torch

    from meltloc.device import DeviceError, resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(DeviceError, match="no CUDA GPU"):
        resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == "cuda" and resolve_device(None) == "cuda" and resolve_device("cuda:0") == "cuda:0"
    with pytest.raises(DeviceError, match="1 CUDA GPU"):
        resolve_device("cuda:1")
    with pytest.raises(DeviceError, match="not a device"):
        resolve_device("gpu")


def test_a_device_that_is_not_there_is_one_line_and_exit_2(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = run_cli("detect", SAMPLE / "images" / "227.png", "--out", tmp_path / "d.csv", "--device", "cuda")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --device cuda: this machine has no CUDA GPU"), lines
    assert not (tmp_path / "d.csv").exists()


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.skipif(not _has_cuda(), reason="no CUDA GPU here (runs on a GPU machine)")
def test_on_a_gpu_the_regression_head_trains_combines_and_detects_as_on_the_cpu(tiny_trained, tmp_path,
                                                                                 monkeypatch):
    import torch

    from conftest import invoke_cli
    from meltloc.checkpoint import load_checkpoint
    from meltloc.heads import load_detector
    from meltloc.section import load_section

    conv, _ = tiny_trained
    weights = tmp_path / "gpu.pt"
    result = invoke_cli("train", "--head", "regression", "--data", conv, "--out", weights, "--epochs", 2,
                        "--steps-per-epoch", 2, "--batch", 2, "--members", 2, "--device", "cuda")
    assert result.returncode == 0, result.stderr
    checkpoint = load_checkpoint(weights)
    assert len(checkpoint["members"]) == 1 and checkpoint["train"]["device"] == "cuda"
    # the same networks on the GPU and the CPU give the same answer (full float32 on the GPU)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    section = load_section(SAMPLE / "images" / "227.png")
    (_, (probs_gpu, boxes_gpu)), (_, (probs_cpu, boxes_cpu)) = (
        load_detector(weights, device).predict(section) for device in ("cuda", "cpu"))
    assert probs_gpu.device.type == "cpu" and boxes_gpu.device.type == "cpu"
    assert torch.allclose(probs_gpu, probs_cpu, atol=1e-4) and torch.allclose(boxes_gpu, boxes_cpu, atol=1e-2)
    result = invoke_cli("detect", SAMPLE / "images" / "227.png", "--weights", weights, "--out", tmp_path / "d.csv",
                        "--device", "cuda", "--min-score", 0.001)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "d.csv").is_file()


@pytest.mark.parametrize("args", [["detect", "--device", "gpu"], ["train", "--head", "regression", "--device", "gpu"]],
                         ids=" ".join)
def test_an_unknown_device_is_refused_before_any_work(args, tmp_path):
    from typer.testing import CliRunner

    from meltloc.cli import app
    from meltloc.device import DeviceError

    if args[0] == "detect":
        args = [*args, str(SAMPLE / "images" / "227.png"), "--out", str(tmp_path / "d.csv")]
    else:
        args = [*args, "--data", str(tmp_path), "--out", str(tmp_path / "w.pt")]
    result = CliRunner().invoke(app, args)
    assert isinstance(result.exception, DeviceError)  # main() prints it as one line, exit 2
    assert "--device gpu: not a device" in str(result.exception) and "\n" not in str(result.exception)
    assert not (tmp_path / "d.csv").exists()


def test_two_workers_write_the_same_csv_and_status_as_one(detector, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rows = []
    for i in range(5):
        name = f"{300 + 3 * i}.png"
        shutil.copy(SAMPLE / "images" / NAMES[i % 3], folder / name)
        rows.append((name, 200 + 1.65 * i, 201.65 + 1.65 * i))
    (folder / "315.png").write_text("broken")
    rows.append(("315.png", 210.0, 211.65))
    manifest = write_manifest(tmp_path / "s.tab", rows)
    one = run([folder], detector, tmp_path / "one.csv", manifest, workers=1)
    two = run([folder], detector, tmp_path / "two.csv", manifest, workers=2)
    assert two.workers == 2 and one.workers == 1
    assert (tmp_path / "one.csv").read_bytes() == (tmp_path / "two.csv").read_bytes()
    drop = ["seconds"]
    pd.testing.assert_frame_equal(pd.read_csv(one.status).drop(columns=drop), pd.read_csv(two.status).drop(columns=drop))
    assert two.failed == 1


def test_workers_by_default_one_process_for_a_few_small_images(tmp_path):
    from meltloc.detect import auto_workers

    small = [SAMPLE / "images" / n for n in NAMES]
    assert auto_workers(small, cores=16) == 1
    big = tmp_path / "big.png"
    with open(big, "wb") as f:
        f.truncate(40 * 2 ** 20)
    assert auto_workers([big, big, big], cores=16) == 3 and auto_workers([big, big, big], cores=2) == 2
    assert auto_workers([big], cores=16) == 1


# ----------------------------------------------------------------------------------------------------------------------
# 7. Outputs people open
# ----------------------------------------------------------------------------------------------------------------------

def test_xlsx_output_is_a_real_workbook_and_other_suffixes_are_refused(detector, tmp_path):
    import openpyxl

    summary = run([SAMPLE / "images"], detector, tmp_path / "d.xlsx", SAMPLE / "sections.tab")
    book = openpyxl.load_workbook(tmp_path / "d.xlsx")
    sheet = book["detections"]
    header = [c.value for c in next(sheet.iter_rows(max_row=1))]
    assert header[:8] == ["image", "depth_from_m", "depth_to_m", "thickness_mm", "type", "score", "row_from",
                          "row_to"]
    assert sheet.max_row == len(summary.table) + 1
    assert (tmp_path / "d.status.csv").exists() and not (tmp_path / "d.xlsx.partial").exists()
    from meltloc.errors import OutputError

    with pytest.raises(OutputError, match=r"\.csv or \.xlsx"):
        run([SAMPLE / "images"], detector, tmp_path / "g.txt", SAMPLE / "sections.tab")


def test_the_console_shows_a_summary_flags_as_flags_warnings_once_and_whole_lines(tmp_path):
    folder = tmp_path / "a_rather_long_folder_name_that_would_be_wrapped_at_eighty_columns" / "images"
    folder.mkdir(parents=True)
    for i in range(9):
        shutil.copy(SAMPLE / "images" / NAMES[i % 3], folder / f"{500 + 3 * i}.png")
    shutil.copy(SAMPLE / "images" / "227.png", folder / "500_1.png")
    from typer.testing import CliRunner

    from meltloc.cli import app

    out = tmp_path / "d.csv"
    base = ["detect", str(folder), "--weights", str(WEIGHTS), "-q", "--min-score", "0.3", "--device", "cpu"]
    result = CliRunner().invoke(app, [*base, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert len(pd.read_csv(out)) > 30
    assert "melt features" not in result.stdout  # a long table is not printed
    last = result.stderr.strip().splitlines()[-1]
    assert "9 image(s) processed" in last and "1 skipped" in last and str(out) in last
    assert "d.status.csv" in last and "--table" in last
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == len(set(warnings))
    assert all(not line.startswith(" ") for line in result.stderr.splitlines())  # nothing wrapped
    shown = CliRunner().invoke(app, [*base, "--out", str(tmp_path / "e.csv"), "--table"])
    assert "melt features" in shown.stdout
    help_text = run_cli("detect", "--help").stdout
    assert "--resume" in help_text and "--workers" in help_text
    assert "<bool>" not in help_text  # every on/off option, --help too, shows as a flag
    flag = run_cli("detect", folder, "--weights", WEIGHTS, "--out", tmp_path / "f.csv", "--resume", "true")
    assert flag.returncode == 2 and "flags and take no value" in flag.stderr


def test_recursive_looks_into_subfolders(detector, tmp_path):
    from meltloc.errors import MeltlocError

    top = tmp_path / "archive"
    (top / "run1").mkdir(parents=True)
    (top / "run2").mkdir()
    shutil.copy(SAMPLE / "images" / "227.png", top / "run1" / "227.png")
    shutil.copy(SAMPLE / "images" / "230.png", top / "run2" / "230.png")
    with pytest.raises(MeltlocError, match="--recursive"):
        run([top], detector, tmp_path / "a.csv", SAMPLE / "sections.tab")
    summary = run([top], detector, tmp_path / "b.csv", SAMPLE / "sections.tab", recursive=True)
    assert set(pd.read_csv(summary.status)["path"]) == {"run1/227.png", "run2/230.png"}
    assert set(summary.table["path"]) == {"run1/227.png", "run2/230.png"}


EGRIP_TAB = Path(__file__).parents[2] / "shared/data/EGRIP_visual_strat.tab"


@pytest.mark.skipif(not EGRIP_TAB.exists(), reason="the real EastGRIP manifest is not beside the repository")
def test_the_real_manifest_gives_one_image_per_section_by_its_integration_and_focus(tmp_path):
    """Every file of 60 sections of the real manifest (dark, bright, additional, 24/32/40 mm focus), as empty files:
    planning reads no image."""
    from meltloc.detect import plan_images
    from meltloc.manifest import exposure_rank, read_manifest

    manifest = read_manifest(EGRIP_TAB)
    table = manifest.table
    sections = list(dict.fromkeys(table["section"]))[::20][:60]
    chosen = table[table["section"].isin(sections)]
    folder = tmp_path / "images"
    folder.mkdir()
    for name in chosen["image"]:
        (folder / name).write_bytes(b"")
    items, _ = plan_images([folder], manifest)
    used = [it for it in items if not it.status]
    assert len(items) == len(chosen) and sorted(it.section for it in used) == sorted(sections)
    for it in used:  # the best variant of its section by the documented rule
        rows = chosen[chosen["section"] == it.section]
        best = min(exposure_rank(e, f) for e, f in zip(rows["exposure"], rows["focus"]))
        assert exposure_rank(it.exposure, it.focus) == best
    assert any(it.exposure != "dark" for it in used)  # sections without a dark image are read too
    items, _ = plan_images([folder], manifest, exposures=["dark"])
    dark = [it for it in items if not it.status]
    assert len({it.section for it in dark}) == len(dark)  # one per section, also where 24 and 32 mm exist
    assert all(it.exposure == "dark" for it in dark)


def test_a_stopped_run_resumes_with_every_image_in_the_status_file(detector, tmp_path):
    class StopAfter:  # interrupted (as by Ctrl-C) on its third image
        head = detector.head

        def __init__(self):
            self.n = 2

        def detect(self, section, score_threshold=None):
            self.n -= 1
            if self.n < 0:
                raise KeyboardInterrupt
            return detector.detect(section, score_threshold=score_threshold)

    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in NAMES:
        shutil.copy(SAMPLE / "images" / name, folder / name)
    shutil.copy(SAMPLE / "images" / "227.png", folder / "227_1.png")
    whole = run([folder], detector, tmp_path / "whole.csv", SAMPLE / "sections.tab")
    with pytest.raises(KeyboardInterrupt):
        run([folder], StopAfter(), tmp_path / "out.csv", SAMPLE / "sections.tab", overwrite=False)
    resumed = run([folder], detector, tmp_path / "out.csv", SAMPLE / "sections.tab", resume=True)
    assert resumed.resumed == 2 and resumed.images == 1
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    cols = ["path", "status", "reason", "detections", "px_per_m", "scale_off_percent"]
    pd.testing.assert_frame_equal(pd.read_csv(resumed.status)[cols], pd.read_csv(whole.status)[cols])
    assert not (tmp_path / "out.csv.status.partial").exists()
