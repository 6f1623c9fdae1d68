"""`meltloc detect`: images in, melt intervals in meters out.

Rows are appended to ``<out>.partial`` as each image finishes, and the image
is then recorded in ``<out>.done``; at the end the partial file is renamed
onto ``<out>``. A crash or Ctrl-C loses nothing already finished, and
``resume=True`` continues where the last run stopped without redoing or
duplicating any image.

**A run knows itself.** ``<out>.run.json`` records what defines the run: the
checkpoint's SHA-256, the score threshold, the manifest's content, the
overlay folder and every input image with its size and modification time.
``resume=True`` with anything different is refused, naming the difference;
a lock (``<out>.lock``) keeps a second process off the same output; without
``resume`` an unfinished run is not thrown away unless ``overwrite``. Rows
end in ``\\n`` and a resumed file is byte-identical to an uninterrupted one.

**One answer per section.** The archive holds several images of one section
(``227.bmp`` dark, ``227_1.bmp`` bright, ...; the manifest's ``Integration``
column). By default one image per section is processed: the dark exposure
when present, else the next in the order dark, bright, additional-2, -3, -4
(:data:`meltloc.manifest.EXPOSURE_ORDER`), the standard focus first; the
others are skipped with the reason. ``exposures`` picks exposures instead
(one image per section and exposure; ``["all"]`` every variant). The same
section and exposure from two files (``227.png`` and ``227.tif``, or two
folders) is a duplicate: the first is used (the exact manifest name first),
the other skipped and reported. Rows carry the image's path relative to the
input and its section and exposure (columns after the eight of the contract).

**A status for every image**: ``<out stem>.status.csv`` beside the output
(:data:`STATUS_COLUMNS`): processed (0 detections means no melt found),
skipped (another exposure, a duplicate, not a section image) or failed
(unreadable, no core), with the reason, detections, seconds, the image's
scale in rows per meter and how far it is off the median of the run.

**Parallel**: ``workers`` > 1 runs images in that many processes, each with
its own model; at most ``2 * workers`` images are in flight and rows are
written in input order, so the CSV is the same as with one worker.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from meltloc.atomic import atomic_path
from meltloc.detections import to_depths
from meltloc.errors import ImageReadError, MeltlocError, OutputError, Problem
from meltloc.geometry import scale_outliers
from meltloc.heads.base import Head as Detector
from meltloc.imageio import is_image, list_images, read_image
from meltloc.interrupt import stop_if_asked
from meltloc.manifest import EXPOSURE_ORDER, Manifest, exposure_of, exposure_rank, section_of
from meltloc.names import natural_key
from meltloc.progress import progress
from meltloc.section import load_section

COLUMNS = ["image", "depth_from_m", "depth_to_m", "thickness_mm", "type", "score", "row_from", "row_to"]
#: Written after the eight contract columns: the image's path relative to the input, its section and exposure.
EXTRA_COLUMNS = ["path", "section", "exposure"]
OUT_COLUMNS = COLUMNS + EXTRA_COLUMNS
STATUS_COLUMNS = ["path", "image", "section", "exposure", "status", "reason", "detections", "seconds", "px_per_m",
                  "scale_off_percent"]
#: An image's rows per meter more than this far off the run's median gets a warning (as convert does).
SCALE_TOLERANCE = 0.05
#: A manifest section longer than this (m) is no real section (they are 1.65 m): depths in cm, or a typo.
MAX_SECTION_M = 2.5
OUTPUT_SUFFIXES = (".csv", ".xlsx")


def status_path(out: Path) -> Path:
    """Where the status of every image goes: ``<out stem>.status.csv`` beside ``out``."""
    out = Path(out)
    return out.with_name(out.stem + ".status.csv")


def check_output_suffix(out: Path) -> None:
    """``.csv`` or ``.xlsx``; anything else is refused (OutputError) before any work."""
    if Path(out).suffix.lower() not in OUTPUT_SUFFIXES:
        raise OutputError(f"detections are written as .csv or .xlsx, not '{Path(out).suffix or 'no suffix'}': "
                          "choose --out NAME.csv or NAME.xlsx", out)


def check_outputs(out: Path, inputs, overwrite: bool = False, resume: bool = False, option: str = "--out") -> None:
    """Before any work: ``out`` and its status file are writable, no input, and ``out`` replaces nothing unasked.

    Raises:
        OutputError: see :func:`meltloc.atomic.check_output` and :func:`check_output_suffix`.
    """
    from meltloc.atomic import check_output

    check_output(out, inputs=inputs, overwrite=overwrite, resume=resume, option=option)
    check_output_suffix(out)
    check_output(status_path(Path(out)), inputs=inputs, overwrite=True, option=f"{option} (its status file)")


@dataclass
class Item:
    """One input image and what the run does with it."""

    path: Path
    rel: str
    section: str
    exposure: str
    focus: str = "40mm"
    in_manifest: bool = False
    exact_name: bool = False
    status: str = ""
    reason: str = ""
    overlay: str | None = None


@dataclass
class DetectSummary:
    """What a detect run did."""

    out: Path
    images: int = 0
    skipped: int = 0
    failed: int = 0
    resumed: int = 0
    detections: int = 0
    seconds: float = 0.0
    problems: list[Problem] = field(default_factory=list)
    table: pd.DataFrame | None = None
    status: Path | None = None
    rows: int = 0
    workers: int = 1


def collect_images(inputs: list[Path], recursive: bool = False) -> tuple[list[Path], list[Problem]]:
    """Image files from files and folders (and their subfolders with ``recursive``), in order, without the same
    file twice."""
    found, problems = _collect(inputs, recursive)
    return [p for p, _ in found], problems


def _collect(inputs: list[Path], recursive: bool) -> tuple[list[tuple[Path, str]], list[Problem]]:
    """(file, its path relative to the input) pairs and the problems. With several inputs the paths are
    relative to their common folder, so that ``a/227.png`` and ``b/227.png`` stay apart."""
    inputs = [Path(i) for i in inputs]
    roots = [i if i.is_dir() else i.parent for i in inputs]
    try:
        base = Path(os.path.commonpath([str(r.resolve()) for r in roots])) if len(inputs) > 1 else None
    except ValueError:  # different drives
        base = None
    images, problems, seen = [], [], set()
    for item, root in zip(inputs, roots):
        if item.is_dir():
            if recursive:
                found = sorted((p for p in item.rglob("*") if p.is_file() and is_image(p)),
                               key=lambda p: natural_key(p.relative_to(item).as_posix()))
            else:
                found = list_images(item)
            if not found:
                problems.append(Problem("no_images", str(item), None, "folder holds no BMP, PNG, TIFF or JPEG image"
                                        + ("" if recursive else " (add --recursive to look into its subfolders)")))
        elif item.is_file():
            found = [item] if is_image(item) else []
            if not found:
                problems.append(Problem("not_an_image", str(item), None, "not a BMP, PNG, TIFF or JPEG file name"))
        else:
            problems.append(Problem("image_missing", str(item), None, "no such file or folder"))
            found = []
        for path in found:
            key = path.resolve()
            if key in seen:
                continue
            seen.add(key)
            if base is not None:
                rel = key.relative_to(base).as_posix() if key.is_relative_to(base) else path.name
            else:
                rel = path.relative_to(root).as_posix() if path.is_relative_to(root) else path.name
            images.append((path, rel))
    return images, problems


def plan_images(inputs: list[Path], manifest: Manifest | None, exposures: list[str] | None = None,
                recursive: bool = False) -> tuple[list[Item], list[Problem]]:
    """Every input image with its section and exposure, and which are processed (see the module docstring).

    Args:
        exposures: None: one image per section (dark first); names: only those exposures; ``["all"]``: every one.

    Raises:
        MeltlocError: an unknown exposure name.
    """
    found, problems = _collect(inputs, recursive)
    every = bool(exposures) and "all" in exposures
    wanted = None if not exposures or every else list(exposures)
    if wanted:
        unknown = [e for e in wanted if e not in EXPOSURE_ORDER]
        if unknown:
            raise MeltlocError(f"unknown exposure '{unknown[0]}': choose {', '.join(EXPOSURE_ORDER)} or all")
    selected = manifest.select(wanted) if manifest is not None else None
    items = []
    for path, rel in found:
        rec = manifest.find(path.name) if manifest is not None else None
        name = rec["image"] if rec is not None else path.name
        exposure = str(rec["exposure"]) if rec is not None and isinstance(rec["exposure"], str) else exposure_of(name)
        item = Item(path, rel, section_of(name), exposure or "dark",
                    str(rec["focus"]) if rec is not None and isinstance(rec["focus"], str) else "40mm",
                    rec is not None, rec is not None and rec["image"] == path.name)
        if manifest is not None and rec is None and not re.match(r"\s*\d", path.name):
            item.status, item.reason = "skipped", "not a section image: its name holds no section number and the " \
                                                  "manifest does not list it"
            problems.append(Problem("image_not_a_section", str(path), None, item.reason + "; skipped"))
        elif wanted and (selected.find(name) is None if rec is not None else exposure not in wanted):
            item.status, item.reason = "skipped", f"{exposure} exposure, not asked for (--exposure {' '.join(wanted)})"
        items.append(item)
    # Duplicates: the same section, exposure and focus from two files. The exact manifest name wins, then input order.
    by_variant: dict[tuple, list[Item]] = {}
    for item in items:
        if not item.status:
            by_variant.setdefault((item.section, item.exposure, item.focus), []).append(item)
    for group in by_variant.values():
        keep = sorted(group, key=lambda it: not it.exact_name)[0]
        for item in group:
            if item is not keep:
                item.status, item.reason = "skipped", f"duplicate of {keep.rel} (the same section {item.section}, " \
                                                      f"{item.exposure} exposure): used once"
                problems.append(Problem("image_duplicate", item.rel, None, item.reason))
    if not every:  # one image per section (per section and exposure with --exposure): the standard focus first
        by_section: dict[tuple, list[Item]] = {}
        for item in items:
            if not item.status:
                by_section.setdefault((item.section, item.exposure) if wanted else item.section, []).append(item)
        for group in by_section.values():
            keep = min(group, key=lambda it: exposure_rank(it.exposure, it.focus))
            for item in group:
                if item is not keep:
                    item.status = "skipped"
                    item.reason = (f"section {item.section} is read from {keep.rel} ({keep.exposure} exposure); this is "
                                   f"the {item.exposure}" + (f" ({item.focus} focus)" if item.focus != "40mm" else "")
                                   + " one (--exposure picks others)")
    others = [it for it in items if it.status == "skipped" and "exposure" in it.reason and "duplicate" not in it.reason]
    if others:
        problems.append(Problem("image_other_exposure", others[0].rel, None,
                                f"{others[0].reason}; {len(others)} image(s) of other exposures skipped in all, each "
                                "listed in the status file"))
    # Overlay names that cannot collide: the relative path, folders joined by '__'; the suffix kept when needed.
    names: set[str] = set()
    for item in items:
        if item.status:
            continue
        stem = item.rel.rsplit(".", 1)[0].replace("/", "__")
        name = stem + ".png"
        if name in names:
            name = item.rel.replace("/", "__").replace(".", "_") + ".png"
        names.add(name)
        item.overlay = name
    return items, problems


def _read(path: Path):
    """(image, None) or (None, the error): for the reader thread. Any OS error is the image's, not the run's."""
    try:
        return read_image(path), None
    except MeltlocError as exc:
        return None, exc
    except OSError as exc:
        return None, ImageReadError(f"cannot read: {exc.strerror or exc}", path)
    except MemoryError:
        return None, ImageReadError("not enough memory to decode it", path)


def _load(path: Path, manifest: Manifest | None):
    """(section, None, seconds) or (None, the error, seconds): read, decode and find the core (the reader's work,
    which overlaps the model's work on the image before)."""
    t0 = time.perf_counter()
    image, error = _read(path)
    section = None
    if error is None:
        try:
            section = load_section(path, manifest, image=image)
        except MeltlocError as exc:
            error = exc
        except MemoryError:
            error = ImageReadError("not enough memory to find its core", path)
    del image
    return section, error, time.perf_counter() - t0


def _fmt(value) -> str:
    if isinstance(value, float):
        if value != value:  # NaN: empty cell
            return ""
        return f"{value:.6f}" if abs(value) < 1e4 else f"{value:.2f}"
    return str(value)


def run_identity(inputs: list[Path], images: list[Path], weights: Path | None, manifest: Manifest | None,
                 score_threshold: float | None, overlays: Path | None, exposures: list[str] | None = None,
                 recursive: bool = False, end_refiner_sha256: str | None = None) -> dict:
    """What defines a detect run: a resumed run must have exactly this (see the module docstring).

    Kept small (it is written before any result, also on a nearly full disk): the images enter as their
    number and one SHA-256 over their paths, sizes and modification times.
    """
    from meltloc.checkpoint import file_sha256

    listing = hashlib.sha256()
    for p in images:
        st = p.stat()
        listing.update(f"{p.resolve()}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    table = manifest.table.to_csv(index=False) if manifest is not None else ""
    return {
        "weights": str(Path(weights).resolve()) if weights is not None else None,
        "weights_sha256": file_sha256(weights) if weights is not None and Path(weights).is_file() else None,
        "min_score": score_threshold,
        "sections": (manifest.path if manifest is not None else None),
        "sections_sha256": hashlib.sha256(table.encode()).hexdigest() if manifest is not None else None,
        "overlays": str(Path(overlays).resolve()) if overlays is not None else None,
        "inputs": [str(Path(p).resolve()) for p in inputs],
        "images": len(images),
        "images_sha256": listing.hexdigest(),
        "exposure": sorted(exposures) if exposures else None,
        "recursive": True if recursive else None,
        **({"end_refiner_sha256": end_refiner_sha256} if end_refiner_sha256 is not None else {}),
    }


def _difference(before: dict, now: dict) -> str | None:
    """The first difference between two run identities, in words; None when they are the same."""
    words = {"weights_sha256": "weights: the checkpoint file changed since",
             "sections_sha256": "sections: the manifest changed since",
             "images_sha256": "images: an image was added, removed or changed (size or modification time) since",
             "end_refiner_sha256": "end refinement: that run and this one differ in --refine-ends or its file"}
    for key in list(now) + [k for k in before if k not in now]:
        old, value = before.get(key), now.get(key)
        if old != value:
            return words.get(key, f"{key}: {old!r} then, {value!r} now")
    return None


@contextlib.contextmanager
def output_lock(out: Path):
    """Hold ``<out>.lock`` for the run; a second process on the same output is refused (OutputError)."""
    lock_path = out.with_name(out.name + ".lock")
    try:
        import fcntl
    except ImportError:  # no advisory locks on this system
        yield
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    f = open(lock_path, "a+")
    try:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise OutputError("another 'meltloc detect' is writing this output now (lock "
                              f"{lock_path.name}); wait for it to finish or choose another --out", out) from None
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                lock_path.unlink()
    finally:
        f.close()


def _keep_finished(partial: Path, done: set[str]) -> None:
    """Rewrite ``partial`` with only the rows of finished images, byte for byte as they were written."""
    with open(partial, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    header, body = (rows[0], rows[1:]) if rows else (OUT_COLUMNS, [])
    key = header.index("path") if "path" in header else 0
    with atomic_path(partial) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(header)
        writer.writerows(r for r in body if len(r) == len(header) and r[key] in done)


def _process(loaded, detector, manifest: Manifest | None, score_threshold: float | None,
             overlay: Path | None, end_refiner=None) -> dict:
    """Detect in one loaded section (from :func:`_load`): its formatted rows and status (one image's errors never
    stop the run). With ``end_refiner`` (:class:`meltloc.heads.ends.EndRefiner`) the melt layers' ends are moved
    after the head (its rows cleaned, then cleaned again as rows are written)."""
    section, error, load_seconds = loaded
    t0 = time.perf_counter()
    result = {"rows": [], "status": "processed", "reason": "", "px_per_m": None, "not_in_manifest": False}
    try:
        if error is not None:
            raise error
        found = detector.detect(section, score_threshold=score_threshold)
        if end_refiner is not None:
            found = end_refiner.refine(section, found)
    except MeltlocError as exc:
        result.update(status="failed", reason=exc.message, seconds=load_seconds + time.perf_counter() - t0)
        return result
    rows = to_depths(section, found)
    if manifest is None:
        for r in rows:
            r["depth_from_m"] = r["depth_to_m"] = r["thickness_mm"] = float("nan")
    result["rows"] = [[_fmt(r[c]) for c in COLUMNS] for r in rows]
    result["px_per_m"] = section.px_per_m
    result["not_in_manifest"] = manifest is not None and section.scale is None
    if overlay is not None:
        from meltloc.overlay import draw_overlay

        draw_overlay(section, rows, overlay, detector.head)
    result["seconds"] = load_seconds + time.perf_counter() - t0
    return result


_WORKER: dict = {}


def _worker_init(weights: str, device: str, trust: bool, threads: int, manifest, score_threshold,
                 end_refiner_path: str | None = None) -> None:
    """A worker process: its own model, one or ``threads`` torch threads; Ctrl-C is the main process's."""
    import signal

    import torch

    from meltloc.checkpoint import trusting
    from meltloc.heads import load_detector

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    with trusting(trust):
        _WORKER["detector"] = load_detector(Path(weights), device)
        if end_refiner_path is not None:
            from meltloc.heads.ends import load_end_refiner

            _WORKER["end_refiner"] = load_end_refiner(end_refiner_path)
    _WORKER.update(manifest=manifest, score_threshold=score_threshold)


def _worker_run(path: Path, overlay: Path | None) -> dict:
    return _process(_load(path, _WORKER["manifest"]), _WORKER["detector"], _WORKER["manifest"],
                    _WORKER["score_threshold"], overlay, _WORKER.get("end_refiner"))


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system tells it, else all)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def auto_workers(paths: list[Path], cores: int | None = None) -> int:
    """``--workers`` by default: every core for a real archive; one process for a few small images, where starting
    worker processes (each loads torch and the model, seconds) would cost more than it saves."""
    cores = cores or usable_cores()
    if len(paths) < 2 or cores < 2:
        return 1
    total = 0
    for p in paths:
        with contextlib.suppress(OSError):
            total += p.stat().st_size
    return min(cores, len(paths)) if total >= 64 * 2 ** 20 else 1


def _device_of(detector) -> str:
    """The torch device a loaded detector runs on (``cpu`` when it does not say)."""
    value = getattr(detector, "device", None)
    return "cpu" if value is None else str(value)


def detect_images(inputs: list[Path], detector: Detector, out: Path, manifest: Manifest | None = None,
                  overlays: Path | None = None, resume: bool = False, score_threshold: float | None = None,
                  show_progress: bool = True, threads: int | None = None, weights: Path | None = None,
                  overwrite: bool = True, exposures: list[str] | None = None, recursive: bool = False,
                  workers: int | None = 1, device: str | None = None, end_refiner=None) -> DetectSummary:
    """Run a detector over images and write the detections CSV (CONTRACT.md columns, then :data:`EXTRA_COLUMNS`)
    and the status of every image (:func:`status_path`).

    Args:
        inputs: image files and/or folders.
        detector: from :func:`meltloc.heads.load_detector`.
        out: CSV (or ``.xlsx``) to write.
        manifest: section depths; images without an entry get rows but no depths.
        overlays: folder for one PNG per image with the detections drawn.
        resume: continue an interrupted run into the same ``out``.
        score_threshold: keep detections scoring at least this (None: the head's own).
        threads: torch threads; None leaves one core to the image decoder (at least 1); 1 per worker process.
        weights: the checkpoint file, recorded (with its hash) in the run identity; worker processes load it.
        overwrite: False: refuse to start over an unfinished run (``<out>.partial``) or a finished ``out``.
        exposures: see :func:`plan_images`.
        recursive: look into subfolders.
        workers: processes (each with its own model); None: :func:`auto_workers`. More than one needs ``weights``
            and an ``end_refiner`` read from a file (worker processes load both); else one process runs
            (``DetectSummary.workers`` says how many ran).
        device: torch device of the worker processes' models (default: the detector's).
        end_refiner: an :class:`meltloc.heads.ends.EndRefiner` (from :func:`~meltloc.heads.ends.load_end_refiner`)
            moving each melt layer's ends after the head (``--refine-ends``); recorded in the run identity.

    Raises:
        MeltlocError: no image could be processed at all; no image is in the manifest.
        OutputError: another process holds the output; ``resume`` with another run identity; an unfinished
            run without ``resume`` or ``overwrite``; an output that is neither .csv nor .xlsx.
    """
    out = Path(out)
    check_output_suffix(out)
    partial, done_path = out.with_name(out.name + ".partial"), out.with_name(out.name + ".done")
    items, problems = plan_images(inputs, manifest, exposures, recursive)
    if not items:
        raise MeltlocError("no image to process" + (f" ({problems[0]})" if problems else ""))
    summary = DetectSummary(out=out, problems=(list(manifest.problems) if manifest is not None else []) + problems)
    if manifest is None:
        summary.problems.append(Problem("no_manifest", "--sections", None,
                                        "no manifest given: rows are written, depths are left empty"))
    else:
        chosen = [it for it in items if not it.status]
        if chosen and not any(it.in_manifest for it in chosen):
            raise MeltlocError(f"none of the {len(chosen)} image(s) to process is in the manifest {manifest.path} "
                               f"(first: {chosen[0].rel}): is it the manifest of another core? No depth could be "
                               "given; pass the right --sections, or none to get rows without depths")
        summary.problems.extend(_manifest_scale_problems(chosen, manifest))
    identity = run_identity(inputs, [it.path for it in items], weights, manifest, score_threshold, overlays,
                            exposures, recursive, end_refiner.sha256 if end_refiner is not None else None)
    with output_lock(out):
        return _detect_locked(items, detector, out, partial, done_path, identity, summary, manifest, overlays,
                              resume, overwrite, score_threshold, show_progress, threads, workers, weights, device,
                              end_refiner)


def _manifest_scale_problems(items: list[Item], manifest: Manifest) -> list[Problem]:
    """Manifest sections no real section can be (real ones are 1.65 m): far longer than that.

    Their images are not processed (failed, with the reason): their depths would be off by that factor and their
    strips that many times too long. When that is the median section (depths in cm) the run stops.

    Raises:
        MeltlocError: the median section of the manifest entries used is longer than :data:`MAX_SECTION_M`.
    """
    lengths = {}
    for it in items:
        if it.in_manifest:
            rec = manifest.find(it.path.name)
            lengths[it.rel] = (float(rec["top_m"]), float(rec["bottom_m"]))
    if not lengths:
        return []
    spans = sorted(b - t for t, b in lengths.values())
    median = spans[len(spans) // 2]
    if median > MAX_SECTION_M:
        raise MeltlocError(f"the manifest {manifest.path} gives sections of {median:g} m on median (real sections are "
                           "1.65 m long): are its depths in cm or mm? Depths in meters are needed; no image was "
                           "processed")
    out = []
    for it in items:
        if it.rel in lengths and lengths[it.rel][1] - lengths[it.rel][0] > MAX_SECTION_M:
            top, bottom = lengths[it.rel]
            it.status = "failed"
            it.reason = (f"the manifest gives it {top:g}-{bottom:g} m, a {bottom - top:.2f} m section (real sections "
                         "are 1.65 m): a typo? Not processed: its depths would be off by that factor")
            out.append(Problem("manifest_section_too_long", it.rel, None, it.reason))
    return out


def _read_status_partial(path: Path, done: set[str]) -> dict[str, dict]:
    records = {}
    with contextlib.suppress(OSError):
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(ValueError):
                rec = json.loads(line)
                if rec.get("path") in done:
                    records[rec["path"]] = rec
    return records


def _detect_locked(items, detector, out, partial, done_path, identity, summary, manifest, overlays, resume,
                   overwrite, score_threshold, show_progress, threads, workers, weights, device,
                   end_refiner=None) -> DetectSummary:
    run_path = out.with_name(out.name + ".run.json")
    status_partial = out.with_name(out.name + ".status.partial")
    done: set[str] = set()
    if resume and partial.exists() and done_path.exists():
        try:
            before = json.loads(run_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            before = None
        if before is None:
            raise OutputError(f"no record of the run to resume ({run_path.name} is missing or unreadable): pass "
                              "--overwrite to start again", out)
        diff = _difference(before, identity)
        if diff is not None:
            raise OutputError(f"--resume continues another run than this command ({diff}): rerun the command of "
                              "that run, or pass --overwrite instead of --resume to start again", out)
        done = set(done_path.read_text(encoding="utf-8").split("\n")) - {""}
        # Drop rows of an image that was being written when the run stopped.
        _keep_finished(partial, done)
        summary.resumed = len(done)
    else:
        if not overwrite and (partial.exists() or done_path.exists()):
            raise OutputError(f"an unfinished run left {partial.name}: continue it with --resume, or pass --overwrite "
                              "to throw its finished images away and start again", out)
        if not overwrite and resume and out.exists():
            raise OutputError("this run finished already (nothing to resume): pass --overwrite to run it again",
                              out)
        out.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(run_path) as tmp:
            tmp.write_text(json.dumps(identity), encoding="utf-8")
        with open(partial, "w", newline="", encoding="utf-8") as f:
            csv.writer(f, lineterminator="\n").writerow(OUT_COLUMNS)
        done_path.write_text("", encoding="utf-8")
        status_partial.write_text("", encoding="utf-8")
    records = _read_status_partial(status_partial, done)
    if overlays is not None:
        Path(overlays).mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    todo = [it for it in items if not it.status and it.rel not in done]
    n_workers = auto_workers([it.path for it in todo]) if workers is None else max(1, min(int(workers), len(todo)))
    if weights is None or (end_refiner is not None and end_refiner.path is None):
        n_workers = 1  # worker processes load the checkpoint files
    summary.workers = n_workers
    import torch

    torch.set_num_threads(threads or max(1, (os.cpu_count() or 2) - 1))

    def overlay_of(item: Item) -> Path | None:
        return None if overlays is None else Path(overlays) / item.overlay

    try:
        with open(partial, "a", newline="", encoding="utf-8") as f, \
                open(done_path, "a", encoding="utf-8") as done_f, \
                open(status_partial, "a", encoding="utf-8") as status_f:
            writer = csv.writer(f, lineterminator="\n")
            bar = progress(range(len(todo)), "detect", total=len(todo), enabled=show_progress, unit="image")

            def record(item: Item, result: dict) -> None:
                rec = {"path": item.rel, "status": result["status"], "reason": result["reason"],
                       "detections": len(result["rows"]), "seconds": round(result.get("seconds", 0.0), 3),
                       "px_per_m": result["px_per_m"]}
                if result["status"] != "processed":
                    summary.problems.append(Problem("image_failed", str(item.path), None, result["reason"]))
                    summary.failed += 1
                    records[item.rel] = rec
                    status_f.write(json.dumps(rec) + "\n")
                    status_f.flush()
                    return
                if result["not_in_manifest"]:
                    rec["reason"] = "not in the manifest: rows written, depths left empty"
                    summary.problems.append(Problem("image_not_in_manifest", str(item.path), None, rec["reason"]))
                writer.writerows(r + [item.rel, item.section, item.exposure] for r in result["rows"])
                f.flush()
                os.fsync(f.fileno())
                records[item.rel] = rec
                status_f.write(json.dumps(rec) + "\n")
                status_f.flush()
                done_f.write(item.rel + "\n")
                done_f.flush()
                summary.images += 1
                summary.detections += len(result["rows"])

            if n_workers > 1:
                _run_pool(todo, n_workers, record, bar, overlay_of, weights, device or _device_of(detector),
                          threads or 1, manifest, score_threshold,
                          None if end_refiner is None else str(end_refiner.path))
            else:
                # Decoding and core finding (the slowest steps) of the next image overlap with the model's work
                # on this one; at most two images are in memory at once.
                with ThreadPoolExecutor(max_workers=1) as pool:
                    pending = pool.submit(_load, todo[0].path, manifest) if todo else None
                    for i in bar:
                        stop_if_asked()
                        loaded = pending.result()
                        pending = pool.submit(_load, todo[i + 1].path, manifest) if i + 1 < len(todo) else None
                        result = _process(loaded, detector, manifest, score_threshold, overlay_of(todo[i]),
                                          end_refiner)
                        del loaded
                        record(todo[i], result)
    except (OSError, OutputError) as exc:  # a full disk; --resume drops rows of images not in .done, as after a kill
        if isinstance(exc, OutputError):  # an overlay (written atomically) could not be written
            what, why = exc.path, str(exc.__cause__.strerror or exc.__cause__) if exc.__cause__ else exc.message
        else:
            what, why = exc.filename or "the detections", exc.strerror or str(exc)
        raise OutputError(f"cannot write {what} ({why}); the {summary.images + summary.resumed} "
                          "image(s) finished are kept: free some space and rerun the same command with --resume",
                          partial) from exc
    summary.seconds = time.time() - t0
    summary.skipped = sum(1 for it in items if it.status == "skipped")
    summary.failed += sum(1 for it in items if it.status == "failed")  # refused before the run (manifest)
    summary.status = status_path(out)
    _scale_check(items, records, manifest, summary)
    _write_status(items, records, summary.status)
    if summary.images + summary.resumed == 0:
        for path in (partial, done_path, run_path, status_partial):  # nothing finished: nothing to resume
            path.unlink(missing_ok=True)
        failed = [p for p in summary.problems if p.kind == "image_failed"]
        raise MeltlocError(f"no image could be processed ({failed[-1] if failed else summary.problems[-1]}; every "
                           f"image's status is in {summary.status})" if summary.problems
                           else "no image could be processed")
    table = pd.read_csv(partial)
    if out.suffix.lower() == ".xlsx":
        with atomic_path(out) as tmp:
            table.to_excel(tmp, index=False, sheet_name="detections", engine="openpyxl")
        partial.unlink()
    else:
        os.replace(partial, out)
    for path in (done_path, run_path, status_partial):
        path.unlink(missing_ok=True)
    summary.table = table
    summary.rows = len(table)
    return summary


def _run_pool(todo, n_workers, record, bar, overlay_of, weights, device, threads, manifest, score_threshold,
              end_refiner_path: str | None = None) -> None:
    """Images in ``n_workers`` processes, at most two per worker in flight, recorded in input order."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    from meltloc.checkpoint import _trust

    pool = ProcessPoolExecutor(max_workers=n_workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_worker_init,
                               initargs=(str(weights), device, bool(_trust["on"]), threads, manifest, score_threshold,
                                         end_refiner_path))
    pending: deque = deque()
    queue = iter(todo)
    try:
        def fill() -> None:
            while len(pending) < 2 * n_workers:
                item = next(queue, None)
                if item is None:
                    return
                pending.append((item, pool.submit(_worker_run, item.path, overlay_of(item))))

        fill()
        while pending:
            stop_if_asked()
            item, future = pending.popleft()
            try:
                result = future.result()
            except BrokenProcessPool as exc:
                raise MeltlocError(f"a worker process died while reading {item.rel} (out of memory?); the images "
                                   "finished are kept: rerun the same command with --resume and fewer --workers") \
                    from exc
            fill()
            record(item, result)
            bar.update(1)
    finally:
        for _, future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)
    bar.close()


def _scale_check(items: list[Item], records: dict[str, dict], manifest: Manifest | None,
                 summary: DetectSummary) -> None:
    """Images whose rows per meter are off the run's median (a manifest typo): warn, naming each."""
    px = {rel: rec["px_per_m"] for rel, rec in records.items()
          if rec["status"] == "processed" and rec.get("px_per_m")}
    if not px:
        return
    import numpy as np

    ref = float(np.median(list(px.values())))
    for rel, rec in records.items():
        if rel in px:
            rec["scale_off_percent"] = round(100.0 * (px[rel] / ref - 1.0), 2)
    for rel, off in scale_outliers(px, SCALE_TOLERANCE).items():
        msg = (f"{rel}: {px[rel]:.0f} rows per meter is {off:+.1%} off the median {ref:.0f} of this run's images: "
               "its depths are off by that factor; check its manifest depths and core ends")
        summary.problems.append(Problem("scale_outlier", rel, None, msg))
        rec = records[rel]
        rec["reason"] = "; ".join(r for r in (rec.get("reason"), "scale " + msg.split(": ", 1)[1]) if r)


def _write_status(items: list[Item], records: dict[str, dict], path: Path) -> None:
    """One row per input image, in input order."""
    rows = []
    for it in items:
        rec = records.get(it.rel, {})
        status = it.status or rec.get("status", "not run")
        reason = it.reason if it.status else "; ".join(r for r in (it.reason, rec.get("reason")) if r)
        px = rec.get("px_per_m")
        rows.append({"path": it.rel, "image": it.path.name, "section": it.section, "exposure": it.exposure,
                     "status": status, "reason": reason,
                     "detections": rec.get("detections", 0) if status == "processed" else "",
                     "seconds": rec.get("seconds", "") if status != "skipped" else "",
                     "px_per_m": "" if px is None else round(px, 2),
                     "scale_off_percent": rec.get("scale_off_percent", "")})
    from meltloc.atomic import write_csv

    write_csv(pd.DataFrame(rows, columns=STATUS_COLUMNS), path)
