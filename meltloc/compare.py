"""`meltloc compare`: every model on the same test sections, one table.

The steps, each usable on its own:

1. :func:`load_test_set`: the test split of a convert output: its image
   files, the depth of each section, and the true intervals (the convert
   output's ``intervals.csv``, or any interval table such as a synth
   ``truth.csv``).
2. :func:`load_heads`: every checkpoint as a detector (all are loaded, and
   so checked, before any work starts).
3. :func:`run_heads`: each section is decoded once and handed to every
   detector in turn, which is asked for two sets of detections:

   * the **operating** set, at the head's own score threshold (chosen on the
     validation sections when it was trained): exactly what ``meltloc
     detect`` writes. It gives F1, precision, recall, boundary error, recall
     by thickness and lens hits, and it is the one timed: **seconds per
     section** is the median wall time of the head's prediction plus its
     decoding at the operating threshold over the sections (so the first
     call's set-up does not count). Reading and decoding the image and
     finding the core are timed once per section and reported apart
     (``decode_seconds``).
   * the **ranking** set, at a low threshold (``ap_min_score``, 0.05): every
     candidate with its score, for the mean AP over IoU 0.3-0.7, decoded
     from the same prediction, untimed; when a head's threshold is at or
     below ``ap_min_score`` the operating set serves for both.

   The operating detections are not filtered from the ranking set because
   what a head does with a threshold is its own business: the regression
   head decodes (1-D NMS, boundary voting) among the candidates above it, so
   its output depends on it weakly; the slice classifiers decide windows at
   their operating threshold whatever is passed and use a passed threshold
   as a floor on interval scores, so filtering their low-threshold output at
   the window threshold would drop intervals ``meltloc detect`` keeps. Every
   head predicts once (:meth:`~meltloc.heads.base.Head.predict`) and decodes
   at both thresholds; the prediction and the operating decoding are timed.

4. :func:`score_head`: the figures of one head with
   :func:`meltloc.metrics.evaluate_intervals`, its size and training time
   from the checkpoint, and (for the slice classifiers) the slice accuracy
   on the same split.
5. :func:`write_report`: ``compare.csv``, ``compare.md``, the detections of
   every head and three PNG figures (:data:`FIGURES`).

Example:
    >>> result = run_compare("conv", ["reg.pt", "yolo.pt"], "report",
    ...                      images="core/images")  # doctest: +SKIP
    >>> result.table[["head", "f1", "map", "seconds_per_section"]]  # doctest: +SKIP
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from meltloc import IGNORE_TYPES, MELT_LAYER, MELT_LENS
from meltloc.atomic import atomic_path, write_csv, write_text
from meltloc.errors import CheckpointError, DatasetError, EvaluationError, MeltlocError, Problem
from meltloc.imageio import list_images, read_image
from meltloc.manifest import COLUMNS as MANIFEST_COLUMNS
from meltloc.manifest import Manifest, exposure_of, read_manifest, section_of, variant_of
from meltloc.metrics import DARKNESS_BINS, THICKNESS_BINS_MM, evaluate_intervals
from meltloc.names import NameIndex
from meltloc.progress import progress
from meltloc.section import Section, load_section

if TYPE_CHECKING:  # torch is imported only once inputs are checked, so that a bad input fails fast
    from meltloc.heads.base import Head as Detector
    from meltloc.heads.ends import EndRefiner

DETECTION_COLUMNS = ["image", "depth_from_m", "depth_to_m", "thickness_mm", "type", "score", "row_from", "row_to"]
"""The columns of ``meltloc detect`` (CONTRACT.md), of the detections written per head."""

AP_MIN_SCORE = 0.05
"""Score threshold of the ranking call that the mean AP is computed from."""

TABLE_COLUMNS = ["head", "weights", "f1", "map", "boundary_mm", "recall_lt1mm", "lens_hit_rate", "slice_accuracy",
                 "seconds_per_section", "parameters", "train_seconds", "score_threshold", "precision", "recall",
                 "n_truth", "n_pred", *[f"recall_{b}" for b in THICKNESS_BINS_MM if b != "lt1mm"],
                 *[f"n_truth_{b}" for b in THICKNESS_BINS_MM], "n_lens_truth", "sections",
                 *[f"recall_{b}" for b in DARKNESS_BINS], *[f"n_truth_{b}" for b in DARKNESS_BINS]]
"""Columns of ``compare.csv``, one row per checkpoint."""

TITLES = {
    "head": "head", "f1": "F1 @ IoU 0.5", "map": "mAP 0.3-0.7", "boundary_mm": "boundary mm",
    "recall_lt1mm": "recall <1 mm", "recall_faint": "recall faint", "recall_medium": "recall medium",
    "recall_dark": "recall dark", "lens_hit_rate": "lens hits", "slice_accuracy": "slice acc.",
    "seconds_per_section": "s / section", "parameters": "parameters", "train_seconds": "training",
}
"""The columns of the printed and Markdown table, with their titles."""

FIGURES = {"section": "section_{stem}.png", "speed": "f1_vs_speed.png", "thickness": "recall_by_thickness.png"}
"""File names of the figures in the report folder."""

BIN_TITLES = {"lt1mm": "< 1 mm", "1to3mm": "1-3 mm", "3to10mm": "3-10 mm", "gt10mm": "> 10 mm"}


# --------------------------------------------------------------------------- the test sections


@dataclass
class SplitSections:
    """The sections every head is run on.

    Attributes:
        data_dir: the convert output.
        split: the split used (``test``).
        images: image files of the split, in ``strips.csv`` order.
        manifest: depths of every image (``--sections``, or those convert recorded in ``strips.csv``).
        truth: true intervals of these images (columns ``image, type, depth_from_m, depth_to_m`` and more).
        truth_name: where the truth came from.
        manifest_name: where the depths came from.
    """

    data_dir: Path
    split: str
    images: list[Path]
    manifest: Manifest
    truth: pd.DataFrame
    truth_name: str
    manifest_name: str


def _strip_table(data_dir: Path) -> pd.DataFrame:
    from meltloc.strip_dataset import read_strip_table

    if not data_dir.is_dir():
        raise DatasetError("not found: pass a 'meltloc convert' output folder as --data", data_dir)
    return read_strip_table(data_dir)


def manifest_from_strips(strips: pd.DataFrame, name: str) -> Manifest:
    """A manifest of the depths convert recorded for each image (``strips.csv``: ``top_m``, ``bottom_m``)."""
    rows = [{"image": str(r.image), "top_m": float(r.top_m), "bottom_m": float(r.bottom_m),
             "section": section_of(r.image), "variant": variant_of(r.image), "exposure": exposure_of(r.image),
             "focus": "40mm", "line": i + 2} for i, r in enumerate(strips.itertuples())]
    return Manifest(pd.DataFrame(rows, columns=MANIFEST_COLUMNS), name)


def _resolve_images(names: list[str], strips: pd.DataFrame, images: Path | None, data_dir: Path) -> list[Path]:
    """The image file of each test image, from ``images`` (a folder) or the paths convert recorded."""
    if images is None:
        if "path" not in strips.columns:
            raise DatasetError("the convert output does not record where its images are: pass --images DIR "
                               "(the folder given to 'meltloc convert --images')", data_dir)
        recorded = dict(zip(strips["image"].astype(str), strips["path"].astype(str)))
        paths = [Path(recorded[n]) for n in names]
        missing = [str(p) for p in paths if not p.is_file()]
        if missing:
            raise DatasetError(f"{len(missing)} test image(s) recorded by convert are gone (first: {missing[0]}); "
                               "pass --images DIR", data_dir)
        return paths
    images = Path(images)
    if not images.is_dir():
        raise DatasetError("image folder not found (--images takes the folder given to 'meltloc convert --images')",
                           images)
    files = list_images(images)
    by_name = {p.name: p for p in files}
    index = NameIndex(by_name)  # exact name, else unique stem: 227.png finds 227.bmp
    found = {n: by_name.get(index.find(n)) for n in names}
    missing = [n for n, p in found.items() if p is None]
    if missing:
        raise DatasetError(f"{len(missing)} of the {len(names)} test image(s) are not in this folder: "
                           f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}", images)
    return [found[n] for n in names]


def _read_truth(path: Path, names: list[str]) -> pd.DataFrame:
    """An interval table's rows of the given images (names matched exactly, else by unique stem)."""
    from meltloc.evaluate import is_interval_table, read_interval_truth

    if not path.is_file():
        raise EvaluationError("truth file not found", path)
    if not is_interval_table(path):
        raise EvaluationError("not an interval table (columns image, type, depth_from_m, depth_to_m): pass a "
                              "convert intervals.csv or a synth truth.csv; a label table must be converted first",
                              path)
    table = read_interval_truth(path)
    index = NameIndex(names)
    table = table.assign(image=[index.find(n) for n in table["image"]])
    table = table[table["image"].notna()]
    known = table["type"].astype(str).str.strip().str.lower().isin((MELT_LAYER, MELT_LENS, *IGNORE_TYPES))
    return table[known].reset_index(drop=True)  # other kinds (a synth truth's cracks) are not scored


