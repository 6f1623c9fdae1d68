"""Train/val/test splits by section: exposure variants of one section never straddle.

Seeded rule (:func:`split_sections`): every section gets a key
``sha256("<seed>:<section>")``; sections are ranked by it, the first
``round(test * n)`` go to test, the next ``round(val * n)`` to val, the rest
to train (with at least one section in each asked-for split once there are
three or more sections). The key depends only on the seed and the section
name, so a section keeps its split, mostly, when more sections are added.

A splits file (:func:`read_splits`) is a CSV/TSV with a ``split`` column and
an ``image`` or ``section`` column; an image names its section
(:func:`meltloc.manifest.section_of`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

from meltloc.errors import Problem, SplitError
from meltloc.manifest import section_of
from meltloc.names import natural_key

SPLITS = ("train", "val", "test")


def check_fractions(val: float, test: float) -> None:
    """Raise :class:`SplitError` unless both fractions are in [0, 1) and leave sections for training."""
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise SplitError(f"split fractions val={val}, test={test} must be in [0, 1) with a sum below 1")


def split_sections(sections: list[str], val: float = 0.15, test: float = 0.15, seed: int = 0) -> dict[str, str]:
    """Assign each section to train, val or test by the seeded rule above.

    Args:
        sections: section names (duplicates are fine).
        val, test: fractions of the sections; their sum must stay below 1.
        seed: the same seed gives the same splits.

    Raises:
        SplitError: fractions out of range.
    """
    check_fractions(val, test)
    unique = sorted(set(sections), key=natural_key)
    n = len(unique)
    ranked = sorted(unique, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    n_test, n_val = int(round(test * n)), int(round(val * n))
    if n >= 3:
        n_test = max(n_test, 1) if test > 0 else 0
        n_val = max(n_val, 1) if val > 0 else 0
    while n_test + n_val >= n and n_test + n_val > 0:  # keep at least one train section
        if n_val >= n_test and n_val > 0:
            n_val -= 1
        else:
            n_test -= 1
    out = {}
    for i, section in enumerate(ranked):
        out[section] = "test" if i < n_test else ("val" if i < n_test + n_val else "train")
    return {s: out[s] for s in unique}


def read_splits(path: str | Path) -> tuple[dict[str, str], list[Problem]]:
    """Read a splits file: section -> split, and the rows that were skipped.

    Rows with an unknown split name are skipped and reported.

    Raises:
        SplitError: the file is missing or unreadable, lacks the columns, or
            puts two images of one section into different splits.
    """
    path = Path(path)
    if not path.is_file():
        raise SplitError("splits file not found", path)
    text = path.read_text(encoding="utf-8-sig", errors="replace")
    if not text.strip():
        raise SplitError("the splits file is empty", path)
    sep = "\t" if "\t" in text.splitlines()[0] else ","
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise SplitError(f"not a table: {exc}", path) from exc
    df.columns = [str(c).strip().lower() for c in df.columns]
    key = "section" if "section" in df.columns else ("image" if "image" in df.columns else None)
    if key is None or "split" not in df.columns:
        raise SplitError(f"a splits file needs the columns 'split' and 'image' or 'section' "
                         f"(found: {', '.join(df.columns)})", path)
    out: dict[str, str] = {}
    where: dict[str, int] = {}
    problems: list[Problem] = []
    for i, rec in enumerate(df.to_dict("records")):
        line = i + 2
        name, split = str(rec[key]).strip(), str(rec["split"]).strip().lower()
        if not name:
            continue
        if split not in SPLITS:
            problems.append(Problem("split_unknown", str(path), line,
                                    f"unknown split '{rec['split']}' for {name} (use train, val or test); row skipped"))
            continue
        section = section_of(name) if key == "image" else name
        if section in out and out[section] != split:
            raise SplitError(f"section {section} is put in '{out[section]}' (row {where[section]}) and in '{split}': "
                             "images of one section must share a split", path, line)
        out[section] = split
        where.setdefault(section, line)
    return out, problems


def assign_splits(sections: list[str], val: float = 0.15, test: float = 0.15, seed: int = 0,
                  given: dict[str, str] | None = None, source: str = "") -> tuple[dict[str, str], list[Problem]]:
    """Splits for the given sections: as ``given`` (read by :func:`read_splits`) when there, else by the seeded rule.

    Sections that ``given`` does not name are split by the seeded rule among
    themselves and reported (kind ``split_unlisted``, file ``source``).
    """
    if given is None:
        return split_sections(sections, val, test, seed), []
    missing = sorted({s for s in sections if s not in given}, key=natural_key)
    out = {s: given[s] for s in set(sections) if s in given}
    problems = []
    if missing:
        out.update(split_sections(missing, val, test, seed))
        for s in missing:
            problems.append(Problem("split_unlisted", source, None,
                                    f"section {s} is not in the splits file; put in '{out[s]}' by the seeded rule"))
    return out, problems
