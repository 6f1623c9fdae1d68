"""`meltloc evaluate`: a detections CSV against a truth file, figures as a table, JSON or CSV.

The truth is one of

- an interval table: ``intervals.csv`` from ``meltloc convert`` or
  ``truth.csv`` from ``meltloc synth`` (columns ``image, type, depth_from_m,
  depth_to_m`` and optionally ``row_from, row_to, split``);
- a label table in the published melt-log format (read with
  :func:`meltloc.labels.read_labels`). Its rows name no image: with a
  section manifest each label goes to the image whose depth range holds its
  midpoint (shifted by that image's ``alignment.csv`` entry, if given);
  without one, everything is a single image ``all`` and predictions are
  matched by depth whatever their image.

Which images are scored:

- interval table: every image in the truth and every image in the
  detections (an image absent from the truth has no melt feature). With
  ``split``, only the images of that split, known from the truth and from
  the ``strips.csv`` of a convert output beside it (which also lists images
  without any feature); detections of images of unknown split are left out,
  with a warning.
- label table with a manifest: the detections' images (an image with no
  detection is not listed in the detections, so name such images in
  ``images`` to count their labels as missed).
- ``images`` restricts (or, for a label table, extends) the set; names match
  by file name, or by stem when that is unique (``227.png`` finds ``227.bmp``).

The figures themselves come from :func:`meltloc.metrics.evaluate_intervals`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from meltloc.atomic import write_csv, write_text
from meltloc.errors import EvaluationError, Problem
from meltloc.labels import read_labels
from meltloc.manifest import Manifest, read_manifest
from meltloc.metrics import (AP_IOUS, DARKNESS_BINS, PRED_REQUIRED, THICKNESS_BINS_MM, TRUTH_REQUIRED, EvalResult, ap_key,
                             evaluate_intervals, metric_keys, require_columns)
from meltloc.names import NameIndex

ALL_IMAGES = "all"
"""The one image of a label table scored without a manifest."""

ALIGNMENT_REQUIRED = ("image", "shift_mm")
_INTERVAL_HINTS = ("image", "depth_from_m", "depth_to_m", "row_from", "row_to")


# --------------------------------------------------------------------------- reading


def _read_csv(path: Path, what: str) -> pd.DataFrame:
    """A CSV (or TSV) file as a table of strings; blank cells are NaN."""
    if not path.is_file():
        raise EvaluationError(f"{what} not found", path)
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if not text.strip():
        raise EvaluationError(f"the {what} file is empty", path)
    sep = "\t" if "\t" in text.splitlines()[0] else ","
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, encoding="utf-8-sig", skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"not a table: {exc}", path) from exc
    table.columns = [str(c).strip() for c in table.columns]
    return table


def _base_names(values: pd.Series) -> pd.Series:
    """File names without folders (``images/227.bmp`` -> ``227.bmp``)."""
    return values.astype(str).str.strip().map(lambda v: Path(v.replace("\\", "/")).name)


def read_detections(path: str | Path) -> pd.DataFrame:
    """Read a detections CSV (CONTRACT.md: ``image, depth_from_m, depth_to_m,
    thickness_mm, type, score, row_from, row_to``).

    Blank depths (an image without a manifest entry) are NaN. Image names are
    reduced to file names.

    Raises:
        EvaluationError: the file is missing or empty, or lacks one of
            :data:`~meltloc.metrics.PRED_REQUIRED`.
    """
    path = Path(path)
    table = _read_csv(path, "detections")
    require_columns(table, PRED_REQUIRED, str(path))
    table["image"] = _base_names(table["image"])
    return table


def read_alignment(path: str | Path) -> dict[str, float]:
    """The shift in mm of each image from an ``alignment.csv`` (aligned = table depth + shift_mm / 1000).

    Raises:
        EvaluationError: the file is missing or lacks ``image`` or ``shift_mm``.
    """
    path = Path(path)
    table = _read_csv(path, "alignment")
    require_columns(table, ALIGNMENT_REQUIRED, str(path))
    shifts = pd.to_numeric(table["shift_mm"], errors="coerce")
    return {name: float(s) for name, s in zip(_base_names(table["image"]), shifts) if np.isfinite(s)}


def is_interval_table(path: str | Path) -> bool:
    """Whether a truth file is an interval table (rather than a label table).

    A CSV/TSV whose header names ``image`` or one of the ``*_m``/``row_*``
    columns is one; anything else (XLSX, the published columns) is a label table.
    """
    path = Path(path)
    if path.suffix.lower() in (".xlsx", ".xlsm", ".xls") or not path.is_file():
        return False
    with open(path, encoding="utf-8-sig", errors="replace") as f:
        header = f.readline()
    names = {c.strip().strip('"').lower() for c in header.replace("\t", ",").split(",")}
    return bool(names & set(_INTERVAL_HINTS))


def read_interval_truth(path: str | Path) -> pd.DataFrame:
    """Read ``intervals.csv`` / ``truth.csv``: the columns of
    :data:`~meltloc.metrics.TRUTH_REQUIRED` and whatever else it holds.

    Raises:
        EvaluationError: the file is missing or lacks a required column.
    """
    path = Path(path)
    table = _read_csv(path, "truth")
    require_columns(table, TRUTH_REQUIRED, str(path))
    table["image"] = _base_names(table["image"])
    return table


# --------------------------------------------------------------------------- image names


def _split_images(images: Sequence[str] | None) -> list[str]:
    """``["227.bmp,230.bmp", "233.bmp"]`` -> three names."""
    out: list[str] = []
    for item in images or []:
        out.extend(part.strip() for part in str(item).split(",") if part.strip())
    return out


def _rename_pred(pred: pd.DataFrame, names: NameIndex) -> pd.DataFrame:
    """Predictions with image names as the truth spells them (where one matches)."""
    pred = pred.copy()
    pred["image"] = [names.find(n) or n for n in pred["image"]]
    return pred


# --------------------------------------------------------------------------- truth assembly


def _interval_case(pred: pd.DataFrame, truth_path: Path, split: str | None, images: list[str],
                   problems: list[Problem]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions and truth of the scored images, truth an interval table."""
    truth = read_interval_truth(truth_path)
    names = NameIndex(truth["image"])
    pred = _rename_pred(pred, names)
    if split is not None:
        if "split" not in truth.columns:
            raise EvaluationError("has no 'split' column, so --split cannot be used", truth_path)
        in_split = truth["split"].astype(str).str.strip() == split
        if not in_split.any():
            have = ", ".join(sorted(set(truth["split"].dropna().astype(str))))
            raise EvaluationError(f"no row of split '{split}' (splits: {have})", truth_path)
        split_of = _splits_beside(truth_path)
        split_of.update(zip(truth["image"], truth["split"].astype(str).str.strip()))
        unknown = sorted(set(pred["image"]) - set(split_of), key=str)
        if unknown:
            problems.append(Problem("eval_unknown_split", str(truth_path), None,
                                    f"{len(unknown)} image(s) with detections are not in the truth, so their split "
                                    f"is unknown; left out: {', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}"))
        truth = truth[in_split]
        pred = pred[pred["image"].map(split_of) == split]
    if images:
        wanted = _resolve_wanted(images, list(truth["image"]) + list(pred["image"]), None)
        truth, pred = truth[truth["image"].isin(wanted)], pred[pred["image"].isin(wanted)]
    return pred, truth