def load_test_set(data_dir: str | Path, images: str | Path | None = None, sections: str | Path | None = None,
                  truth: str | Path | None = None, split: str = "test") -> SplitSections:
    """The sections of one split of a convert output, with their depths and true intervals.

    Args:
        data_dir: a ``meltloc convert`` output (``strips.csv``, ``intervals.csv``).
        images: the folder of the original images (convert's ``--images``); None: the
            paths convert recorded in ``strips.csv``, where it did.
        sections: a section manifest; None: the depths convert recorded in ``strips.csv``.
        truth: an interval table (``truth.csv`` of synth, or another ``intervals.csv``);
            None: ``DIR/intervals.csv``.
        split: which split.

    Raises:
        DatasetError: not a convert output, no image in the split, or images not found.
        EvaluationError, ManifestError: a truth or manifest file that cannot be used.
    """
    data_dir = Path(data_dir)
    strips = _strip_table(data_dir)
    mine = strips[strips["split"].astype(str).str.strip() == split]
    if mine.empty:
        have = ", ".join(sorted(set(strips["split"].dropna().astype(str)))) or "none"
        raise DatasetError(f"no section in the '{split}' split (splits: {have}); convert with --test > 0",
                           data_dir / "strips.csv")
    names = [str(n) for n in mine["image"]]
    if truth is None:
        truth_path = data_dir / "intervals.csv"
        if not truth_path.is_file():
            raise DatasetError("no intervals.csv: is this a complete 'meltloc convert' output folder?", data_dir)
    else:
        truth_path = Path(truth)
    truth_table = _read_truth(truth_path, names)
    if sections is None:
        manifest, manifest_name = manifest_from_strips(mine, str(data_dir / "strips.csv")), "strips.csv (convert)"
    else:
        manifest, manifest_name = read_manifest(sections), str(sections)
    files = _resolve_images(names, mine, None if images is None else Path(images), data_dir)
    unlisted = [p.name for p in files if manifest.find(p.name) is None]
    if unlisted:
        raise DatasetError(f"{len(unlisted)} test image(s) have no depths in the manifest: {', '.join(unlisted[:5])}",
                           manifest_name)
    return SplitSections(data_dir, split, files, manifest, truth_table, str(truth_path), manifest_name)


