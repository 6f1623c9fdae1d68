"""`meltloc record`: melt intervals -> a melt record (ages, melt per depth or age bin, coverage, agreement).

The input is one of

- a detections CSV from ``meltloc detect`` (``image, depth_from_m, depth_to_m,
  thickness_mm, type, score, ...``);
- a review decisions file (the detect columns plus ``status``): only
  ``accepted``, ``edited`` and ``added`` rows count;
- a melt log in the published label format (CSV, TSV, XLSX; read with
  :func:`meltloc.labels.read_labels`). Each row is placed in the image whose
  depth range holds its midpoint; with an ``alignment.csv`` from convert its
  depths are shifted by that image's ``shift_mm`` first (aligned = table depth
  + shift_mm / 1000), as convert does. ``uncertain`` and ``bubble_free`` rows
  are not melt and are left out.

Coverage: ``imaged_m`` of a bin is the length of core inside the sections
that were imaged and processed. Each manifest row gives the depths of its
core's two ends (CONTRACT.md), and the depth scale of an image is pinned at
the ends the geometry finds, so an image covers ``[top_m, bottom_m]``. With
``images`` only the images in that folder whose core is found count (an
unreadable image or one without a core is a gap); without it every manifest
image counts. Exposure variants of one section are merged, never counted
twice. Features outside the imaged core are left out (one warning), so a bin
is never more than 100 % melt.

Per bin (CONTRACT.md): ``bin_top_m, bin_bot_m, age_top_b2k, age_bot_b2k,
imaged_m, n_layers, n_lenses, melt_mm, melt_percent, layers_per_m``, then
``cum_melt_mm`` (and ``melt_corrected_mm`` with a thinning table).

- ``melt_mm``: the sum of melt-layer thickness inside the bin; a layer
  crossing a bin edge is split in proportion to its length on each side.
- ``n_layers`` / ``n_lenses``: features whose midpoint (of their imaged part)
  lies in the bin, a bin holding its top edge and not its bottom edge (the
  last bin holds both).
- ``melt_percent = melt_mm / (imaged_m * 1000) * 100``,
  ``layers_per_m = n_layers / imaged_m``.
- Where ``imaged_m`` is 0 the core was not observed: counts, melt and rates
  are empty, never 0.
- With an age scale a feature's age is the age of its ``depth_from_m``
  (the depth the published logs date); ``age_ce = 2000 - age_b2k``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from meltloc import MELT_LENS, POSITIVE_TYPES
from meltloc.agescale import AgeScale, DepthTable, b2k_to_ce, scale_from_labels
from meltloc.atomic import atomic_path, write_csv
from meltloc.errors import MeltlocError, Problem
from meltloc.manifest import Manifest

FEATURE_COLUMNS = ["image", "depth_from_m", "depth_to_m", "thickness_mm", "type", "score", "age_b2k", "age_ce"]
RECORD_COLUMNS = ["bin_top_m", "bin_bot_m", "age_top_b2k", "age_bot_b2k", "imaged_m", "n_layers", "n_lenses",
                  "melt_mm", "melt_percent", "layers_per_m"]
COMPARED = ["n_layers", "n_lenses", "melt_mm", "melt_percent", "layers_per_m"]
REVIEW_KEPT = ("accepted", "edited", "added")
_EPS = 1e-9


class RecordError(MeltlocError):
    """A melt record cannot be built from these inputs."""


# --------------------------------------------------------------------------- inputs


@dataclass
class RecordInput:
    """Melt features read from a detections CSV, a review decisions file or a melt log.

    Attributes:
        features: columns :data:`FEATURE_COLUMNS` (ages from the log itself,
            NaN otherwise), ``type`` in melt_layer / melt_lens.
        kind: ``detections``, ``review`` or ``log``.
        path: the file.
        log: the label table as read (``log`` inputs), for ``--age-scale from-labels``.
        problems: rows left out and why.
    """

    features: pd.DataFrame
    kind: str
    path: str
    log: pd.DataFrame | None = None
    problems: list[Problem] = field(default_factory=list)


def _header(path: Path) -> set[str]:
    try:
        with open(path, encoding="utf-8-sig", errors="replace") as f:
            first = f.readline()
    except OSError as exc:
        raise RecordError(f"cannot read: {exc.strerror}", path) from exc
    return {c.strip().strip('"').lower() for c in first.replace("\t", ",").split(",")}


def _read_interval_csv(path: Path, problems: list[Problem]) -> tuple[pd.DataFrame, str]:
    sep = "\t" if "\t" in path.read_text(encoding="utf-8-sig", errors="replace").splitlines()[0] else ","
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig", skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RecordError(f"not a table: {exc}", path) from exc
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in ("image", "depth_from_m", "depth_to_m", "type") if c not in df.columns]
    if missing:
        raise RecordError(f"column(s) {', '.join(missing)} missing (found: {', '.join(df.columns)}); expected a "
                          "detections CSV from 'meltloc detect', a review decisions file or a melt log", path)
    kind = "detections"
    if "status" in df.columns:
        kind = "review"
        status = df["status"].str.strip().str.lower()
        unreviewed = int((status == "unreviewed").sum())
        if unreviewed:
            problems.append(Problem("record_unreviewed", str(path), None,
                                    f"{unreviewed} unreviewed row(s) left out: only accepted, edited and added rows count"))
        df = df[status.isin(REVIEW_KEPT)]
    out = pd.DataFrame({"image": df["image"].map(lambda v: Path(str(v).strip().replace("\\", "/")).name),
                        "type": df["type"].str.strip(), "line": df.index.to_numpy() + 2})
    for col in ("depth_from_m", "depth_to_m", "thickness_mm", "score"):
        out[col] = pd.to_numeric(df[col], errors="coerce") if col in df.columns else np.nan
    no_depth = ~(np.isfinite(out["depth_from_m"]) & np.isfinite(out["depth_to_m"]))
    if no_depth.any():
        first = out[no_depth].iloc[0]
        problems.append(Problem("record_no_depth", str(path), int(first["line"]),
                                f"{int(no_depth.sum())} row(s) without depths (image {first['image']} not in the "
                                "detect run's manifest?) left out"))
    out = out[~no_depth]
    other = ~out["type"].isin(POSITIVE_TYPES)
    if other.any():
        problems.append(Problem("record_other_type", str(path), int(out[other].iloc[0]["line"]),
                                f"{int(other.sum())} row(s) of other types than melt_layer/melt_lens left out"))
    out = out[~other]
    thick = out["thickness_mm"].to_numpy(float)
    out["thickness_mm"] = np.where(np.isfinite(thick), thick, (out["depth_to_m"] - out["depth_from_m"]) * 1000)
    out["age_b2k"] = np.nan
    out["age_ce"] = np.nan
    return out, kind


def read_record_input(path: str | Path, manifest: Manifest, alignment: str | Path | None = None) -> RecordInput:
    """Read melt features from a detections CSV, a review decisions file or a melt log (see the module docstring).

    Raises:
        RecordError, LabelTableError: the file is missing, unreadable or lacks columns.
    """
    path = Path(path)
    if not path.is_file():
        raise RecordError("input not found", path)
    problems: list[Problem] = []
    is_sheet = path.suffix.lower() in (".xlsx", ".xlsm", ".xls")
    if not is_sheet and {"depth_from_m", "image"} & _header(path):
        if alignment is not None:
            raise RecordError("--alignment shifts a melt log's depths; detections and review files are already "
                              "aligned", alignment)
        table, kind = _read_interval_csv(path, problems)
        return RecordInput(table[FEATURE_COLUMNS + ["line"]].reset_index(drop=True), kind, str(path), None, problems)
    from meltloc.evaluate import read_alignment
    from meltloc.labels import read_labels

    labels = read_labels(path)
    problems.extend(labels.problems)
    log = labels.table
    ignored = ~log["type"].isin(POSITIVE_TYPES)
    if ignored.any():
        problems.append(Problem("record_not_melt", str(path), int(log[ignored].iloc[0]["line"]),
                                f"{int(ignored.sum())} uncertain / bubble-free row(s) are not melt and are left out"))
    rows = log[~ignored].copy()
    shifts = read_alignment(alignment) if alignment is not None else None
    images = [""] * len(rows)
    shift_m = np.zeros(len(rows))
    mid = ((rows["depth_from_m"] + rows["depth_to_m"]) / 2).to_numpy(float)
    placed = np.zeros(len(rows), dtype=bool)
    no_shift = []
    for rec in manifest.table.itertuples():
        s = 0.0
        if shifts is not None:
            s = shifts.get(rec.image, shifts.get(Path(rec.image).stem, np.nan))
            if not np.isfinite(s):
                alt = [v for k, v in shifts.items() if Path(k).stem == Path(rec.image).stem]
                s = alt[0] if alt else np.nan
            if not np.isfinite(s):
                no_shift.append(rec.image)
                s = 0.0
        inside = ~placed & (mid + s / 1000 >= rec.top_m - _EPS) & (mid + s / 1000 <= rec.bottom_m + _EPS)
        for i in np.flatnonzero(inside):
            images[i] = rec.image
            shift_m[i] = s / 1000
        placed |= inside
    if no_shift:
        problems.append(Problem("record_no_shift", str(alignment), None,
                                f"{len(no_shift)} image(s) without a shift (first: {no_shift[0]}); their rows are "
                                "used unshifted"))
    out = pd.DataFrame({
        "image": images,
        "depth_from_m": rows["depth_from_m"].to_numpy(float) + shift_m,
        "depth_to_m": rows["depth_to_m"].to_numpy(float) + shift_m,
        "thickness_mm": (rows["depth_to_m"] - rows["depth_from_m"]).to_numpy(float) * 1000,
        "type": rows["type"].to_numpy(),
        "score": np.nan,
        "age_b2k": rows["age_b2k"].to_numpy(float),
        "age_ce": rows["age_ce"].to_numpy(float),
        "line": rows["line"].to_numpy(),
    })
    return RecordInput(out, "log", str(path), log, problems)


# --------------------------------------------------------------------------- coverage


def merge_intervals(intervals) -> np.ndarray:
    """Sorted, non-overlapping ``(k, 2)`` array of the union of ``[top, bottom]`` intervals."""
    spans = sorted((float(a), float(b)) for a, b in intervals if b > a)
    merged: list[list[float]] = []
    for a, b in spans:
        if merged and a <= merged[-1][1] + _EPS:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    return np.asarray(merged, dtype=float).reshape(-1, 2)


def imaged_core(manifest: Manifest, images: str | Path | None = None) -> tuple[np.ndarray, list[Problem]]:
    """The stretches of core that were imaged and processed, merged, as a ``(k, 2)`` array in meters.

    Args:
        manifest: section depths (each row: the depths of its core's ends).
        images: folder of the section images; only the images there whose core
            the geometry finds count. None: every manifest image counts.
    """
    problems: list[Problem] = []
    if images is None:
        return merge_intervals(zip(manifest.table["top_m"], manifest.table["bottom_m"])), problems
    from meltloc.geometry import find_core
    from meltloc.imageio import list_images, read_image

    folder = Path(images)
    if not folder.is_dir():
        raise RecordError("images folder not found", folder)
    spans = []
    for path in list_images(folder):
        rec = manifest.find(path.name)
        if rec is None:
            problems.append(Problem("record_image_not_in_manifest", str(path), None,
                                    "not in the manifest: its depths are unknown, not counted as imaged"))
            continue
        try:
            find_core(read_image(path))
        except MeltlocError as exc:
            problems.append(Problem("record_image_unusable", str(path), None,
                                    f"{exc.message}; counted as not imaged"))
            continue
        spans.append((float(rec["top_m"]), float(rec["bottom_m"])))
    if not spans:
        raise RecordError("no image in the folder is in the manifest and readable: nothing was imaged", folder)
    return merge_intervals(spans), problems


def _clip_to(a: float, b: float, spans: np.ndarray) -> list[tuple[float, float]]:
    """The pieces of ``[a, b]`` inside ``spans``; a point inside a span gives one zero-length piece."""
    pieces = []
    for s0, s1 in spans:
        lo, hi = max(a, s0), min(b, s1)
        if hi > lo or (hi == lo and s0 - _EPS <= a <= s1 + _EPS and a == b):
            pieces.append((lo, hi))
    return pieces


# --------------------------------------------------------------------------- bins


def depth_edges(top_m: float, bottom_m: float, bin_m: float) -> np.ndarray:
    """Bin edges at whole multiples of ``bin_m`` covering ``[top_m, bottom_m]``."""
    if not bin_m > 0:
        raise RecordError(f"--bin-m must be positive, not {bin_m}")
    k0 = int(np.floor(top_m / bin_m + 1e-9))
    k1 = max(int(np.ceil(bottom_m / bin_m - 1e-9)), k0 + 1)
    return np.round(np.arange(k0, k1 + 1) * bin_m, 9)


def age_edges(scale: AgeScale, top_m: float, bottom_m: float, bin_years: float) -> tuple[np.ndarray, np.ndarray]:
    """Age bin edges (whole multiples of ``bin_years``) over the dated part of ``[top_m, bottom_m]``, and their depths.

    Edges beyond the scale's ends get the scale's end depths (that part of
    the bin is undated and not in the record).
    """
    if not bin_years > 0:
        raise RecordError(f"--bin-years must be positive, not {bin_years}")
    top, bottom = max(top_m, scale.top_m), min(bottom_m, scale.bottom_m)
    if bottom <= top:
        raise RecordError(f"the imaged core ({top_m:.3f}-{bottom_m:.3f} m) lies outside the depth-age scale "
                          f"({scale.top_m:g}-{scale.bottom_m:g} m): no age bins", scale.path)
    a0, a1 = scale.at(top), scale.at(bottom)
    k0 = int(np.floor(a0 / bin_years + 1e-9))
    k1 = max(int(np.ceil(a1 / bin_years - 1e-9)), k0 + 1)
    ages = np.round(np.arange(k0, k1 + 1) * bin_years, 9)
    depths = np.interp(ages, scale.value, scale.depth_m)
    # Flat stretches of the scale (several depths with one age) go to the first bin that reaches them.
    return ages, np.maximum.accumulate(np.clip(depths, top, bottom))


@dataclass
class Record:
    """A melt record and the features it was built from.

    Attributes:
        table: one row per bin, :data:`RECORD_COLUMNS` then extras.
        features: the features counted, :data:`FEATURE_COLUMNS` (+ ``thickness_corrected_mm``).
        coverage: imaged stretches, ``(k, 2)`` meters.
        name: a short name for plots (the input's file name).
        by_age: bins are age intervals.
        problems: what was left out and why.
    """

    table: pd.DataFrame
    features: pd.DataFrame
    coverage: np.ndarray
    name: str
    by_age: bool = False
    problems: list[Problem] = field(default_factory=list)


def build_record(features: pd.DataFrame, coverage: np.ndarray, *, bin_m: float = 1.0, bin_years: float | None = None,
                 scale: AgeScale | None = None, thinning: DepthTable | None = None, name: str = "",
                 extent: tuple[float, float] | None = None, source: str = "") -> Record:
    """Bin melt features into a record (the rules are in the module docstring).

    Args:
        features: :data:`FEATURE_COLUMNS` (ages may be NaN), ``type`` melt_layer or melt_lens.
        coverage: imaged stretches, merged, ``(k, 2)`` meters.
        bin_m: depth bin size in m (ignored with ``bin_years``).
        bin_years: age bin size in years (needs ``scale``).
        scale: depth-age scale; gives ages to bins and features.
        thinning: thinning factors by depth; adds ``thickness_corrected_mm`` and ``melt_corrected_mm``.
        extent: depth range of the bins (default: the imaged core's).
        source: the input file, for messages.
    """
    problems: list[Problem] = []
    coverage = merge_intervals(coverage)
    if len(coverage) == 0:
        raise RecordError("no core was imaged: nothing to make a record of")
    top, bottom = extent if extent is not None else (float(coverage[0, 0]), float(coverage[-1, 1]))
    # Features: their imaged part only.
    feats = features.reset_index(drop=True).copy()
    keep, mids, pieces_of = [], [], []
    for i, rec in enumerate(feats.itertuples()):
        pieces = _clip_to(float(rec.depth_from_m), float(rec.depth_to_m), coverage)
        if not pieces:
            continue
        keep.append(i)
        pieces_of.append(pieces)
        length = sum(b - a for a, b in pieces)
        mids.append(pieces[0][0] if length <= 0 else
                    _middle(pieces, length))
    outside = len(feats) - len(keep)
    if outside:
        problems.append(Problem("record_outside_imaged", source, None,
                                f"{outside} feature(s) lie outside the imaged core and are not counted"))
    feats = feats.iloc[keep].reset_index(drop=True)
    feats["mid_m"] = mids
    if scale is not None:
        feats["age_b2k"] = np.round(scale.at(feats["depth_from_m"].to_numpy(float)), 3)
        feats["age_ce"] = np.round(b2k_to_ce(feats["age_b2k"]), 3)
        undated = ((coverage[:, 0] < scale.top_m - _EPS) | (coverage[:, 1] > scale.bottom_m + _EPS)).any()
        if undated:
            problems.append(Problem("record_undated", scale.path, None,
                                    f"the depth-age scale covers {scale.top_m:g}-{scale.bottom_m:g} m; imaged core "
                                    f"outside it ({coverage[0, 0]:.3f}-{coverage[-1, 1]:.3f} m imaged) gets no age"))
    factor = None
    if thinning is not None:
        factor = thinning.at(feats["mid_m"].to_numpy(float))
        feats["thickness_corrected_mm"] = feats["thickness_mm"].to_numpy(float) / factor
        if (~np.isfinite(factor)).any():
            problems.append(Problem("record_no_thinning", thinning.path, None,
                                    f"{int((~np.isfinite(factor)).sum())} feature(s) outside the thinning table's "
                                    f"depths ({thinning.top_m:g}-{thinning.bottom_m:g} m) get no corrected thickness"))
    # Bins.
    if bin_years is not None:
        if scale is None:
            raise RecordError("--bin-years needs an age scale (--age-scale FILE or --age-scale from-labels)")
        ages, edges = age_edges(scale, top, bottom, bin_years)
        age_top, age_bot = ages[:-1], ages[1:]
    else:
        edges = depth_edges(top, bottom, bin_m)
        age_top = age_bot = None
        if scale is not None:
            age_top, age_bot = scale.at(edges[:-1]), scale.at(edges[1:])
    tops, bots = edges[:-1], edges[1:]
    n = len(tops)
    imaged = np.zeros(n)
    for a, b in coverage:
        _spread(imaged, a, b, 1.0, tops, bots, edges)
    n_layers, n_lenses = np.zeros(n, dtype=int), np.zeros(n, dtype=int)
    melt, melt_corr = np.zeros(n), np.zeros(n)
    counted = np.zeros(len(feats), dtype=bool)
    for j, (rec, pieces) in enumerate(zip(feats.itertuples(), [pieces_of[i] for i in range(len(keep))])):
        k = _bin_of(rec.mid_m, edges)
        if k is None:
            continue
        counted[j] = True
        if rec.type == MELT_LENS:
            n_lenses[k] += 1
            continue
        n_layers[k] += 1
        length = float(rec.depth_to_m) - float(rec.depth_from_m)
        corr = float(rec.thickness_corrected_mm) if factor is not None else np.nan
        if length <= 0:  # a layer logged without thickness: all of it (nothing) in its bin
            melt[k] += float(rec.thickness_mm)
            melt_corr[k] += corr
            continue
        for a, b in pieces:  # split by length over the bins, imaged part only
            _spread(melt, a, b, float(rec.thickness_mm) / length, tops, bots, edges)
            _spread(melt_corr, a, b, corr / length, tops, bots, edges)
    if bin_years is not None and not counted.all():
        problems.append(Problem("record_outside_bins", source, None,
                                f"{int((~counted).sum())} feature(s) are outside the dated part of the core and are "
                                "not in the age bins"))
    seen = imaged > _EPS
    table = pd.DataFrame({
        "bin_top_m": np.round(tops, 6), "bin_bot_m": np.round(bots, 6),
        "age_top_b2k": np.nan if age_top is None else np.round(age_top, 3),
        "age_bot_b2k": np.nan if age_bot is None else np.round(age_bot, 3),
        "imaged_m": np.round(imaged, 6),
        "n_layers": pd.array(np.where(seen, n_layers, 0), dtype="Int64"),
        "n_lenses": pd.array(np.where(seen, n_lenses, 0), dtype="Int64"),
        "melt_mm": np.where(seen, np.round(melt, 4), np.nan),
    })
    table.loc[~seen, ["n_layers", "n_lenses"]] = pd.NA
    with np.errstate(divide="ignore", invalid="ignore"):
        table["melt_percent"] = np.where(seen, np.round(melt / (imaged * 1000) * 100, 6), np.nan)
        table["layers_per_m"] = np.where(seen, np.round(n_layers / imaged, 6), np.nan)
    table["cum_melt_mm"] = np.round(np.cumsum(melt), 4)
    if factor is not None:
        table["melt_corrected_mm"] = np.where(seen, np.round(melt_corr, 4), np.nan)
    feats = feats[counted] if bin_years is not None else feats
    out_cols = FEATURE_COLUMNS + (["thickness_corrected_mm"] if factor is not None else [])
    feats = feats.sort_values("depth_from_m", kind="stable")[out_cols].reset_index(drop=True)
    return Record(table, feats, coverage, name, bin_years is not None, problems)


def _spread(into: np.ndarray, a: float, b: float, per_m: float, tops: np.ndarray, bots: np.ndarray,
            edges: np.ndarray) -> None:
    """Add ``per_m`` times the length of ``[a, b]`` inside each bin to ``into`` (only the bins it touches)."""
    k0 = max(int(np.searchsorted(edges, a, side="right")) - 1, 0)
    k1 = min(int(np.searchsorted(edges, b, side="left")), len(tops))
    if k1 <= k0:
        return
    inside = np.clip(np.minimum(b, bots[k0:k1]) - np.maximum(a, tops[k0:k1]), 0, None)
    into[k0:k1] += per_m * inside


def _middle(pieces: list[tuple[float, float]], length: float) -> float:
    """The depth halfway along the imaged pieces of a feature."""
    half = length / 2
    for a, b in pieces:
        if b - a >= half:
            return a + half
        half -= b - a
    return pieces[-1][1]


def _bin_of(depth_m: float, edges: np.ndarray) -> int | None:
    """Index of the bin holding a depth (top edge inclusive; the last bin also holds its bottom edge)."""
    if depth_m < edges[0] - _EPS or depth_m > edges[-1] + _EPS:
        return None
    k = int(np.searchsorted(edges, depth_m, side="right")) - 1
    return min(max(k, 0), len(edges) - 2)


# --------------------------------------------------------------------------- agreement


@dataclass
class Agreement:
    """Two records of the same core, bin by bin.

    Attributes:
        table: the bins, then for each of :data:`COMPARED` the value of A, of B and A - B.
        figures: ``r_melt_mm``, ``r_n_layers`` (Pearson, over bins with coverage; NaN when
            undefined), ``total_melt_mm_<a>``, ``total_melt_mm_<b>``, ``n_layers_<a>``, ``n_layers_<b>``, ``bins``.
    """

    table: pd.DataFrame
    figures: dict
    names: tuple[str, str]


def pearson(x, y) -> float:
    """Pearson r of two equal-length series; NaN with fewer than two points or no spread in either."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def compare_records(a: Record, b: Record, names: tuple[str, str] = ("input", "other")) -> Agreement:
    """Put two records built on the same bins side by side (see :class:`Agreement`)."""
    ta, tb = a.table, b.table
    if len(ta) != len(tb) or not np.allclose(ta["bin_top_m"], tb["bin_top_m"]):
        raise RecordError("the two records have different bins; build them with the same manifest and bins")
    na, nb = names
    out = ta[["bin_top_m", "bin_bot_m", "age_top_b2k", "age_bot_b2k", "imaged_m"]].copy()
    for col in COMPARED:
        va, vb = ta[col].astype("Float64"), tb[col].astype("Float64")
        out[f"{col}_{na}"] = ta[col]
        out[f"{col}_{nb}"] = tb[col]
        out[f"{col}_diff"] = (va - vb).round(6).astype("Int64") if col.startswith("n_") else (va - vb).round(6)
    seen = (ta["imaged_m"] > _EPS).to_numpy()
    figures = {
        "bins": int(seen.sum()),
        "r_melt_mm": pearson(ta["melt_mm"][seen], tb["melt_mm"][seen]),
        "r_n_layers": pearson(ta["n_layers"][seen].astype(float), tb["n_layers"][seen].astype(float)),
        f"total_melt_mm_{na}": float(np.nansum(ta["melt_mm"].astype(float))),
        f"total_melt_mm_{nb}": float(np.nansum(tb["melt_mm"].astype(float))),
        f"n_layers_{na}": int(np.nansum(ta["n_layers"].astype(float))),
        f"n_layers_{nb}": int(np.nansum(tb["n_layers"].astype(float))),
        "imaged_m": float(ta["imaged_m"].sum()),
    }
    return Agreement(out, figures, names)


# --------------------------------------------------------------------------- the command


@dataclass
class RecordResult:
    """What :func:`make_record` wrote."""

    record: Record
    files: dict[str, Path]
    agreement: Agreement | None = None
    problems: list[Problem] = field(default_factory=list)


OUTPUT_NAMES = ("features.csv", "record.csv", "record_depth.png", "record_depth.svg", "record_age.png",
                "record_age.svg", "compare.csv", "agreement.csv", "compare.png", "compare.svg", "record.xlsx")
"""Every file a record run may write into its folder (the sample run also writes detections.csv)."""


def resolve_scale(spec: str | Path | None, primary: RecordInput, depth_column: str | None = None,
                  age_column: str | None = None, second: RecordInput | None = None) -> AgeScale | None:
    """The age scale named by ``--age-scale``: a file, ``from-labels`` or None.

    ``from-labels``: the depth/age pairs of the melt log given as INPUT, else of the one given to ``--compare``.
    """
    if spec is None:
        return None
    if str(spec) == "from-labels":
        log = next((r for r in (primary, second) if r is not None and r.log is not None), None)
        if log is None:
            raise RecordError("--age-scale from-labels needs a melt log (with 'age (b2k)') as INPUT or --compare, "
                              f"not a {primary.kind} file", primary.path)
        return scale_from_labels(log.log, log.path)
    from meltloc.agescale import read_age_scale

    return read_age_scale(spec, depth_column=depth_column, age_column=age_column)


def make_record(input_path: str | Path, sections: str | Path, out: str | Path, *, age_scale: str | Path | None = None,
                bin_m: float = 1.0, bin_years: float | None = None, thinning: str | Path | None = None,
                compare: str | Path | None = None, images: str | Path | None = None,
                alignment: str | Path | None = None, compare_alignment: str | Path | None = None,
                depth_column: str | None = None, age_column: str | None = None, xlsx: bool = False,
                overwrite: bool = False, plots: bool = True, claimed: bool = False) -> RecordResult:
    """Read the inputs, build the record (and the comparison), write every output into ``out``.

    ``out`` is checked before any work (:func:`meltloc.atomic.claim_folder`): never a folder holding an
    input, never another command's folder, an earlier record there only with ``overwrite``;
    ``claimed``: the caller has checked it already.

    Raises:
        MeltlocError: an input cannot be used or an output cannot be written.
    """
    from meltloc.manifest import read_manifest

    from meltloc.atomic import claim_folder, ensure_writable, finish_folder

    out = Path(out)
    inputs = [input_path, sections, None if str(age_scale) == "from-labels" else age_scale, thinning, compare,
              images, alignment, compare_alignment]
    if bin_years is not None and age_scale is None:
        raise RecordError("--bin-years needs an age scale (--age-scale FILE or --age-scale from-labels)")
    ensure_writable(out, folder=True)
    manifest = read_manifest(sections)
    problems = list(manifest.problems)
    primary = read_record_input(input_path, manifest, alignment)
    problems += primary.problems
    second = read_record_input(compare, manifest, compare_alignment) if compare is not None else None
    scale = resolve_scale(age_scale, primary, depth_column, age_column, second)
    thin = None
    if thinning is not None:
        from meltloc.agescale import read_thinning

        thin = read_thinning(thinning)
    if not claimed:  # the small inputs are read and checked; now the output folder, before the images
        claim_folder(out, "record", inputs=inputs, overwrite=overwrite, settings={
            "input": str(Path(input_path).resolve()), "compare": None if compare is None else str(Path(compare).resolve()),
            "age_scale": None if age_scale is None else str(age_scale), "bin_m": bin_m, "bin_years": bin_years})
    coverage, cov_problems = imaged_core(manifest, images)
    problems += cov_problems
    settings = dict(bin_m=bin_m, bin_years=bin_years, scale=scale, thinning=thin)
    record = build_record(primary.features, coverage, name=Path(input_path).name, source=primary.path, **settings)
    problems += record.problems
    agreement = None
    other = None
    if second is not None:
        problems += second.problems
        other = build_record(second.features, coverage, name=Path(compare).name, source=second.path, **settings)
        problems += other.problems
        agreement = compare_records(record, other, names=_short_names(primary, second))
    files = write_outputs(out, record, other, agreement, scale, xlsx=xlsx, plots=plots)
    for name in OUTPUT_NAMES:  # an earlier run's files that this run does not write (with --overwrite)
        if (out / name) not in files.values():
            (out / name).unlink(missing_ok=True)
    finish_folder(out)
    return RecordResult(record, files, agreement, problems)


def _short_names(a: RecordInput, b: RecordInput) -> tuple[str, str]:
    """Column suffixes for the two records: their kinds (``detections``, ``log``), else ``input`` / ``other``."""
    if a.kind != b.kind and {a.kind, b.kind} <= {"detections", "review", "log"}:
        return a.kind, b.kind
    return "input", "other"


def write_outputs(out: Path, record: Record, other: Record | None, agreement: Agreement | None,
                  scale: AgeScale | None, xlsx: bool = False, plots: bool = True) -> dict[str, Path]:
    """Write the CSVs (atomically), the plots and optionally one XLSX into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    feats = record.features.copy()
    for col, digits in (("depth_from_m", 6), ("depth_to_m", 6), ("thickness_mm", 4), ("score", 4),
                        ("age_b2k", 3), ("age_ce", 3), ("thickness_corrected_mm", 4)):
        if col in feats.columns:
            feats[col] = feats[col].astype(float).round(digits)
    write_csv(feats, out / "features.csv")
    files["features"] = out / "features.csv"
    write_csv(record.table, out / "record.csv")
    files["record"] = out / "record.csv"
    if agreement is not None:
        write_csv(agreement.table, out / "compare.csv")
        files["compare"] = out / "compare.csv"
        write_csv(pd.DataFrame({"figure": list(agreement.figures), "value": list(agreement.figures.values())}),
                  out / "agreement.csv", float_format="%.6g")
        files["agreement"] = out / "agreement.csv"
    if plots:
        from meltloc.record_plot import plot_compare, plot_record

        files.update(plot_record(record, out, by="depth"))
        if scale is not None:
            files.update(plot_record(record, out, by="age", scale=scale))
        if agreement is not None and other is not None:
            files.update(plot_compare(record, other, agreement, out))
    if xlsx:
        with atomic_path(out / "record.xlsx") as tmp:
            with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
                record.table.astype(object).where(record.table.notna(), None).to_excel(writer, sheet_name="record", index=False)
                record.features.to_excel(writer, sheet_name="features", index=False)
                if agreement is not None:
                    agreement.table.astype(object).where(agreement.table.notna(), None).to_excel(
                        writer, sheet_name="compare", index=False)
                    pd.DataFrame({"figure": list(agreement.figures), "value": list(agreement.figures.values())}
                                 ).to_excel(writer, sheet_name="agreement", index=False)
        files["xlsx"] = out / "record.xlsx"
    return files


def sample_detections(out_csv: str | Path, images: str | Path, sections: str | Path, weights: str | Path) -> Path:
    """Run the shipped weights on the shipped sample (for ``meltloc record`` without INPUT); returns the CSV."""
    from meltloc.detect import detect_images
    from meltloc.heads import load_detector
    from meltloc.manifest import read_manifest

    detector = load_detector(weights, "cpu")
    detect_images([Path(images)], detector, Path(out_csv), read_manifest(sections), show_progress=False, threads=1)
    return Path(out_csv)
