"""`meltloc detect`: images in, melt intervals in meters out.

Rows are appended to ``<out>.partial`` as each image finishes, and the image
is then recorded in ``<out>.done``; at the end the partial file is renamed
onto ``<out>``. A crash or Ctrl-C loses nothing already finished, and
``resume=True`` continues where the last run stopped without redoing or
duplicating any image.
"""

from __future__ import annotations

import csv
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from meltloc.detectors import Detector, to_depths
from meltloc.atomic import write_csv
from meltloc.errors import MeltlocError, OutputError, Problem
from meltloc.imageio import is_image, list_images, read_image
from meltloc.manifest import Manifest
from meltloc.progress import progress
from meltloc.section import load_section

COLUMNS = ["image", "depth_from_m", "depth_to_m", "thickness_mm", "type", "score", "row_from", "row_to"]


@dataclass
class DetectSummary:
    """What a detect run did."""

    out: Path
    images: int = 0
    skipped: int = 0
    resumed: int = 0
    detections: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)
    table: pd.DataFrame | None = None


def collect_images(inputs: list[Path]) -> tuple[list[Path], list[Problem]]:
    """Image files from files and folders, in order, without duplicates."""
    images, problems, seen = [], [], set()
    for item in inputs:
        item = Path(item)
        if item.is_dir():
            found = list_images(item)
            if not found:
                problems.append(Problem("no_images", str(item), None, "folder holds no BMP, PNG, TIFF or JPEG image"))
        elif item.is_file():
            found = [item] if is_image(item) else []
            if not found:
                problems.append(Problem("not_an_image", str(item), None, "not a BMP, PNG, TIFF or JPEG file name"))
        else:
            problems.append(Problem("image_missing", str(item), None, "no such file or folder"))
            found = []
        for path in found:
            key = path.resolve()
            if key not in seen:
                seen.add(key)
                images.append(path)
    return images, problems


def _read(path: Path):
    """(image, None) or (None, the error): for the reader thread."""
    try:
        return read_image(path), None
    except MeltlocError as exc:
        return None, exc


def _fmt(value) -> str:
    if isinstance(value, float):
        if value != value:  # NaN: empty cell
            return ""
        return f"{value:.6f}" if abs(value) < 1e4 else f"{value:.2f}"
    return str(value)


def detect_images(inputs: list[Path], detector: Detector, out: Path, manifest: Manifest | None = None,
                  overlays: Path | None = None, resume: bool = False, score_threshold: float | None = None,
                  show_progress: bool = True, threads: int | None = None) -> DetectSummary:
    """Run a detector over images and write the detections CSV (CONTRACT.md columns).

    Args:
        inputs: image files and/or folders.
        detector: from :func:`meltloc.detectors.load_detector`.
        out: CSV to write.
        manifest: section depths; images without an entry get rows but no depths.
        overlays: folder for one PNG per image with the detections drawn.
        resume: continue an interrupted run into the same ``out``.
        score_threshold: keep detections scoring at least this (None: the head's own).
        threads: torch threads; None leaves one core to the image decoder (at least 1).

    Raises:
        MeltlocError: no image could be processed at all.
    """
    out = Path(out)
    partial, done_path = out.with_name(out.name + ".partial"), out.with_name(out.name + ".done")
    images, problems = collect_images(inputs)
    if not images:
        raise MeltlocError("no image to process" + (f" ({problems[0]})" if problems else ""))
    summary = DetectSummary(out=out, problems=(list(manifest.problems) if manifest is not None else []) + problems)
    if manifest is None:
        summary.problems.append(Problem("no_manifest", "--sections", None,
                                        "no manifest given: rows are written, depths are left empty"))
    done: set[str] = set()
    if resume and partial.exists() and done_path.exists():
        done = set(done_path.read_text(encoding="utf-8").split("\n")) - {""}
        # Drop rows of an image that was being written when the run stopped.
        kept = pd.read_csv(partial, dtype={"image": str}, keep_default_na=False) if partial.stat().st_size else None
        if kept is not None:
            write_csv(kept[kept["image"].isin(done)], partial)
        summary.resumed = len(done)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(partial, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerow(COLUMNS)
        done_path.write_text("", encoding="utf-8")
    if overlays is not None:
        Path(overlays).mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    todo = [p for p in images if p.name not in done]
    import torch

    torch.set_num_threads(threads or max(1, (os.cpu_count() or 2) - 1))
    # Decoding (the slowest step) of the next image overlaps with the work on this one;
    # at most two images are in memory at once.
    pool = ThreadPoolExecutor(max_workers=1)
    pending = pool.submit(_read, todo[0]) if todo else None
    try:
        with pool, open(partial, "a", newline="", encoding="utf-8") as f, \
                open(done_path, "a", encoding="utf-8") as done_f:
            writer = csv.writer(f)
            bar = progress(todo, "detect", total=len(todo), enabled=show_progress, unit="image")
            for i, path in enumerate(bar):
                image, error = pending.result()
                pending = pool.submit(_read, todo[i + 1]) if i + 1 < len(todo) else None
                try:
                    if error is not None:
                        raise error
                    section = load_section(path, manifest, image=image)
                    del image
                    found = detector.detect(section, score_threshold=score_threshold)
                except MeltlocError as exc:
                    summary.problems.append(Problem(type(exc).__name__, str(path), None, exc.message))
                    summary.skipped += 1
                    continue
                if manifest is not None and section.scale is None:
                    summary.problems.append(Problem("image_not_in_manifest", str(path), None,
                                                    "not in the manifest: rows written, depths left empty"))
                rows = to_depths(section, found)
                if manifest is None:
                    for r in rows:
                        r["depth_from_m"] = r["depth_to_m"] = r["thickness_mm"] = float("nan")
                writer.writerows([[_fmt(r[c]) for c in COLUMNS] for r in rows])
                f.flush()
                os.fsync(f.fileno())
                done_f.write(path.name + "\n")
                done_f.flush()
                summary.images += 1
                summary.detections += len(rows)
                if overlays is not None:
                    from meltloc.overlay import draw_overlay

                    draw_overlay(section, rows, Path(overlays) / (path.stem + ".png"), detector.head)
                del section
    except OSError as exc:  # a full disk; --resume drops rows of images not yet in .done, as after a kill
        what = exc.filename or "the detections"
        raise OutputError(f"cannot write {what} ({exc.strerror or exc}); the {summary.images + summary.resumed} "
                          "image(s) finished are kept: free some space and rerun the same command with --resume",
                          partial) from exc
    summary.seconds = time.time() - t0
    if summary.images + summary.resumed == 0:
        raise MeltlocError(f"no image could be processed ({summary.problems[-1]})" if summary.problems
                           else "no image could be processed")
    os.replace(partial, out)
    done_path.unlink(missing_ok=True)
    summary.table = pd.read_csv(out)
    return summary