# --------------------------------------------------------------------------- the heads


@dataclass
class Head:
    """One checkpoint under comparison.

    Attributes:
        label: its name in the table and the figures (the head; with the file stem when heads repeat).
        weights: the checkpoint file.
        detector: from :func:`meltloc.heads.load_detector`.
        score_threshold: the head's operating threshold.
        operating, ranking: detection rows (CONTRACT.md columns) of the two calls.
        seconds: wall time of each timed operating call, one per section.
        end_refiner: moves each melt layer's ends after the head (``--refine-ends``: the row "+ ends"), or None.
    """

    label: str
    weights: Path
    detector: Detector
    score_threshold: float
    end_refiner: EndRefiner | None = None
    operating: list[dict] = field(default_factory=list)
    ranking: list[dict] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def head(self) -> str:
        return self.detector.head


def labels_for(heads: Sequence[str], weights: Sequence[Path]) -> list[str]:
    """Row names: the head, or ``head (file stem)`` when a head appears more than once (numbered if still equal)."""
    labels = [h if list(heads).count(h) == 1 else f"{h} ({Path(w).stem})" for h, w in zip(heads, weights)]
    seen: dict[str, int] = {}
    out = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        out.append(label if labels.count(label) == 1 else f"{label} #{seen[label]}")
    return out


