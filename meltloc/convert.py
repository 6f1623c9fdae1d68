"""``meltloc convert``: align a melt log to section images; write interval tables and detection datasets.

Output layout (``DIR`` = ``--out``); every file is written under a temporary
name and renamed (:mod:`meltloc.atomic`)::

    alignment.csv   image, shift_px, shift_mm, confidence, layers, flag
    intervals.csv   image, type, depth_from_m, depth_to_m, row_from, row_to, split, label_row
    strips/<stem>.png
    strips.csv      image, split, row0, image_rows_per_row, px_per_mm, width, rows,
                    col0, col1, top_m, bottom_m, top_row, bottom_row, image_px_per_m
    yolo/           data.yaml, images/<split>/, labels/<split>/, tiles.csv  (see meltloc.formats_yolo)
    coco/{train,val,test}.json                                              (see meltloc.formats_coco)
    warnings.csv    kind, file, row, message: every skipped or suspicious input row

**alignment.csv** (:mod:`meltloc.alignment`): one shift per image;
aligned depth = table depth + ``shift_mm / 1000``; aligned row = table row
+ ``shift_px``. ``layers`` = melt layers it was found from; ``flag`` is
``no_layer`` (shift 0), ``at_search_limit`` or ``low_confidence``, else empty.

Every table names an image by its file name in ``--images`` (``227.png``
finds the manifest's ``227.bmp`` by its stem).

**intervals.csv**: one row per label-table row and image it falls in, aligned;
``row_from``/``row_to`` are (fractional) rows of the original image;
``label_row`` is the row in the label table. Extents given to entries logged
as a point (``depth to`` blank or equal to ``depth from``):

* ``melt_lens``: point +/- 1.0 mm (``--lens-half-mm``); lenses are 0.5-3 mm thick.
* ``uncertain``, ``bubble_free``: point +/- 5 mm (``--ignore-half-mm``); they
  are ignore regions (neither positive nor negative), marked by their type.
* ``melt_layer`` with ``depth to == depth from``: point +/- 0.25 mm (the
  thinnest melt layers are 0.5 mm).

An entry belongs to an image when its aligned centre lies between the image's
manifest ``top_m`` and ``bottom_m`` (so every exposure variant of a section
gets it); entries in no imaged section are reported (``label_outside_sections``).

**strips** (the regression head reads these; keep the layout): every
image's core, resampled by :func:`meltloc.strips.make_strip` to ``px_per_mm``
rows per millimetre (default 10) and ``width`` columns (default 64), from the
core's top end to its bottom end, saved as 8-bit grey PNG
``strips/<image stem>.png`` of ``rows`` x ``width`` pixels. In ``strips.csv``:

* ``row0``, ``image_rows_per_row``: strip row coordinate ``s`` (pixel ``s``
  spans ``[s, s + 1)``) is image row ``row0 + s * image_rows_per_row``;
* ``top_m``, ``bottom_m``, ``top_row``, ``bottom_row``: the image's depth
  scale (:class:`meltloc.geometry.DepthScale`); ``image_px_per_m`` is its scale, so
  depth(s) = ``top_m + (row0 + s * image_rows_per_row - top_row) / image_px_per_m``;
* ``col0``, ``col1``: the image columns ``[col0, col1)`` the strip was taken from;
* ``px_per_mm``: the working scale asked for (exact: ``image_px_per_m / 1000 / image_rows_per_row``);
* ``split``: train, val or test.

Splits are by section (:mod:`meltloc.splits`), never by tile or slice.
Slices for the classifier baselines are not written yet (issue 7).

**warnings.csv**: one row per bad or suspicious input row, with the file and
its row where there is one; convert goes on with the rest. Kinds:
``image_missing`` (a manifest row without a file: the manifest, its row),
``image_not_in_manifest``, ``image_not_selected`` (another ``--exposure``),
``image_duplicate``, ``image_unreadable`` (corrupt or truncated),
``image_no_core``, ``scale_outlier`` (px/m more than 5 % off the median),
``label_outside_sections``, ``label_negative_thickness`` (``depth to`` <
``depth from``), ``label_unknown_type``, ``label_bad_depth``,
``label_duplicate``, ``manifest_*``, ``split_unknown``, ``split_unlisted``.
Real logs cover far more core than is imaged, so many ``image_missing`` and
``label_outside_sections`` rows are normal; the summary gives one line per kind.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from meltloc import BUBBLE_FREE, IGNORE_TYPES, MELT_LAYER, MELT_LENS, UNCERTAIN
from meltloc.alignment import ALIGNMENT_COLUMNS, FLAG_NO_LAYER, AlignConfig, Alignment, align_section
from meltloc.atomic import write_csv
from meltloc.errors import DatasetError, GeometryError, ImageReadError, LabelTableError, Problem, problem_lines
from meltloc.formats_coco import coco_split, write_coco
from meltloc.formats_yolo import CLASSES, TileConfig, write_data_yaml, write_strip_tiles
from meltloc.geometry import DepthScale, scale_outliers
from meltloc.imageio import list_images, write_image
from meltloc.labels import read_labels
from meltloc.manifest import Manifest, read_manifest, section_of
from meltloc.progress import progress
from meltloc.section import load_section
from meltloc.splits import SPLITS, assign_splits, check_fractions, read_splits
from meltloc.strips import DEFAULT_INSET, DEFAULT_PX_PER_MM, DEFAULT_WIDTH, make_strip

INTERVAL_COLUMNS = ["image", "type", "depth_from_m", "depth_to_m", "row_from", "row_to", "split", "label_row"]
STRIP_COLUMNS = ["image", "split", "row0", "image_rows_per_row", "px_per_mm", "width", "rows", "col0", "col1",
                 "inset", "top_m", "bottom_m", "top_row", "bottom_row", "image_px_per_m", "path"]
WARNING_COLUMNS = ["kind", "file", "row", "message"]
LAYER_POINT_HALF_MM = 0.25
SCALE_TOLERANCE = 0.05


@dataclass
class ConvertConfig:
    """Settings of ``meltloc convert``.

    Attributes:
        px_per_mm: strip rows per millimetre of core (the working scale).
        strip_width: strip columns.
        val, test: fractions of the sections in those splits (seeded rule).
        seed: split seed.
        splits_file: a CSV (image or section, split) that fixes the splits.
        exposures: only images of these exposures (``dark``, ``bright``, ...); all if None.
        lens_half_mm: half-height given to a lens logged as a point.
        ignore_half_mm: half-height given to an uncertain/bubble-free entry logged as a point.
        align: the shift search (:class:`meltloc.alignment.AlignConfig`).
        tiles: YOLO tiling (:class:`meltloc.formats_yolo.TileConfig`).
        yolo, coco: write those datasets.
    """

    px_per_mm: float = DEFAULT_PX_PER_MM
    strip_width: int = DEFAULT_WIDTH
    val: float = 0.15
    test: float = 0.15
    seed: int = 0
    splits_file: Path | None = None
    exposures: list[str] | None = None
    lens_half_mm: float = 1.0
    ignore_half_mm: float = 5.0
    align: AlignConfig = field(default_factory=AlignConfig)
    tiles: TileConfig = field(default_factory=TileConfig)
    yolo: bool = True
    coco: bool = True


@dataclass
class ConvertResult:
    """What convert wrote, for the summary.

    Attributes:
        out: the output folder.
        alignment, intervals, strips, tiles: the tables written.
        problems: every skipped or suspicious input row (also in warnings.csv).
        tiles_dropped: YOLO tiles left out because they touch an ignore region.
        low_confidence: the flagged alignments' image names (``low_confidence``, ``at_search_limit``).
    """

    out: Path
    alignment: pd.DataFrame
    intervals: pd.DataFrame
    strips: pd.DataFrame
    tiles: pd.DataFrame
    problems: list[Problem]
    tiles_dropped: int = 0

    @property
    def sections(self) -> int:
        return int(self.strips["image"].map(section_of).nunique()) if len(self.strips) else 0

    @property
    def low_confidence(self) -> list[str]:
        flagged = self.alignment[self.alignment["flag"].isin(["low_confidence", "at_search_limit"])]
        return list(flagged["image"])

    def summary(self) -> list[str]:
        """Human-readable lines: sections, layers per split, shifts, low-confidence images, warnings by kind."""
        lines = [f"{len(self.strips)} image(s) of {self.sections} section(s) converted into {self.out}"]
        for split in SPLITS:
            iv = self.intervals[self.intervals["split"] == split]
            n_img = int((self.strips["split"] == split).sum())
            counts = Counter(iv["type"])
            lines.append(f"  {split:5s}: {n_img} image(s), {counts.get(MELT_LAYER, 0)} melt layer(s), "
                         f"{counts.get(MELT_LENS, 0)} lens(es), "
                         f"{counts.get(UNCERTAIN, 0) + counts.get(BUBBLE_FREE, 0)} ignore region(s)"
                         + (f", {int((self.tiles['split'] == split).sum())} YOLO tile(s)" if len(self.tiles) else ""))
        aligned = self.alignment[self.alignment["flag"] != FLAG_NO_LAYER]
        if len(aligned):
            lines.append(f"shift: mean |shift| {aligned['shift_mm'].abs().mean():.2f} mm over {len(aligned)} image(s), "
                         f"median confidence {aligned['confidence'].median():.2f}")
        no_layer = int((self.alignment["flag"] == FLAG_NO_LAYER).sum())
        if no_layer:
            lines.append(f"{no_layer} image(s) hold no labelled melt layer: shift 0 (flag no_layer)")
        low = self.low_confidence
        if low:
            shown = ", ".join(low[:8]) + (f" and {len(low) - 8} more" if len(low) > 8 else "")
            lines.append(f"low-confidence alignment ({len(low)}): {shown}; check them in alignment.csv")
        if self.tiles_dropped:
            lines.append(f"{self.tiles_dropped} YOLO tile(s) touching an ignore region left out")
        return lines

    def warning_lines(self) -> list[str]:
        """One line per kind of problem (the first case and how many more), then where the full list is."""
        out = problem_lines(self.problems)
        if out:
            out.append(f"full list: {self.out / 'warnings.csv'}")
        return out


def point_extent(kind: str, depth_from_m: float, depth_to_m: float, lens_half_mm: float = 1.0,
                 ignore_half_mm: float = 5.0) -> tuple[float, float]:
    """The interval given to a label-table entry (table depths, before alignment).

    Intervals stay as logged; points (``depth_to == depth_from``) get a
    half-height by type: lenses ``lens_half_mm``, ignore regions
    ``ignore_half_mm``, melt layers 0.25 mm.
    """
    if depth_to_m > depth_from_m:
        return depth_from_m, depth_to_m
    half_mm = {MELT_LENS: lens_half_mm, UNCERTAIN: ignore_half_mm, BUBBLE_FREE: ignore_half_mm}.get(
        kind, LAYER_POINT_HALF_MM)
    return depth_from_m - half_mm / 1000.0, depth_from_m + half_mm / 1000.0


def near_section(extents: np.ndarray, top_m: float, bottom_m: float, search_mm: float) -> np.ndarray:
    """Label entries that may lie in a section: centre within its depths widened by the search range.

    Args:
        extents: (N, 2) table depths [from, to].
        top_m, bottom_m: the section's manifest depths.
        search_mm: the alignment search range (a label may move this far).

    Returns:
        (N,) bool mask.
    """
    centre = 0.5 * (extents[:, 0] + extents[:, 1])
    margin_m = search_mm / 1000.0
    return (centre > top_m - margin_m) & (centre < bottom_m + margin_m)


def _match_images(folder: Path, manifest: Manifest, selected: Manifest,
                  problems: list[Problem]) -> list[tuple[Path, pd.Series]]:
    """Images on disk paired with their manifest row; report the unmatched both ways."""
    if not folder.is_dir():
        raise ImageReadError("image folder not found", folder)
    pairs: dict[str, tuple[Path, pd.Series]] = {}
    for path in list_images(folder):
        rec = manifest.find(path.name)
        if rec is None:
            problems.append(Problem("image_not_in_manifest", str(path), None,
                                    f"{path.name} is not in the manifest {manifest.path}; skipped"))
            continue
        if selected.find(rec["image"]) is None:
            problems.append(Problem("image_not_selected", str(path), None,
                                    f"{path.name} is a '{rec['exposure']}' exposure, not asked for; skipped"))
            continue
        if rec["image"] in pairs:
            earlier = pairs[rec["image"]][0]
            kept, dropped = (path, earlier) if path.name == rec["image"] else (earlier, path)  # exact name wins
            pairs[rec["image"]] = (kept, rec)
            problems.append(Problem("image_duplicate", str(dropped), None,
                                    f"{dropped.name} and {kept.name} both match the manifest entry {rec['image']}; "
                                    f"{kept.name} is used"))
            continue
        pairs[rec["image"]] = (path, rec)
    for rec in selected.table.itertuples():
        if rec.image not in pairs:
            problems.append(Problem("image_missing", str(manifest.path), int(rec.line),
                                    f"{rec.image} ({rec.top_m:.2f}-{rec.bottom_m:.2f} m) is not in {folder}"))
    stems = Counter(Path(p.name).stem for p, _ in pairs.values())
    out = []
    for name, (path, rec) in pairs.items():
        if stems[path.stem] > 1:
            problems.append(Problem("image_duplicate", str(path), None,
                                    f"another image has the stem '{path.stem}': strips are named by stem; skipped"))
            continue
        out.append((path, rec))
    return out


@dataclass
class _ImageResult:
    alignment: Alignment
    intervals: list[dict]
    strip: dict
    used: set[int]


def _convert_image(path: Path, rec: pd.Series, labels: pd.DataFrame, extents: np.ndarray, out: Path,
                   config: ConvertConfig) -> _ImageResult:
    """Load one image, align its labels, write its strip; the image is freed on return."""
    section = load_section(path)
    top_m, bottom_m = float(rec["top_m"]), float(rec["bottom_m"])
    scale = DepthScale(top_m, bottom_m, section.bounds.top_row, section.bounds.bottom_row)
    near = near_section(extents, top_m, bottom_m, config.align.search_mm)
    layers = near & (labels["type"].to_numpy() == MELT_LAYER)
    alignment = align_section(path.name, section.image, section.bounds, scale,
                              labels.loc[layers, ["depth_from_m", "depth_to_m"]].to_numpy(), config.align)
    shift_m = alignment.shift_mm / 1000.0
    intervals, used = [], set()
    for i in np.flatnonzero(near):
        d0, d1 = extents[i] + shift_m
        if not top_m <= 0.5 * (d0 + d1) <= bottom_m:
            continue
        r0, r1 = (float(v) for v in scale.depth_to_row([d0, d1]))
        lab = labels.iloc[i]
        intervals.append({"image": path.name, "type": lab["type"], "depth_from_m": round(float(d0), 6),
                          "depth_to_m": round(float(d1), 6), "row_from": round(r0, 3), "row_to": round(r1, 3),
                          "label_row": int(lab["line"])})
        used.add(int(lab["line"]))
    strip = make_strip(section.image, section.bounds, scale.px_per_m / 1000.0, config.px_per_mm, config.strip_width)
    write_image(out / "strips" / f"{path.stem}.png", strip.pixels)
    meta = {"image": path.name, "split": "", "row0": strip.row0,
            "image_rows_per_row": round(strip.image_rows_per_row, 9), "px_per_mm": config.px_per_mm,
            "width": int(strip.pixels.shape[1]), "rows": int(strip.pixels.shape[0]), "col0": strip.col0,
            "col1": strip.col1, "inset": DEFAULT_INSET, "top_m": top_m, "bottom_m": bottom_m, "top_row": round(scale.top_row, 4),
            "bottom_row": round(scale.bottom_row, 4), "image_px_per_m": round(scale.px_per_m, 4),
            "stem": path.stem, "path": str(path.resolve())}
    return _ImageResult(alignment, intervals, meta, used)


def convert(images: str | Path, sections: str | Path, labels: str | Path, out: str | Path,
            config: ConvertConfig | None = None, show_progress: bool = True) -> ConvertResult:
    """Align the label table to the images and write the outputs described in the module docstring.

    Bad input rows (an image missing from disk or not in the manifest, a
    label outside every section, ``depth to`` < ``depth from``, an unknown
    feature type, a corrupt image, ...) are skipped, reported in
    ``warnings.csv`` and in the result, and the rest is converted.

    Raises:
        ManifestError, LabelTableError, SplitError: an input file cannot be used at all.
        DatasetError: no image could be converted (nothing usable is left).
    """
    config = config or ConvertConfig()
    images, out = Path(images), Path(out)
    check_fractions(config.val, config.test)
    manifest = read_manifest(sections)
    table = read_labels(labels)
    problems: list[Problem] = list(manifest.problems) + list(table.problems)
    given_splits = None
    if config.splits_file is not None:
        given_splits, split_problems = read_splits(config.splits_file)
        problems.extend(split_problems)
    if table.table.empty:
        first = f" (first: {table.problems[0]})" if table.problems else ""
        raise LabelTableError(f"no usable row in the label table{first}", labels)
    selected = manifest.select(config.exposures)
    pairs = _match_images(images, manifest, selected, problems)
    lab = table.table.reset_index(drop=True)
    extents = np.array([point_extent(t, a, b, config.lens_half_mm, config.ignore_half_mm)
                        for t, a, b in zip(lab["type"], lab["depth_from_m"], lab["depth_to_m"])],
                       dtype=np.float64).reshape(-1, 2)
    out.mkdir(parents=True, exist_ok=True)

    results: list[_ImageResult] = []
    for path, rec in progress(pairs, "convert", total=len(pairs), enabled=show_progress, unit="image"):
        try:
            results.append(_convert_image(path, rec, lab, extents, out, config))
        except ImageReadError as exc:
            problems.append(Problem("image_unreadable", str(path), None, f"{exc.message}; skipped"))
        except GeometryError as exc:
            problems.append(Problem("image_no_core", str(path), None, f"{exc.message}; skipped"))
    if not results:
        _write_warnings(out, problems)
        kinds = ", ".join(f"{k}: {n}" for k, n in Counter(p.kind for p in problems if p.kind.startswith("image")).items())
        raise DatasetError(f"no usable image: none of the images in {images} could be converted"
                           + (f" ({kinds}; see {out / 'warnings.csv'})" if kinds else ""), images)

    # Labels in no converted image.
    used = set().union(*(r.used for r in results))
    for rec in lab.itertuples():
        if rec.line not in used:
            problems.append(Problem("label_outside_sections", str(labels), int(rec.line),
                                    f"{rec.type} at {rec.depth_from_m:.4f} m lies in no imaged section"))
    # Scales that disagree with the others.
    px_per_m = {r.strip["image"]: r.strip["image_px_per_m"] for r in results}
    for name, rel in scale_outliers(px_per_m, SCALE_TOLERANCE).items():
        ref = float(np.median(list(px_per_m.values())))
        problems.append(Problem("scale_outlier", next(r.strip["path"] for r in results if r.strip["image"] == name), None,
                                f"{name}: {px_per_m[name]:.0f} px/m is {rel:+.1%} off the median {ref:.0f} px/m "
                                "of the images; check its manifest depths and core ends"))

    split_of, split_problems = assign_splits([section_of(r.strip["image"]) for r in results], config.val,
                                             config.test, config.seed, given_splits, str(config.splits_file))
    problems.extend(split_problems)
    for r in results:
        r.strip["split"] = split_of[section_of(r.strip["image"])]
        for iv in r.intervals:
            iv["split"] = r.strip["split"]

    alignment = pd.DataFrame([r.alignment.as_row() for r in results], columns=ALIGNMENT_COLUMNS)
    intervals = pd.DataFrame([iv for r in results for iv in r.intervals], columns=INTERVAL_COLUMNS)
    intervals = intervals.sort_values(["image", "row_from"], kind="stable").reset_index(drop=True)
    strips = pd.DataFrame([r.strip for r in results])
    write_csv(alignment, out / "alignment.csv")
    write_csv(intervals, out / "intervals.csv")
    write_csv(strips[STRIP_COLUMNS], out / "strips.csv")

    tiles, dropped, written = _write_datasets(out, strips, intervals, config, show_progress)
    written |= {out / "strips" / f"{stem}.png" for stem in strips["stem"]}
    _prune(out, written)
    _write_warnings(out, problems)
    return ConvertResult(out, alignment, intervals, strips[STRIP_COLUMNS], tiles, problems, dropped)


def _strip_rows(intervals: pd.DataFrame, row0: float, per_row: float) -> np.ndarray:
    rows = intervals[["row_from", "row_to"]].to_numpy(dtype=np.float64).reshape(-1, 2)
    return (rows - row0) / per_row


def _write_datasets(out: Path, strips: pd.DataFrame, intervals: pd.DataFrame, config: ConvertConfig,
                    show_progress: bool) -> tuple[pd.DataFrame, int, set[Path]]:
    """YOLO tiles and COCO JSON from the strips just written."""
    yolo_root = out / "yolo"
    tile_rows, written, dropped = [], set(), 0
    coco: dict[str, list[dict]] = {s: [] for s in SPLITS}
    by_image = dict(tuple(intervals.groupby("image", sort=False)))
    empty = intervals.iloc[:0]
    for rec in progress(list(strips.itertuples()), "datasets", total=len(strips), enabled=show_progress, unit="strip"):
        mine = by_image.get(rec.image, empty)
        pos = mine[mine["type"].isin(CLASSES)]
        ign = mine[mine["type"].isin(IGNORE_TYPES)]
        pos_rows = _strip_rows(pos, rec.row0, rec.image_rows_per_row)
        ign_rows = _strip_rows(ign, rec.row0, rec.image_rows_per_row)
        if config.coco:
            coco[rec.split].append({"image": rec.image, "stem": rec.stem, "rows": rec.rows, "width": rec.width,
                                    "positives": pos_rows, "types": list(pos["type"]), "ignore": ign_rows})
        if config.yolo:
            pixels = cv2.imread(str(out / "strips" / f"{rec.stem}.png"), cv2.IMREAD_GRAYSCALE)
            if pixels is None:
                raise DatasetError("strip just written cannot be read back", out / "strips" / f"{rec.stem}.png")
            classes = np.array([CLASSES.index(t) for t in pos["type"]], dtype=np.int64)
            rows, files, n_drop = write_strip_tiles(pixels, rec.stem, rec.image, rec.split, pos_rows, classes,
                                                    ign_rows, yolo_root, config.tiles)
            tile_rows += rows
            written |= set(files)
            dropped += n_drop
    tiles = pd.DataFrame(tile_rows, columns=["tile", "image", "split", "start", "rows", "boxes"])
    if config.yolo:
        write_data_yaml(yolo_root)
        write_csv(tiles, yolo_root / "tiles.csv")
    if config.coco:
        for split in SPLITS:
            write_coco(out / "coco" / f"{split}.json", coco_split(coco[split], split))
    return tiles, dropped, written


def _prune(out: Path, written: set[Path]) -> None:
    """Remove strips and tiles an earlier run left in the output folder (only our own kinds of file)."""
    written = {p.resolve() for p in written}
    folders = [(out / "strips", "*.png")]
    folders += [(out / "yolo" / "images" / s, "*.png") for s in SPLITS]
    folders += [(out / "yolo" / "labels" / s, "*.txt") for s in SPLITS]
    for folder, pattern in folders:
        if folder.is_dir():
            for path in folder.glob(pattern):
                if path.resolve() not in written:
                    path.unlink()
    cache = out / "yolo" / "labels"
    for stale in cache.glob("*.cache") if cache.is_dir() else []:
        stale.unlink()  # ultralytics' label caches describe the old tiles


def _write_warnings(out: Path, problems: list[Problem]) -> None:
    rows = [{"kind": p.kind, "file": p.path, "row": p.row, "message": p.message} for p in problems]
    df = pd.DataFrame(rows, columns=WARNING_COLUMNS)
    df["row"] = df["row"].astype("Int64")
    write_csv(df, out / "warnings.csv")

