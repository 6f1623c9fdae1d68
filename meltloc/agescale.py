"""Depth-age scales and thinning tables: depth/value pairs read from CSV, TSV, PANGAEA tab or XLSX.

A depth-age scale (EastGRIP uses GICC05) is given as pairs of a depth in meters
and an age in years b2k (before 2000 CE, so ``age_ce = 2000 - age_b2k``).
Ages between pairs are interpolated linearly; depths outside the scale get no
age. Depth must increase strictly from row to row and age must not decrease;
a table that breaks either, holds text or lacks a column raises
:class:`AgeScaleError` naming the file and the row.

A thinning table gives, per depth, the fraction of its original thickness a
layer keeps (1 at the surface, smaller with depth); corrected thickness =
thickness / factor.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from meltloc.errors import MeltlocError

B2K_YEAR_CE = 2000.0
"""b2k counts years before 2000 CE: age_ce = 2000 - age_b2k."""


class AgeScaleError(MeltlocError):
    """A depth-age scale or thinning table cannot be used."""


def b2k_to_ce(age_b2k):
    """Calendar year CE of an age in years b2k (``2000 - age_b2k``); works on arrays."""
    return B2K_YEAR_CE - np.asarray(age_b2k, dtype=np.float64)


def _key(name: object) -> str:
    """A header reduced to lower-case letters and digits: ``'GICC05 Age (b2k)'`` -> ``'gicc05ageb2k'``."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _depth_like(key: str) -> bool:
    return key.startswith("depth") or key in ("d", "dm", "z", "zm")


def _age_like(key: str) -> bool:
    return "b2k" in key or ("age" in key and not key.endswith("ce"))


def _thinning_like(key: str) -> bool:
    return "thinning" in key or key in ("factor", "thinningfactor")


@dataclass(frozen=True)
class DepthTable:
    """Depth/value pairs, depth strictly increasing.

    Attributes:
        depth_m: depths in meters.
        value: the value at each depth (age in years b2k, or a thinning factor).
        path: where it was read from (for messages).
    """

    depth_m: np.ndarray
    value: np.ndarray
    path: str = ""

    def at(self, depth_m):
        """Linear interpolation at ``depth_m`` (scalar or array); NaN outside the table's depths."""
        d = np.asarray(depth_m, dtype=np.float64)
        out = np.interp(d, self.depth_m, self.value)
        out = np.where((d < self.depth_m[0]) | (d > self.depth_m[-1]) | ~np.isfinite(d), np.nan, out)
        return out if out.ndim else float(out)

    def depth_at(self, value):
        """The depth of a value (inverse of :meth:`at`; the value must not decrease with depth); NaN outside."""
        v = np.asarray(value, dtype=np.float64)
        out = np.interp(v, self.value, self.depth_m)
        out = np.where((v < self.value[0]) | (v > self.value[-1]) | ~np.isfinite(v), np.nan, out)
        return out if out.ndim else float(out)

    @property
    def top_m(self) -> float:
        return float(self.depth_m[0])

    @property
    def bottom_m(self) -> float:
        return float(self.depth_m[-1])


AgeScale = DepthTable
"""A depth-age scale: :class:`DepthTable` whose values are ages in years b2k."""