def load_heads(weights: Sequence[str | Path], device: str = "cpu", end_refiner=None) -> list[Head]:
    """Every checkpoint as a detector, in the order given; with ``end_refiner``
    (:class:`~meltloc.heads.ends.EndRefiner`) each is followed by itself with its melt layers' ends moved
    (labelled ``<label> + ends``).

    Raises:
        MeltlocError: no checkpoint given.
        CheckpointError: a file is missing, not a meltloc checkpoint, or of a head this version cannot run.
    """
    if not weights:
        raise MeltlocError("no checkpoint to compare: pass --weights A.pt B.pt ...")
    paths = [Path(w) for w in weights]
    for p in paths:  # every file before the slow loading of any
        if not p.is_file():
            raise CheckpointError("weights file not found; train one with 'meltloc train' or pass --weights", p)
    from meltloc.heads import load_detector

    detectors = [load_detector(p, device) for p in paths]
    labels = labels_for([d.head for d in detectors], paths)
    heads = []
    for label, p, d in zip(labels, paths, detectors):
        heads.append(Head(label, p, d, d.score_threshold))
        if end_refiner is not None:
            heads.append(Head(f"{label} + ends", p, d, d.score_threshold, end_refiner))
    return heads


def _detect(head: Head, section: Section, thresholds: list[float | None],
            problems: list[Problem]) -> tuple[list[list[dict]], float]:
    """Detection rows of ``section`` at each threshold (None: the head's own) and the seconds of the first.

    The head predicts once; the timed call is its prediction plus the decoding at the first threshold (and, with
    an end refiner, the moving of those rows' ends).
    """
    from meltloc.detections import to_depths

    detector = head.detector
    out, seconds = [], 0.0
    try:
        t0 = time.perf_counter()
        prediction = detector.predict(section)
        found = [detector.decode(prediction, detector.threshold_for(thresholds[0]))]
        if head.end_refiner is not None:
            found = [head.end_refiner.refine(section, found[0])]
        seconds = time.perf_counter() - t0
        found += [detector.decode(prediction, detector.threshold_for(t)) for t in thresholds[1:]]
        if head.end_refiner is not None:
            found = found[:1] + [head.end_refiner.refine(section, rows) for rows in found[1:]]
    except MeltlocError as exc:
        problems.append(Problem("compare_detect_failed", str(section.path), None,
                                f"{head.label} failed on {section.name} ({exc.message}); counted as no detection"))
        found = [[] for _ in thresholds]
        seconds = float("nan")
    for rows in found:
        out.append(to_depths(section, rows))
    return out, seconds


@dataclass
class RunStats:
    """What :func:`run_heads` measured besides the detections.

    Attributes:
        sections: names of the sections every head was run on.
        decode_seconds: per section, reading and decoding the image and finding the core.
        problems: sections skipped, detectors that failed.
    """

    sections: list[str] = field(default_factory=list)
    decode_seconds: list[float] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def run_heads(test: SplitSections, heads: list[Head], ap_min_score: float = AP_MIN_SCORE,
              show_progress: bool = True) -> RunStats:
    """Run every head on every section of ``test``; fills each head's detections and timings.

    Each section is read once and handed to every head in turn (see the module
    docstring for the two calls and what is timed).
    """
    stats = RunStats()
    bar = progress(test.images, "compare", total=len(test.images), enabled=show_progress, unit="section")
    for path in bar:
        t0 = time.perf_counter()
        try:
            section = load_section(path, test.manifest, image=read_image(path))
        except MeltlocError as exc:
            stats.problems.append(Problem("compare_section_skipped", str(path), None, f"{exc.message}; skipped"))
            continue
        stats.decode_seconds.append(time.perf_counter() - t0)
        stats.sections.append(section.name)
        for head in heads:
            one_call = head.score_threshold is not None and head.score_threshold <= ap_min_score
            thresholds = [None] if one_call else [None, ap_min_score]
            found, seconds = _detect(head, section, thresholds, stats.problems)
            head.operating += found[0]
            head.ranking += found[-1]
            head.seconds.append(seconds)
        del section
    if not stats.sections:
        first = f" ({stats.problems[0]})" if stats.problems else ""
        raise DatasetError(f"no test section could be read{first}", test.data_dir)
    return stats


