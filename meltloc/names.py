"""Image and section names: their natural order, and finding a name among others (exact, else unique stem).

Also the one nominal length of a section. The lowest layer: imports nothing of meltloc.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

SECTION_LENGTH_M = 1.65
"""Nominal length of one EastGRIP section (one image), used only where an image has no manifest entry."""


def natural_key(name: str | Path) -> tuple:
    """Sort key putting ``227.bmp`` before ``1001.bmp`` (digit runs compare as numbers)."""
    parts = [part for part in re.split(r"(\d+)", str(name)) if part]
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in parts)


class NameIndex:
    """Find image names among known ones: the exact file name first, else a unique stem.

    ``227.png`` finds ``227.bmp`` when no other ``227.*`` is known, so images
    converted to another format keep their depths, labels and truth.
    """

    def __init__(self, known: Iterable[str]):
        self.known = list(dict.fromkeys(str(k) for k in known))
        self._exact = set(self.known)
        self._stems: dict[str, list[str]] = {}
        for name in self.known:
            self._stems.setdefault(Path(name).stem, []).append(name)

    def find(self, name: str | Path) -> str | None:
        """The known name ``name`` stands for, or None (unknown, or its stem is ambiguous)."""
        name = Path(str(name)).name
        if name in self._exact:
            return name
        hits = self._stems.get(Path(name).stem, [])
        return hits[0] if len(hits) == 1 else None
