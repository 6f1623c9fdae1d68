"""The hand-made melt log (label table): CSV, TSV or XLSX.

Columns as published with Westhoff et al. (2022): ``bag``, ``depth from``,
``depth to``, ``age (b2k)``, ``age (CE)``, ``type of feature``. Types map to
meltloc's names (CONTRACT.md); ``uncertain`` and ``bubble_free`` are ignore
regions. Rows that cannot be used are skipped and reported as
:class:`~meltloc.errors.Problem`, with their row in the file.
"""

from __future__ import annotations

import io

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from meltloc import BUBBLE_FREE, MELT_LAYER, MELT_LENS, UNCERTAIN
from meltloc.atomic import write_csv
from meltloc.errors import LabelTableError, Problem

SOURCE_COLUMNS = ["bag", "depth from", "depth to", "age (b2k)", "age (CE)", "type of feature"]
REQUIRED = ["depth from", "depth to", "type of feature"]
COLUMNS = ["line", "bag", "depth_from_m", "depth_to_m", "type", "raw_type", "age_b2k", "age_ce"]


def feature_type(raw: str) -> str | None:
    """meltloc's type for a label-table type, or None when it is unknown.

    >>> feature_type("meltLayer"), feature_type("meltLens uncertain")
    ('melt_layer', 'uncertain')
    """
    text = " ".join(str(raw).split()).lower()
    if not text or text == "nan":
        return None
    if "uncertain" in text:
        return UNCERTAIN
    if "bubble free" in text or "bubble-free" in text:
        return BUBBLE_FREE
    if text in ("meltlayer", "melt layer", "melt_layer"):
        return MELT_LAYER
    if text in ("meltlens", "melt lens", "melt_lens"):
        return MELT_LENS
    return None


@dataclass
class LabelTable:
    """A label table read and cleaned.

    Attributes:
        table: columns :data:`COLUMNS`; depths in meters, ``depth_to_m`` equal
            to ``depth_from_m`` for points (lenses, uncertain, bubble-free
            entries without a ``depth to``); ``line`` is the row in the file.
        path: the file it came from.
        problems: skipped or suspicious rows.
    """

    table: pd.DataFrame
    path: str | None = None
    problems: list[Problem] = field(default_factory=list)


def _normalise(name: object) -> str:
    return " ".join(str(name).replace("\n", " ").split()).lower()


def _find_columns(df: pd.DataFrame) -> dict[str, str] | None:
    wanted = {_normalise(c): c for c in SOURCE_COLUMNS}
    found = {}
    for col in df.columns:
        key = _normalise(col)
        if key in wanted:
            found[wanted[key]] = col
    return found if all(c in found for c in REQUIRED) else None


def _read_frame(path: Path) -> tuple[pd.DataFrame, int]:
    """The raw table and the file row of its first data row."""
    suffix = path.suffix.lower()
    raw = path.read_bytes()
    if raw.startswith(b"\xd0\xcf\x11\xe0"):
        raise LabelTableError("is an old Excel .xls workbook, which meltloc does not read: save it from Excel as "
                              ".xlsx or CSV", path)
    if suffix in (".xlsx", ".xlsm", ".xls") and not raw.startswith(b"PK\x03\x04"):
        if not raw.strip():
            raise LabelTableError("the label table is empty", path)
        raise LabelTableError(f"is named {suffix} but is not an Excel workbook: save it again from Excel as .xlsx, "
                              "or name a CSV/TSV file .csv", path)
    if raw.startswith(b"PK\x03\x04"):
        try:
            sheets = pd.read_excel(path, sheet_name=None, dtype=object, engine="openpyxl")
        except Exception as exc:  # openpyxl raises many kinds
            raise LabelTableError(f"cannot read as an XLSX workbook ({type(exc).__name__}): save it again from "
                                  "Excel as .xlsx or CSV", path) from exc
        for df in sheets.values():
            if _find_columns(df) is not None:
                return df, 2
        raise LabelTableError(
            f"no sheet has the columns {', '.join(REQUIRED)} (sheets: {', '.join(map(str, sheets))})", path)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:  # Excel on Windows exports CSV in cp1252
        text = raw.decode("cp1252", errors="replace")
    if not text.strip():
        raise LabelTableError("the label table is empty", path)
    first = text.splitlines()[0]
    sep = "\t" if "\t" in first else ("," if "," in first else ";" if ";" in first else r"\s{2,}")
    try:
        df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False,
                         engine="python" if len(sep) > 1 else "c", skipinitialspace=True)
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise LabelTableError(f"not a table: {exc}", path) from exc
    return df, 2