# --------------------------------------------------------------------------- figures of one head


def model_facts(detector: Detector) -> tuple[float, float]:
    """(parameters, training seconds) of a checkpoint; NaN where it does not record them.

    Parameters come from ``checkpoint["train"]["parameters"]``, else from the head.
    """
    train = detector.checkpoint.get("train") or {}
    params = train.get("parameters")
    if params is None:
        params = detector.parameters()
    seconds = train.get("seconds")
    return (float("nan") if params is None else float(params),
            float("nan") if seconds is None else float(seconds))


def extra_figures_of(detector: Detector, test: SplitSections, device: str = "cpu") -> tuple[dict, str]:
    """Figures only some heads have (the slice classifiers' slice accuracy) on the test split, and why none
    when the head has some but they could not be computed."""
    try:
        return detector.extra_figures(test.data_dir, test.split, device), ""
    except DatasetError as exc:
        return {}, f"no {detector.head} figures of its own ({exc.message})"


def _median_seconds(seconds: list[float]) -> float:
    """Median seconds of the timed calls (NaN when none succeeded): the first call's set-up does not count."""
    ok = [s for s in seconds if np.isfinite(s)]
    return float(np.median(ok)) if ok else float("nan")


def _table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=DETECTION_COLUMNS)


def score_head(head: Head, test: SplitSections, stats: RunStats, device: str = "cpu") -> tuple[dict, list[Problem]]:
    """One row of the comparison table (keys :data:`TABLE_COLUMNS`) and the notes it gave."""
    truth = test.truth[test.truth["image"].isin(stats.sections)]
    operating = evaluate_intervals(_table(head.operating), truth, pred_name=head.label, truth_name=test.truth_name)
    ranking = evaluate_intervals(_table(head.ranking), truth, pred_name=head.label, truth_name=test.truth_name)
    o = operating.overall
    params, train_seconds = model_facts(head.detector)
    if head.end_refiner is not None:  # the row's model is the head and the end refiner's networks
        params += sum(p.numel() for net in head.end_refiner.nets for p in net.parameters())
    extra, why = extra_figures_of(head.detector, test, device)
    accuracy = float(extra.get("slice_accuracy", float("nan")))
    problems = [p for p in operating.problems if p.kind != "eval_unknown_type"]
    if why:
        problems.append(Problem("compare_no_slice_accuracy", str(head.weights), None, f"{head.label}: {why}"))
    row = {"head": head.label, "weights": str(head.weights), "f1": o["f1"], "map": ranking.overall["map"],
           "boundary_mm": o["boundary_mm"], "recall_lt1mm": o["recall_lt1mm"], "lens_hit_rate": o["lens_hit_rate"],
           "slice_accuracy": accuracy, "seconds_per_section": _median_seconds(head.seconds),
           "parameters": params, "train_seconds": train_seconds,
           "score_threshold": np.nan if head.score_threshold is None else head.score_threshold,
           "sections": len(stats.sections)}
    row.update({k: o.get(k, np.nan) for k in TABLE_COLUMNS if k not in row})  # darkness only when the truth has it
    return row, problems


# --------------------------------------------------------------------------- the report


@dataclass
class CompareResult:
    """What a compare run wrote.

    Attributes:
        table: one row per checkpoint, columns :data:`TABLE_COLUMNS`.
        out: the report folder.
        files: ``csv``, ``markdown``, the figures (:data:`FIGURES` keys) and ``detections`` (a folder).
        notes: how the figures were obtained (also in the Markdown).
        decode_seconds: mean time to read and decode a section and find its core.
        problems: sections skipped, detectors that failed, figures left out.
    """

    table: pd.DataFrame
    out: Path
    files: dict[str, Path]
    notes: list[str]
    decode_seconds: float
    problems: list[Problem] = field(default_factory=list)


