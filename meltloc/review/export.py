"""The reviewed features as a melt log that ``meltloc convert --labels`` reads back.

Columns as published (``bag, depth from, depth to, age (b2k), age (CE), type
of feature``); accepted, edited and added features only; melt layers as
intervals, melt lenses as points (``depth from == depth to``, the midpoint),
as the real log has them. ``bag`` is the 0.55 m bag of the section the
feature lies in (the section's first bag, from its image name, plus 0, 1 or
2 by position); ages are interpolated from a hand log's depth/age pairs when
one is given, else NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from meltloc import MELT_LAYER, MELT_LENS
from meltloc.atomic import atomic_path
from meltloc.labels import SOURCE_COLUMNS, write_labels
from meltloc.manifest import section_of
from meltloc.review.store import KEPT_STATUSES, ReviewError, number

RAW_TYPES = {MELT_LAYER: "meltLayer", MELT_LENS: "meltLens"}
EXPORT_SUFFIXES = (".xlsx", ".csv", ".tsv", ".tab")


@dataclass
class ExportResult:
    """What an export wrote."""

    path: Path
    layers: int
    lenses: int
    skipped: int  # kept rows without depths (image not in the manifest)


def bag_of(image: str, depth_m: float, span: tuple[float, float] | None) -> float:
    """The bag holding ``depth_m`` in the section shown by ``image`` (NaN when unknown).

    A section is three 0.55 m bags starting at the number its image is named
    after (``227.bmp``: bags 227, 228, 229).
    """
    first = section_of(image)
    if span is None or not first.isdigit():
        return float("nan")
    top, bottom = span
    third = (bottom - top) / 3.0
    k = int(np.clip(math.floor((depth_m - top) / third), 0, 2)) if third > 0 else 0
    return float(int(first) + k)


def age_model(depths_m, ages_b2k) -> Callable[[float], float] | None:
    """Linear interpolation of a hand log's ages (b2k) over depth; None with fewer than two usable pairs."""
    d = np.asarray(depths_m, dtype=float)
    a = np.asarray(ages_b2k, dtype=float)
    ok = np.isfinite(d) & np.isfinite(a)
    if ok.sum() < 2:
        return None
    d, a = d[ok], a[ok]
    order = np.argsort(d, kind="stable")
    d, a = d[order], a[order]
    d, first = np.unique(d, return_index=True)
    a = a[first]
    if d.size < 2:
        return None
    return lambda depth: float(np.interp(depth, d, a, left=np.nan, right=np.nan))


def export_table(rows: list[dict[str, str]], span_of: Callable[[str], tuple[float, float] | None],
                 age_of: Callable[[float], float] | None = None) -> tuple[pd.DataFrame, int]:
    """The melt-log table of the kept rows (sorted by depth) and the number of kept rows left out (no depths)."""
    out, skipped = [], 0
    for row in rows:
        if row.get("status") not in KEPT_STATUSES or row.get("type") not in RAW_TYPES:
            continue
        d0, d1 = number(row.get("depth_from_m")), number(row.get("depth_to_m"))
        if not (math.isfinite(d0) and math.isfinite(d1)):
            skipped += 1
            continue
        if row["type"] == MELT_LENS:
            d0 = d1 = 0.5 * (d0 + d1)
        mid = 0.5 * (d0 + d1)
        age = age_of(mid) if age_of is not None else float("nan")
        out.append({"bag": bag_of(row["image"], mid, span_of(row["image"])), "depth from": round(d0, 4),
                    "depth to": round(d1, 4), "age (b2k)": age,
                    "age (CE)": 2000.0 - age if math.isfinite(age) else float("nan"),
                    "type of feature": RAW_TYPES[row["type"]]})
    table = pd.DataFrame(out, columns=SOURCE_COLUMNS)
    table = table.sort_values("depth from", kind="stable").reset_index(drop=True)
    return table, skipped


def write_export(table: pd.DataFrame, path: str | Path) -> None:
    """Write a melt-log table: XLSX (one sheet, ``melt log``) or CSV/TSV; atomically.

    Raises:
        ReviewError: an unsupported suffix.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in EXPORT_SUFFIXES:
        raise ReviewError(f"cannot export as '{suffix or path.name}': use .xlsx or .csv", path)
    if suffix == ".xlsx":
        sheet = table.copy()
        sheet["bag"] = pd.array([None if pd.isna(b) else int(b) for b in sheet["bag"]], dtype="Int64")
        with atomic_path(path) as tmp:
            with pd.ExcelWriter(tmp, engine="openpyxl") as writer:
                sheet.to_excel(writer, sheet_name="melt log", index=False)
    else:
        write_labels(table, path)


def export_log(rows: list[dict[str, str]], path: str | Path,
               span_of: Callable[[str], tuple[float, float] | None] = lambda image: None,
               age_of: Callable[[float], float] | None = None) -> ExportResult:
    """Write the accepted, edited and added features of a review as a melt log."""
    table, skipped = export_table(rows, span_of, age_of)
    write_export(table, path)
    kinds = table["type of feature"]
    return ExportResult(Path(path), int((kinds == "meltLayer").sum()), int((kinds == "meltLens").sum()), skipped)