def _splits_beside(truth_path: Path) -> dict[str, str]:
    """The split of every image of a convert output, from the ``strips.csv`` beside ``intervals.csv``.

    It also lists images without any melt feature, which ``intervals.csv``
    cannot; an empty dict when there is no such file.
    """
    strips = truth_path.parent / "strips.csv"
    if not strips.is_file():
        return {}
    try:
        table = pd.read_csv(strips, usecols=["image", "split"], dtype=str)
    except (ValueError, pd.errors.ParserError):
        return {}
    table = table.dropna()
    return dict(zip(_base_names(table["image"]), table["split"].str.strip()))


def _resolve_wanted(images: list[str], known: Iterable[str], manifest: Manifest | None) -> list[str]:
    """Canonical names of ``--images``; unknown names raise."""
    names = NameIndex(known)
    out, unknown = [], []
    for name in images:
        hit = names.find(name)
        if hit is None and manifest is not None:
            rec = manifest.find(name)
            hit = None if rec is None else str(rec["image"])
        if hit is None:
            unknown.append(name)
        else:
            out.append(hit)
    if unknown:
        raise EvaluationError(f"image(s) {', '.join(unknown)} appear in neither the detections, the truth nor the manifest")
    return out


def _label_case(pred: pd.DataFrame, truth_path: Path, sections: Path | None, alignment: Path | None,
                images: list[str], problems: list[Problem]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions and truth of the scored images, truth a label table."""
    labels = read_labels(truth_path)
    problems.extend(labels.problems)
    table = labels.table
    if sections is None:
        if alignment is not None:
            raise EvaluationError("--alignment needs --sections: shifts are per image, and labels are placed "
                                  "in images by the manifest")
        if images:
            problems.append(Problem("eval_images_ignored", "--images", None,
                                    "without --sections a label table is one image 'all'; --images is not used"))
        if pred["image"].nunique() > 1:
            problems.append(Problem("eval_one_image", str(truth_path), None,
                                    f"no --sections: the detections of {pred['image'].nunique()} images are matched "
                                    "to the labels by depth alone, and every label counts, also those of core "
                                    "that was not imaged"))
        truth = table.assign(image=ALL_IMAGES)[["image", "type", "depth_from_m", "depth_to_m"]]
        return pred.assign(image=ALL_IMAGES), truth
    manifest = read_manifest(sections)
    problems.extend(manifest.problems)
    shifts = read_alignment(alignment) if alignment is not None else None
    pred = pred.copy()
    found = [manifest.find(n) for n in pred["image"]]
    pred["image"] = [n if rec is None else str(rec["image"]) for n, rec in zip(pred["image"], found)]
    missing = sorted({n for n, rec in zip(pred["image"], found) if rec is None}, key=str)
    for name in missing:
        problems.append(Problem("eval_image_skipped", str(sections), None,
                                f"{name} is not in the manifest, so its labels are unknown; image skipped"))
    pred = pred[~pred["image"].isin(missing)]
    scored = list(dict.fromkeys(pred["image"]))
    if images:
        wanted = _resolve_wanted(images, scored, manifest)
        scored = [n for n in dict.fromkeys(wanted)]
        pred = pred[pred["image"].isin(scored)]
    used = np.zeros(len(table), dtype=bool)
    parts = []
    for name in scored:
        rec = manifest.find(name)
        shift_m = 0.0 if shifts is None else _shift_of(name, shifts, str(alignment), problems) / 1000
        part = table[["type", "depth_from_m", "depth_to_m"]].assign(image=name)
        part[["depth_from_m", "depth_to_m"]] += shift_m
        mid_m = (part["depth_from_m"] + part["depth_to_m"]) / 2
        inside = ((mid_m >= rec["top_m"]) & (mid_m <= rec["bottom_m"])).to_numpy()
        used |= inside
        parts.append(part[inside])
    outside = int((~used).sum())
    if outside:
        problems.append(Problem("eval_labels_outside", str(truth_path), None,
                                f"{outside} label(s) lie outside the scored images and are not counted"))
    truth = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["image", *TRUTH_REQUIRED[1:]])
    return pred, truth[["image", "type", "depth_from_m", "depth_to_m"]]


def _shift_of(image: str, shifts: dict[str, float], path: str, problems: list[Problem]) -> float:
    """The alignment shift of an image in mm (0, with a warning, when it has none)."""
    name = NameIndex(shifts).find(image)
    if name is None:
        problems.append(Problem("eval_no_shift", path, None, f"{image} has no shift; its labels are used unshifted"))
        return 0.0
    return shifts[name]


def evaluate_files(pred: str | Path, truth: str | Path, sections: str | Path | None = None,
                   alignment: str | Path | None = None, split: str | None = None,
                   images: Sequence[str] | None = None, iou: float = 0.5, lens_tol_mm: float = 5.0,
                   ap_points: str = "all", ignore_pad_mm: float = 5.0) -> EvalResult:
    """Score a detections CSV against a truth file (see the module docstring for the rules).

    Args:
        pred: detections CSV (CONTRACT.md columns).
        truth: ``intervals.csv``, ``truth.csv`` or a label table.
        sections: section manifest placing label-table rows in images.
        alignment: ``alignment.csv`` shifting label-table rows per image.
        split: only this split (interval tables with a ``split`` column).
        images: only (or, for a label table, also) these images; items may
            be comma-separated lists.
        iou: IoU threshold of precision, recall, F1 and boundary errors.
        lens_tol_mm: the largest distance of a lens hit, in mm.
        ap_points: ``"all"`` or ``"101"``.
        ignore_pad_mm: pad of point-like ignore regions, each side, in mm.

    Returns:
        The :class:`~meltloc.metrics.EvalResult`, its ``problems`` holding
        every row and image left out.

    Raises:
        EvaluationError: a file is missing or lacks columns, or the options
            do not fit the truth.
        LabelTableError, ManifestError: from reading those files.
    """
    pred_path, truth_path = Path(pred), Path(truth)
    problems: list[Problem] = []
    detections = read_detections(pred_path)
    wanted = _split_images(images)
    if is_interval_table(truth_path):
        if alignment is not None:
            problems.append(Problem("eval_alignment_ignored", str(alignment), None,
                                    "the truth is an interval table (already aligned); --alignment is not used"))
        if sections is not None:
            problems.append(Problem("eval_sections_ignored", str(sections), None,
                                    "the truth is an interval table (it names images); --sections is not used"))
        detections, truth_table = _interval_case(detections, truth_path, split, wanted, problems)
    else:
        if split is not None:
            raise EvaluationError("a label table has no splits; --split needs an intervals.csv", truth_path)
        detections, truth_table = _label_case(detections, truth_path, None if sections is None else Path(sections),
                                              None if alignment is None else Path(alignment), wanted, problems)
    result = evaluate_intervals(detections, truth_table, iou=iou, lens_tol_mm=lens_tol_mm, ap_points=ap_points,
                                ignore_pad_mm=ignore_pad_mm, pred_name=str(pred_path), truth_name=str(truth_path))
    result.problems[:0] = problems
    result.settings.update({"pred": str(pred_path), "truth": str(truth_path), "split": split})
    if result.overall["n_images"] == 0:
        raise EvaluationError(f"nothing to score: no image of {pred_path} or {truth_path} is left to compare")
    return result


# --------------------------------------------------------------------------- writing and showing


def save_json(result: EvalResult, path: str | Path) -> None:
    """Write :meth:`EvalResult.to_dict` as JSON (NaN as null), atomically."""
    write_text(path, json.dumps(result.to_dict(), indent=2) + "\n")


def result_table(result: EvalResult) -> pd.DataFrame:
    """One row for all images (``scope`` overall, ``image`` empty), then one per image (``scope`` image)."""
    keys = metric_keys()
    keys += [k for b in DARKNESS_BINS for k in (f"recall_{b}", f"n_truth_{b}") if k in result.overall]
    overall = pd.DataFrame([{"scope": "overall", "image": "", **{k: result.overall[k] for k in keys}}])
    per_image = result.per_image.assign(scope="image")
    return pd.concat([overall, per_image], ignore_index=True)[["scope", "image", *keys]]


def save_csv(result: EvalResult, path: str | Path) -> None:
    """Write :func:`result_table` as CSV, atomically."""
    write_csv(result_table(result), path)


def _fmt(value, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    return f"{value:.{digits}f}"


def render(result: EvalResult, per_image: bool = True) -> list:
    """Rich tables: the overall figures, then (optionally) one row per image."""
    from rich import box
    from rich.table import Table

    o = result.overall
    s = result.settings
    bins = list(THICKNESS_BINS_MM)
    head = Table(title=f"melt layers, {o['n_images']} image(s), IoU {s['iou']:g}", show_header=True)
    head.add_column("figure")
    head.add_column("value", justify="right")
    rows = [
        ("true / predicted layers", f"{o['n_truth']} / {o['n_pred']}"),
        ("tp / fp / fn / ignored", f"{o['tp']} / {o['fp']} / {o['fn']} / {o['n_ignored']}"),
        ("precision", _fmt(o["precision"])), ("recall", _fmt(o["recall"])), ("F1", _fmt(o["f1"])),
        *[(f"AP@{t:g}", _fmt(o[ap_key(t)])) for t in AP_IOUS],
        (f"mean AP ({s['ap_points']}-point)", _fmt(o["map"])),
        ("boundary error (mm)", _fmt(o["boundary_mm"], 2)),
        *[(f"  {b}: boundary mm / recall (n)",
           f"{_fmt(o[f'boundary_mm_{b}'], 2)} / {_fmt(o[f'recall_{b}'])} ({o[f'n_truth_{b}']})") for b in bins],
        *[(f"  {b} layers: recall (n)", f"{_fmt(o[f'recall_{b}'])} ({o[f'n_truth_{b}']})")
          for b in DARKNESS_BINS if f"recall_{b}" in o],
        (f"lenses: hit rate / precision ({s['lens_tol_mm']:g} mm)",
         f"{_fmt(o['lens_hit_rate'])} / {_fmt(o['lens_precision'])}"),
        ("  true / predicted lenses / hits", f"{o['n_lens_truth']} / {o['n_lens_pred']} / {o['lens_hits']}"),
    ]
    for name, value in rows:
        head.add_row(name, value)
    out = [head]
    if per_image and len(result.per_image):
        table = Table(title="per image (P, R, F1 at the IoU above; bnd: boundary mm; lens: hit rate)",
                      box=box.SIMPLE_HEAD, padding=(0, 1), collapse_padding=True, pad_edge=False)
        cols = [("image", "image", None), ("truth", "n_truth", 0), ("pred", "n_pred", 0), ("tp", "tp", 0),
                ("fp", "fp", 0), ("fn", "fn", 0), ("P", "precision", 3), ("R", "recall", 3), ("F1", "f1", 3),
                ("mAP", "map", 3), ("bnd", "boundary_mm", 2), ("lens", "lens_hit_rate", 3)]
        for title, _, _ in cols:
            table.add_column(title, justify="left" if title == "image" else "right", no_wrap=True)
        for rec in result.per_image.to_dict("records"):
            table.add_row(*[str(rec[key]) if digits is None else _fmt(rec[key], digits) for _, key, digits in cols])
        out.append(table)
    return out