def fmt_value(key: str, value) -> str:
    """A table cell as printed: NaN as ``-``, sizes and times in readable units."""
    if value is None or (isinstance(value, (float, np.floating)) and not np.isfinite(value)):
        return "-"
    if key == "head":
        return str(value)
    if key == "parameters":
        v = float(value)
        return f"{v / 1e6:.2f} M" if v >= 1e5 else f"{v / 1e3:.1f} k" if v >= 1e3 else f"{v:.0f}"
    if key == "train_seconds":
        v = float(value)
        return f"{v / 60:.1f} min" if v >= 60 else f"{v:.0f} s"
    if key == "seconds_per_section":
        v = float(value)
        return f"{v:.3f}" if v < 10 else f"{v:.1f}"
    if key == "boundary_mm":
        return f"{float(value):.2f}"
    return f"{float(value):.3f}"


def markdown_table(table: pd.DataFrame) -> str:
    """The :data:`TITLES` columns as a Markdown table."""
    keys = list(TITLES)
    lines = ["| " + " | ".join(TITLES[k] for k in keys) + " |",
             "|" + "|".join("---" if k == "head" else "---:" for k in keys) + "|"]
    for rec in table.to_dict("records"):
        lines.append("| " + " | ".join(fmt_value(k, rec[k]) for k in keys) + " |")
    return "\n".join(lines)


RICH_TITLES = {"head": "head", "f1": "F1\nIoU 0.5", "map": "mAP\n0.3-0.7", "boundary_mm": "boundary\nmm",
               "recall_lt1mm": "recall\n<1 mm", "recall_faint": "recall\nfaint", "recall_medium": "recall\nmedium",
               "recall_dark": "recall\ndark", "lens_hit_rate": "lens\nhits", "slice_accuracy": "slice\nacc.",
               "seconds_per_section": "s /\nsection", "parameters": "param.", "train_seconds": "training"}


def render_table(result: CompareResult):
    """The comparison as a rich table (the :data:`TITLES` columns; about 100 characters wide)."""
    from rich import box
    from rich.table import Table

    n = int(result.table["sections"].iloc[0]) if len(result.table) else 0
    table = Table(title=f"{n} test section(s); s / section: detection only (decoding: {result.decode_seconds:.2f} s "
                        "per section)", box=box.SIMPLE_HEAD, padding=(0, 1))
    for key in TITLES:
        table.add_column(RICH_TITLES[key], justify="left" if key == "head" else "right", no_wrap=True)
    for rec in result.table.to_dict("records"):
        table.add_row(*[fmt_value(k, rec[k]) for k in TITLES])
    return table


def _notes(test: SplitSections, stats: RunStats, heads: list[Head], ap_min_score: float, device: str) -> list[str]:
    import torch

    thresholds = ", ".join(f"{h.label} {h.score_threshold:.2f}" if h.score_threshold is not None
                           else f"{h.label} (its own)" for h in heads)
    return [
        f"Test sections: the '{test.split}' split of {test.data_dir} ({len(stats.sections)} section(s): "
        f"{', '.join(stats.sections)}); depths from {test.manifest_name}; truth from {test.truth_name}.",
        f"F1 (IoU 0.5), boundary error, recall by thickness and lens hit rate are of each head's detections at its "
        f"own operating threshold ({thresholds}), as 'meltloc detect' writes them.",
        f"Mean AP (IoU 0.3, 0.4, 0.5, 0.6, 0.7; all-point) is of a second decoding at score >= {ap_min_score:g}; "
        "heads whose threshold is at or below that use one for both.",
        "Seconds per section: median wall time of a head's prediction and its decoding at the operating threshold "
        f"on a decoded section ({torch.get_num_threads()} torch thread(s), device {device}; each head predicts once "
        "and decodes both runs from it); "
        "reading and decoding the image and finding the core are excluded and "
        f"take {np.mean(stats.decode_seconds):.2f} s per section on average.",
        "Parameters and training time are those the checkpoint records (training time: wall time of training "
        "and validation); '-' where it records none. Slice accuracy is only defined for the slice classifiers.",
    ]