def _read_frame(path: Path) -> tuple[pd.DataFrame, int]:
    """The raw table (strings) and the file row of its first data row."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm", ".xls"):
        try:
            sheets = pd.read_excel(path, sheet_name=None, dtype=object)
        except Exception as exc:  # openpyxl raises many kinds
            raise AgeScaleError(f"cannot read as a spreadsheet: {exc}", path) from exc
        for df in sheets.values():
            if any(_depth_like(_key(c)) for c in df.columns):
                return df, 2
        first = next(iter(sheets.values()), pd.DataFrame())
        return first, 2
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise AgeScaleError(f"cannot read: {exc.strerror}", path) from exc
    lines = text.splitlines()
    start = 0
    if lines and lines[0].lstrip().startswith("/*"):  # PANGAEA header block
        start = next((i + 1 for i, line in enumerate(lines) if line.rstrip().endswith("*/")), None)
        if start is None:
            raise AgeScaleError("the '/*' header block is never closed by '*/'", path)
    while start < len(lines) and (not lines[start].strip() or lines[start].lstrip().startswith("#")):
        start += 1  # comment lines (e.g. '# made up') and blank lines before the header
    if start >= len(lines):
        raise AgeScaleError("the table is empty", path)
    header = lines[start]
    sep = "\t" if "\t" in header else ("," if "," in header else ";" if ";" in header else r"\s+")
    body = "\n".join(lines[start:])
    try:
        df = pd.read_csv(io.StringIO(body), sep=sep, dtype=str, keep_default_na=False, comment="#",
                         engine="python" if len(sep) > 1 else "c", skipinitialspace=True)
    except pd.errors.ParserError as exc:
        raise AgeScaleError(f"not a table: {exc}", path) from exc
    return df, start + 2


def _pick(df: pd.DataFrame, given: str | None, like, what: str, option: str, path: Path) -> str:
    columns = [str(c) for c in df.columns]
    if given is not None:
        for c in columns:
            if c.strip() == given.strip() or _key(c) == _key(given):
                return c
        raise AgeScaleError(f"no column '{given}' (found: {', '.join(columns)})", path)
    hits = [c for c in columns if like(_key(c))]
    if not hits:
        raise AgeScaleError(f"no {what} column (found: {', '.join(columns) or 'none'}); name it with {option}", path)
    if len(hits) > 1:
        exact = [c for c in hits if _key(c) in ("depthm", "depth", "ageb2k", "age", "gicc05ageb2k", "thinning",
                                                  "thinningfactor")]
        if len(exact) != 1:
            raise AgeScaleError(f"several {what} columns ({', '.join(hits)}); choose one with {option}", path)
        return exact[0]
    return hits[0]


def _numbers(values, column: str, first_row: int, path: Path) -> np.ndarray:
    out = np.empty(len(values))
    for i, v in enumerate(values):
        text = str(v).strip() if v is not None else ""
        try:
            out[i] = float(text) if text else np.nan
        except ValueError:
            raise AgeScaleError(f"'{column}' is '{text}', not a number", path, first_row + i) from None
        if not np.isfinite(out[i]):
            raise AgeScaleError(f"'{column}' is empty", path, first_row + i)
    return out


def read_depth_table(path: str | Path, *, what: str = "age", depth_column: str | None = None,
                     value_column: str | None = None, value_option: str = "--age-column") -> DepthTable:
    """Read depth/value pairs (CSV, TSV, PANGAEA tab or XLSX; ``#`` lines are comments).

    Args:
        what: ``age`` (values in years b2k, must not decrease with depth) or
            ``thinning`` (factors, must lie in (0, 1.5]).
        depth_column, value_column: header names; by default a header like
            ``depth_m`` / ``Depth [m]`` and ``age_b2k`` / ``Age (b2k)`` /
            ``GICC05 age (b2k)`` (or ``thinning`` / ``thinning factor``).

    Raises:
        AgeScaleError: missing file or column, text or blanks in a column,
            depth not strictly increasing, age decreasing, fewer than two rows.
    """
    path = Path(path)
    if not path.is_file():
        raise AgeScaleError(f"{'depth-age scale' if what == 'age' else 'thinning table'} not found", path)
    df, first_row = _read_frame(path)
    like = _age_like if what == "age" else _thinning_like
    dcol = _pick(df, depth_column, _depth_like, "depth", "--depth-column", path)
    vcol = _pick(df, value_column, like, "age (b2k)" if what == "age" else "thinning factor", value_option, path)
    if what == "age":
        unit = _key(vcol).replace("gicc05", "")
        if re.search(r"ka|kyr", unit):
            raise AgeScaleError(f"column '{vcol}' seems to be in thousands of years: give ages in years b2k", path)
        if "bp" in unit:
            raise AgeScaleError(f"column '{vcol}' seems to count years before 1950 (BP): give years b2k "
                                "(b2k = BP + 50)", path)
    keep = [i for i, rec in enumerate(df[[dcol, vcol]].itertuples(index=False))
            if any(str(v).strip() not in ("", "nan", "None") for v in rec)]  # skip empty spreadsheet rows
    rows = np.asarray(keep, dtype=int)
    depth = np.empty(len(rows))
    value = np.empty(len(rows))
    for j, i in enumerate(rows):
        depth[j] = _numbers([df[dcol].iloc[i]], dcol, first_row + i, path)[0]
        value[j] = _numbers([df[vcol].iloc[i]], vcol, first_row + i, path)[0]
    if len(depth) < 2:
        raise AgeScaleError(f"needs at least two rows of depth and {what}, found {len(depth)}", path)
    for j in range(1, len(depth)):
        if depth[j] <= depth[j - 1]:
            raise AgeScaleError(f"depth {depth[j]:g} m does not increase (row above: {depth[j - 1]:g} m); "
                                "sort the table by depth and remove repeated depths", path, first_row + rows[j])
        if what == "age" and value[j] < value[j - 1]:
            raise AgeScaleError(f"age {value[j]:g} b2k is younger than the row above ({value[j - 1]:g} b2k); "
                                "ages must not decrease with depth", path, first_row + rows[j])
    if what == "thinning":
        bad = np.flatnonzero((value <= 0) | (value > 1.5))
        if len(bad):
            raise AgeScaleError(f"thinning factor {value[bad[0]]:g} is not in (0, 1.5]: give the fraction of its "
                                "original thickness a layer keeps", path, first_row + rows[bad[0]])
    return DepthTable(depth, value, str(path))


def read_age_scale(path: str | Path, depth_column: str | None = None, age_column: str | None = None) -> AgeScale:
    """Read a depth-age scale (depth in m, age in years b2k); see :func:`read_depth_table`."""
    return read_depth_table(path, what="age", depth_column=depth_column, value_column=age_column)


def read_thinning(path: str | Path, depth_column: str | None = None, factor_column: str | None = None) -> DepthTable:
    """Read a thinning table (depth in m, the fraction of original thickness kept)."""
    return read_depth_table(path, what="thinning", depth_column=depth_column, value_column=factor_column,
                            value_option="--thinning-column")


def scale_from_labels(table: pd.DataFrame, path: str = "") -> AgeScale:
    """A depth-age scale from a melt log's own ``depth from`` / ``age (b2k)`` pairs.

    ``table`` is :attr:`meltloc.labels.LabelTable.table` (``depth_from_m``,
    ``age_b2k``, ``line``). Rows without an age are left out; pairs at the
    same depth must give the same age.

    Raises:
        AgeScaleError: fewer than two dated rows, or an age that decreases with depth.
    """
    dated = table[np.isfinite(table["age_b2k"].astype(float)) & np.isfinite(table["depth_from_m"].astype(float))]
    dated = dated.sort_values(["depth_from_m", "line"], kind="stable")
    depth, age, line = (dated["depth_from_m"].to_numpy(float), dated["age_b2k"].to_numpy(float),
                        dated["line"].to_numpy())
    keep_d, keep_a = [], []
    for j in range(len(depth)):
        if keep_d and depth[j] == keep_d[-1]:
            if abs(age[j] - keep_a[-1]) > 1e-6:
                raise AgeScaleError(f"two ages ({keep_a[-1]:g} and {age[j]:g} b2k) for depth {depth[j]:g} m",
                                    path, int(line[j]))
            continue
        if keep_a and age[j] < keep_a[-1]:
            raise AgeScaleError(f"age {age[j]:g} b2k at {depth[j]:g} m is younger than {keep_a[-1]:g} b2k at "
                                f"{keep_d[-1]:g} m: the log's ages cannot serve as a scale", path, int(line[j]))
        keep_d.append(depth[j])
        keep_a.append(age[j])
    if len(keep_d) < 2:
        raise AgeScaleError("--age-scale from-labels needs at least two rows with 'depth from' and 'age (b2k)'", path)
    return DepthTable(np.asarray(keep_d), np.asarray(keep_a), path)