def _number(value: object) -> float:
    """A float from a cell; NaN for blank/NaN cells; raises ValueError for text."""
    if value is None:
        return float("nan")
    if isinstance(value, (int, float, np.floating, np.integer)):
        return float(value)
    text = str(value).strip().replace(",", ".") if str(value).count(",") == 1 and "." not in str(value) else str(value).strip()
    if text == "" or text.lower() in ("nan", "na", "n/a", "none", "-"):
        return float("nan")
    return float(text)


def read_labels(path: str | Path) -> LabelTable:
    """Read a label table (CSV, TSV or XLSX; the first sheet with the columns).

    Skipped and reported: unknown feature types, non-numeric depths, a
    missing ``depth from``, ``depth to`` above ``depth from``, a melt layer
    without ``depth to``, and exact duplicates.

    Raises:
        LabelTableError: the file is missing, unreadable or lacks a column.
    """
    path = Path(path)
    if not path.is_file():
        raise LabelTableError("label table not found", path)
    df, first_row = _read_frame(path)
    cols = _find_columns(df)
    if cols is None:
        missing = [c for c in REQUIRED if c not in (_find_columns(df) or {})]
        have = ", ".join(map(str, df.columns))
        raise LabelTableError(f"column(s) {', '.join(repr(c) for c in missing) or REQUIRED} missing (found: {have})", path)
    problems: list[Problem] = []
    rows = []
    seen: set[tuple] = set()
    get = lambda rec, name: rec.get(cols[name]) if name in cols else None  # noqa: E731
    for i, rec in enumerate(df.to_dict("records")):
        line = first_row + i
        raw_type = " ".join(str(get(rec, "type of feature") or "").split())
        if all(str(v).strip() in ("", "nan", "None") for v in rec.values()):
            continue  # an empty spreadsheet row
        kind = feature_type(raw_type)
        if kind is None:
            problems.append(Problem("label_unknown_type", str(path), line, f"unknown type of feature '{raw_type}'; row skipped"))
            continue
        try:
            top = _number(get(rec, "depth from"))
            bottom = _number(get(rec, "depth to"))
        except ValueError:
            problems.append(Problem("label_bad_depth", str(path), line,
                                    f"depth '{get(rec, 'depth from')}' / '{get(rec, 'depth to')}' is not a number; row skipped"))
            continue
        if not np.isfinite(top):
            problems.append(Problem("label_bad_depth", str(path), line, "no 'depth from'; row skipped"))
            continue
        if not np.isfinite(bottom):
            if kind == MELT_LAYER:
                problems.append(Problem("label_bad_depth", str(path), line, "melt layer without 'depth to'; row skipped"))
                continue
            bottom = top
        if bottom < top:
            problems.append(Problem("label_negative_thickness", str(path), line,
                                    f"'depth to' {bottom} m is above 'depth from' {top} m; row skipped"))
            continue
        key = (kind, round(top, 6), round(bottom, 6))
        if key in seen:
            problems.append(Problem("label_duplicate", str(path), line, f"duplicate of an earlier {kind} at {top} m; row skipped"))
            continue
        seen.add(key)
        try:
            bag = _number(get(rec, "bag"))
        except ValueError:
            bag = float("nan")
        try:
            age_b2k, age_ce = _number(get(rec, "age (b2k)")), _number(get(rec, "age (CE)"))
        except ValueError:
            age_b2k = age_ce = float("nan")
        rows.append({"line": line, "bag": bag, "depth_from_m": top, "depth_to_m": bottom, "type": kind,
                     "raw_type": raw_type, "age_b2k": age_b2k, "age_ce": age_ce})
    table = pd.DataFrame(rows, columns=COLUMNS)
    return LabelTable(table, str(path), problems)


def write_labels(table: pd.DataFrame, path: str | Path) -> None:
    """Write a label table in the published format (CSV, or TSV for ``.tab``/``.tsv``).

    ``table`` needs the :data:`SOURCE_COLUMNS`; NaN cells are written as ``NaN``
    as in the published logs.
    """
    sep = "\t" if Path(path).suffix.lower() in (".tab", ".tsv") else ","
    out = table[SOURCE_COLUMNS].copy()
    out["bag"] = pd.array([None if pd.isna(b) else int(b) for b in out["bag"]], dtype="Int64")
    for col, fmt in (("depth from", "{:.4f}"), ("depth to", "{:.4f}"), ("age (b2k)", "{:.3f}"), ("age (CE)", "{:.1f}")):
        out[col] = [("NaN" if pd.isna(v) else fmt.format(float(v))) for v in out[col]]
    write_csv(out, path, sep=sep, na_rep="NaN")