def write_report(table: pd.DataFrame, notes: list[str], heads: list[Head], test: SplitSections, stats: RunStats,
                 out: Path, figure_image: str | None = None) -> tuple[dict[str, Path], list[Problem]]:
    """Write ``compare.csv``, ``compare.md``, ``detections/<head>.csv`` and the figures into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files = {"csv": out / "compare.csv", "markdown": out / "compare.md", "detections": out / "detections"}
    write_csv(table[TABLE_COLUMNS], files["csv"])
    for head in heads:
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in head.label)
        write_csv(_table(head.operating), files["detections"] / f"{name}.csv")
    problems: list[Problem] = []
    try:
        files.update(draw_figures(table, heads, test, stats, out, figure_image))
    except ImportError as exc:  # matplotlib missing: the table is still worth having
        problems.append(Problem("compare_no_figures", str(out), None, f"figures left out ({exc})"))
    md = ["# meltloc compare", "", markdown_table(table), ""] + [f"- {n}" for n in notes]
    figs = [(k, files[k]) for k in FIGURES if k in files]
    if figs:
        md += ["", "## Figures", ""] + [f"![{k}]({p.name})" for k, p in figs]
    write_text(files["markdown"], "\n".join(md) + "\n")
    return files, problems


def run_compare(data_dir: str | Path, weights: Sequence[str | Path], out: str | Path,
                images: str | Path | None = None, sections: str | Path | None = None,
                truth: str | Path | None = None, ap_min_score: float = AP_MIN_SCORE, device: str = "cpu",
                figure_image: str | None = None, show_progress: bool = True, end_refiner=None) -> CompareResult:
    """Run every checkpoint on the test split of a convert output and write the report.

    Args:
        data_dir: a ``meltloc convert`` output.
        weights: checkpoints of any heads.
        out: report folder (created).
        images, sections, truth: see :func:`load_test_set`.
        ap_min_score: score threshold of the ranking call (mean AP).
        device: torch device of every head.
        figure_image: the section drawn in the strip figure (default: the one with most true layers).
        end_refiner: see :func:`load_heads` (``--refine-ends``).

    Raises:
        DatasetError, CheckpointError, EvaluationError, ManifestError: bad inputs, all checked
            before any detector runs.
    """
    if not 0 < ap_min_score < 1:
        raise MeltlocError(f"the AP score threshold must be in (0, 1), not {ap_min_score}")
    if not weights:
        raise MeltlocError("no checkpoint to compare: pass --weights A.pt B.pt ...")
    test = load_test_set(data_dir, images, sections, truth)
    heads = load_heads(weights, device, end_refiner)
    stats = run_heads(test, heads, ap_min_score, show_progress)
    rows, problems = [], list(stats.problems)
    for head in heads:
        row, notes = score_head(head, test, stats, device)
        rows.append(row)
        problems += notes
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    notes = _notes(test, stats, heads, ap_min_score, device)
    files, fig_problems = write_report(table, notes, heads, test, stats, Path(out), figure_image)
    return CompareResult(table, Path(out), files, notes, float(np.mean(stats.decode_seconds)),
                         problems + fig_problems)


# --------------------------------------------------------------------------- figures


def _pick_section(test: SplitSections, stats: RunStats, figure_image: str | None) -> Path:
    """The image drawn in the strip figure: the one asked for, else the one with most true melt layers."""
    by_name = {p.name: p for p in test.images if p.name in stats.sections}
    if figure_image is not None:
        hit = by_name.get(Path(figure_image).name) or next(
            (p for p in by_name.values() if p.stem == Path(figure_image).stem), None)
        if hit is None:
            raise DatasetError(f"--figure-image {figure_image} is not among the test sections "
                               f"({', '.join(by_name)})")
        return hit
    layers = test.truth[test.truth["type"].astype(str).str.strip().str.lower() == MELT_LAYER]
    counts = layers["image"].value_counts()
    return max(by_name.values(), key=lambda p: (int(counts.get(p.name, 0)), -list(by_name).index(p.name)))


def draw_figures(table: pd.DataFrame, heads: list[Head], test: SplitSections, stats: RunStats, out: Path,
                 figure_image: str | None = None) -> dict[str, Path]:
    """The three PNG figures (:data:`FIGURES`); returns their paths by key."""
    from meltloc.overlay import draw_comparison

    path = _pick_section(test, stats, figure_image)
    section = load_section(path, test.manifest)
    truth = test.truth[test.truth["image"] == section.name]
    lanes = {h.label: [r for r in h.operating if r["image"] == section.name] for h in heads}
    files = {"section": out / FIGURES["section"].format(stem=path.stem)}
    draw_comparison(section, _truth_rows(truth, section), lanes, files["section"],
                    title=f"{section.name}: truth and each head at its operating threshold")
    files["speed"] = out / FIGURES["speed"]
    plot_f1_vs_speed(table, files["speed"])
    files["thickness"] = out / FIGURES["thickness"]
    plot_recall_by_thickness(table, files["thickness"])
    return files


def _truth_rows(truth: pd.DataFrame, section: Section) -> list[dict]:
    """True intervals as rows of the section's image (from their depths; a point gets its row)."""
    rows = []
    if section.scale is None:
        return rows
    for rec in truth.itertuples():
        d0 = float(rec.depth_from_m)
        d1 = float(rec.depth_to_m) if pd.notna(rec.depth_to_m) else d0
        r0, r1 = (float(v) for v in section.scale.depth_to_row([d0, d1]))
        rows.append({"type": str(rec.type).strip().lower(), "row_from": r0, "row_to": r1})
    return rows


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")


