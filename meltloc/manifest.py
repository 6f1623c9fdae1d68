"""The section manifest: which image shows which depth range of the core.

Reads the PANGAEA tab file as published (``EGRIP_visual_strat.tab``: a
``/* ... */`` header block, then a tab-separated table) and the plain CSV
``image,top_m,bottom_m``. Bad rows are skipped and reported as
:class:`~meltloc.errors.Problem`; a file with nothing usable raises
:class:`~meltloc.errors.ManifestError`.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from meltloc.atomic import write_csv, write_text
from meltloc.errors import ManifestError, Problem
from meltloc.names import NameIndex

COLUMNS = ["image", "top_m", "bottom_m", "section", "variant", "exposure", "focus", "line"]
_PANGAEA_NAMES = {"image": "File name", "top_m": "Depth top [m]", "bottom_m": "Depth bot [m]"}
_EXPOSURES = {"": "dark", "1": "bright", "2": "additional-2", "3": "additional-3", "4": "additional-4"}


def section_of(image: str) -> str:
    """The section an image shows: the leading number of its file name.

    Exposure and focus variants of one section (``227.bmp``, ``227_1.bmp``,
    ``227_24mm.bmp``) share it; splits are made on it.
    """
    stem = Path(str(image)).name
    match = re.match(r"\s*(\d+)", stem)
    return match.group(1) if match else Path(stem).stem


def variant_of(image: str) -> str:
    """The variant part of a file name after the section number: '' for ``227.bmp``, ``_1`` for ``227_1.bmp``."""
    stem = Path(str(image)).stem
    match = re.match(r"\s*\d+(.*)$", stem)
    return match.group(1) if match else ""


def exposure_of(image: str) -> str:
    """The exposure variant named by a file name: ``dark`` for ``227.bmp``, ``bright`` for ``227_1.bmp``."""
    stem = Path(str(image)).stem
    match = re.match(r"\s*\d+(?:_(.*))?$", stem)
    suffix = (match.group(1) or "") if match else stem
    return _EXPOSURES.get(suffix, suffix)


#: The order in which detect picks one image per section by default: the manifest's ``Integration``
#: option (``[ ]`` dark, ``1`` bright, ``2``-``4`` additional), dark first.
EXPOSURE_ORDER = tuple(_EXPOSURES.values())


def exposure_rank(exposure: str | None, focus: str | None = None) -> tuple[int, int, str]:
    """Sort key of an image variant for "one image per section": dark, bright, additional-2, -3, -4, then any
    other named variant; the standard focus (40 mm) before a modified one."""
    exposure = exposure or "dark"
    i = EXPOSURE_ORDER.index(exposure) if exposure in EXPOSURE_ORDER else len(EXPOSURE_ORDER)
    return i, 0 if focus in (None, "", "40mm") else 1, exposure


@dataclass
class Manifest:
    """Section depths by image name.

    Attributes:
        path: where it was read from (or None).
        table: one row per image, columns :data:`COLUMNS`, in file order;
            ``line`` is the 1-based line of the row in the file.
        problems: rows that were skipped or look wrong.
    """

    table: pd.DataFrame
    path: str | None = None
    problems: list[Problem] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._by_name = {name: i for i, name in enumerate(self.table["image"])}
        self._names = NameIndex(self.table["image"])

    def __len__(self) -> int:
        return len(self.table)

    def find(self, image: str | Path) -> pd.Series | None:
        """The manifest row of an image file, by exact name, else by unique stem.

        ``227.png`` finds ``227.bmp`` when no other ``227.*`` is listed, so
        images converted to another format keep their depths.
        """
        name = self._names.find(image)
        return None if name is None else self.table.iloc[self._by_name[name]]

    def select(self, exposures: list[str] | None) -> "Manifest":
        """Only the images of the given exposures (``dark``, ``bright``, ...); all if None."""
        if not exposures:
            return self
        keep = self.table["exposure"].isin(exposures)
        return Manifest(self.table[keep].reset_index(drop=True), self.path, list(self.problems))


def _read_pangaea(path: Path, text: str) -> tuple[pd.DataFrame, int]:
    """The data table of a PANGAEA tab file and the file line number of its header."""
    lines = text.splitlines()
    start = 0
    if lines and lines[0].lstrip().startswith("/*"):
        for i, line in enumerate(lines):
            if line.rstrip().endswith("*/"):
                start = i + 1
                break
        else:
            raise ManifestError("the '/*' header block is never closed by '*/'", path)
    body = "\n".join(lines[start:])
    df = pd.read_csv(io.StringIO(body), sep="\t", dtype=str, keep_default_na=False)
    df.columns = [c.strip() for c in df.columns]
    rename = {}
    for ours, theirs in _PANGAEA_NAMES.items():
        if theirs not in df.columns:
            raise ManifestError(
                f"column '{theirs}' is missing (found: {', '.join(df.columns)}); "
                "expected a PANGAEA tab file like EGRIP_visual_strat.tab or a CSV image,top_m,bottom_m",
                path,
            )
        rename[theirs] = ours
    integration = next((c for c in df.columns if c.startswith("Integration")), None)
    focus = next((c for c in df.columns if c.startswith("Mod focus level")), None)
    out = df.rename(columns=rename)
    out["exposure"] = out[integration].str.strip().map(lambda v: _EXPOSURES.get(v, v)) if integration else None
    out["focus"] = out[focus].str.strip().replace("", "40mm") if focus else "40mm"
    return out, start + 2  # 1-based line of the first data row


def _read_csv(path: Path, text: str) -> tuple[pd.DataFrame, int]:
    sep = "\t" if "\t" in text.splitlines()[0] else ","
    df = pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    df.columns = [c.strip().lower() for c in df.columns]
    missing = [c for c in ("image", "top_m", "bottom_m") if c not in df.columns]
    if missing:
        raise ManifestError(
            f"column(s) {', '.join(missing)} missing (found: {', '.join(df.columns)}); "
            "a CSV manifest needs image,top_m,bottom_m",
            path,
        )
    df["exposure"] = df["exposure"] if "exposure" in df.columns else None
    df["focus"] = df["focus"] if "focus" in df.columns else "40mm"
    return df, 2


def decode_text(raw: bytes) -> str:
    """Text of a table file: UTF-8 (with or without BOM), else Windows-1252 as Excel exports it."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def read_manifest(path: str | Path) -> Manifest:
    """Read a section manifest (PANGAEA tab or CSV ``image,top_m,bottom_m``).

    Rows with a blank name, non-numeric depths, ``bottom_m <= top_m`` or a
    name already listed are skipped and reported in ``Manifest.problems``.
    Sections (not exposure variants of one section) whose depth ranges
    overlap are reported but kept.

    Raises:
        ManifestError: the file is missing, unreadable, lacks a column, or
            has no usable row.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError("manifest file not found", path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read: {exc.strerror}", path) from exc
    if raw.startswith((b"PK\x03\x04", b"\xd0\xcf\x11\xe0")):
        raise ManifestError("is an Excel workbook, not a table of text: save it as CSV (image,top_m,bottom_m) or "
                            "give the PANGAEA .tab file", path)
    text = decode_text(raw)
    if not text.strip():
        raise ManifestError("the manifest is empty", path)
    try:
        if text.lstrip().startswith("/*") or "File name" in text.splitlines()[0]:
            df, first_line = _read_pangaea(path, text)
        else:
            df, first_line = _read_csv(path, text)
    except pd.errors.ParserError as exc:
        raise ManifestError(f"not a table: {exc}", path) from exc

    problems: list[Problem] = []
    rows = []
    seen: set[str] = set()
    for i, rec in enumerate(df.to_dict("records")):
        line = first_line + i
        name = str(rec.get("image", "")).strip()
        if not name:
            problems.append(Problem("manifest_blank_name", str(path), line, "blank image name; row skipped"))
            continue
        try:
            top, bottom = float(str(rec["top_m"]).strip()), float(str(rec["bottom_m"]).strip())
        except ValueError:
            problems.append(Problem("manifest_bad_depth", str(path), line,
                                    f"{name}: depths '{rec['top_m']}', '{rec['bottom_m']}' are not numbers; row skipped"))
            continue
        if not (np.isfinite(top) and np.isfinite(bottom)) or bottom <= top:
            problems.append(Problem("manifest_bad_depth", str(path), line,
                                    f"{name}: bottom {bottom} m is not below top {top} m; row skipped"))
            continue
        if name in seen:
            problems.append(Problem("manifest_duplicate", str(path), line,
                                    f"{name} is listed twice; the first entry is kept"))
            continue
        seen.add(name)
        exposure = rec.get("exposure")
        rows.append({
            "image": name,
            "top_m": top,
            "bottom_m": bottom,
            "section": section_of(name),
            "variant": variant_of(name),
            "exposure": exposure if isinstance(exposure, str) and exposure else exposure_of(name),
            "focus": rec.get("focus") or "40mm",
            "line": line,
        })
    if not rows:
        raise ManifestError("no usable row" + (f" ({problems[0].message})" if problems else ""), path)
    table = pd.DataFrame(rows, columns=COLUMNS)
    problems.extend(_overlaps(table, str(path)))
    return Manifest(table, str(path), problems)


def _overlaps(table: pd.DataFrame, path: str) -> list[Problem]:
    """Distinct sections whose depth ranges overlap by more than a millimetre."""
    spans = table.groupby("section").agg(top_m=("top_m", "min"), bottom_m=("bottom_m", "max")).sort_values("top_m")
    out = []
    prev = None
    for section, rec in spans.iterrows():
        if prev is not None and rec.top_m < prev[1] - 1e-3:
            out.append(Problem("manifest_overlap", path, None,
                               f"sections {prev[0]} and {section} overlap ({rec.top_m:.3f} m < {prev[1]:.3f} m)"))
        if prev is None or rec.bottom_m > prev[1]:
            prev = (section, rec.bottom_m)
    return out


def write_manifest(table: pd.DataFrame, tab_path: str | Path | None = None, csv_path: str | Path | None = None,
                   citation: str = "meltloc synthetic core") -> None:
    """Write a manifest as a PANGAEA-style tab file and/or a CSV ``image,top_m,bottom_m``.

    ``table`` needs ``image``, ``top_m``, ``bottom_m``; bags are derived from
    the leading number of each file name, as in the EastGRIP manifest.
    """
    if csv_path is not None:
        write_csv(table[["image", "top_m", "bottom_m"]], csv_path, float_format="%.4f")
    if tab_path is None:
        return
    header = [
        "/* DATA DESCRIPTION:",
        f"Citation:\t{citation}",
        "Parameter(s):\tFile name (File name)",
        "\tBinary Object (Binary)",
        "\tDepth, top/min [m] (Depth top)",
        "\tDepth, bottom/max [m] (Depth bot)",
        "\tDEPTH, ice/snow [m] (Depth ice/snow) * GEOCODE",
        "\tBag number (Bag) * COMMENT: 1st bag (55cm)",
        "\tBag number (Bag) * COMMENT: 2nd bag (55cm)",
        "\tBag number (Bag) * COMMENT: 3rd bag (55cm)",
        "\tIntegration option (Integration) * COMMENT: [ ]:=dark, 1:= bright, 2,3,4:=additional",
        "\tFocus level, modified (Mod focus level) * COMMENT: [ ]:=40mm",
        "*/",
        "\t".join([
            "File name", "Binary", "Depth top [m]", "Depth bot [m]", "Depth ice/snow [m]",
            "Bag (1st bag (55cm))", "Bag (2nd bag (55cm))", "Bag (3rd bag (55cm))",
            "Integration ([ ]:=dark, 1:= bright, 2,3,4:...)", "Mod focus level ([ ]:=40mm)",
        ]),
    ]
    inverse = {v: k for k, v in _EXPOSURES.items()}
    lines = list(header)
    for rec in table.itertuples():
        bag = int(section_of(rec.image)) if section_of(rec.image).isdigit() else ""
        bags = [str(bag + k) if bag != "" else "" for k in range(3)]
        integration = inverse.get(exposure_of(rec.image), "")
        lines.append("\t".join([
            rec.image, rec.image, f"{rec.top_m:.2f}", f"{rec.bottom_m:.2f}",
            f"{(rec.top_m + rec.bottom_m) / 2:.3f}", *bags, integration, "",
        ]))
    write_text(tab_path, "\n".join(lines) + "\n")