def plot_f1_vs_speed(table: pd.DataFrame, path: str | Path) -> None:
    """F1 at IoU 0.5 against seconds per section, one labelled point per head (log time axis)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    secs = table["seconds_per_section"].to_numpy(float)
    f1 = np.nan_to_num(table["f1"].to_numpy(float), nan=0.0)
    ax.scatter(secs, f1, s=60, c=[f"C{i}" for i in range(len(table))], zorder=3)
    for label, x, y in zip(table["head"], secs, f1):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(6, 5), fontsize=9)
    positive = secs[secs > 0]
    if positive.size and positive.max() / positive.min() > 5:
        ax.set_xscale("log")
    if positive.size:
        ax.set_xlim(positive.min() / 1.6, positive.max() * 1.6)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("seconds per section (detection only, decoding excluded)")
    ax.set_ylabel("F1 at IoU 0.5 (melt layers)")
    ax.set_title("accuracy against speed", fontsize=10)
    ax.grid(True, alpha=0.3, which="both")
    _save(fig, Path(path))


def plot_recall_by_thickness(table: pd.DataFrame, path: str | Path) -> None:
    """Recall of true melt layers by thickness bin: one bar per head in each bin (a recall of 0 is a tick)."""
    from matplotlib.figure import Figure

    bins = list(THICKNESS_BINS_MM)
    fig = Figure(figsize=(7.2, 4.4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(bins))
    n_heads = max(len(table), 1)
    width = 0.8 / n_heads
    for i, rec in enumerate(table.to_dict("records")):
        y = np.array([rec[f"recall_{b}"] for b in bins], dtype=float)
        xs = x - 0.4 + width * (i + 0.5)
        ax.bar(xs, np.nan_to_num(y), width * 0.9, color=f"C{i}", label=rec["head"])
        ok = np.isfinite(y)
        ax.scatter(xs[ok], y[ok], marker="_", s=120 * width, color=f"C{i}", linewidths=2, zorder=3)
    first = table.iloc[0] if len(table) else None
    ticks = [f"{BIN_TITLES[b]}\n(n={int(first[f'n_truth_{b}'])})" if first is not None else BIN_TITLES[b]
             for b in bins]
    ax.set_xticks(x, ticks)
    ax.set_ylim(-0.02, 1.05)
    ax.set_xlabel("true layer thickness (n: true layers)")
    ax.set_ylabel("recall at IoU 0.5")
    ax.set_title("recall against layer thickness (operating thresholds)", fontsize=10)
    ax.grid(True, axis="y", alpha=0.3)
    if len(table):
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    _save(fig, Path(path))
