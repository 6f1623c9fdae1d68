"""Precise exceptions raised by the library; only the CLI turns them into messages."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class MeltlocError(Exception):
    """Base of every error meltloc raises on purpose.

    Args:
        message: what is wrong and, where it helps, what to do.
        path: the file concerned, if any.
        row: the 1-based line (or spreadsheet row) in that file, if any.
    """

    def __init__(self, message: str, path: str | Path | None = None, row: int | None = None):
        self.message = message
        self.path = None if path is None else str(path)
        self.row = row
        super().__init__(self.__str__())

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = self.path + (f", row {self.row}" if self.row is not None else "") + ": "
        return where + self.message


class ManifestError(MeltlocError):
    """The section manifest cannot be used."""


class LabelTableError(MeltlocError):
    """The label table cannot be used."""


class ImageReadError(MeltlocError):
    """An image is missing, corrupt, truncated or of an unsupported kind."""


class GeometryError(MeltlocError):
    """No core (or no plausible core ends) found in an image."""


class CheckpointError(MeltlocError):
    """A weights file is missing or is not a checkpoint meltloc can use."""


class DatasetError(MeltlocError):
    """A convert output folder is missing or incomplete."""


class OutputError(MeltlocError):
    """An output cannot be written (disk full, no permission); what was finished is kept."""


class EvaluationError(MeltlocError):
    """Detections or truth cannot be scored (missing columns, nothing to compare)."""


@dataclass(frozen=True)
class Problem:
    """One bad input row that was skipped (reported, never fatal on its own).

    Attributes:
        kind: short machine-readable kind, e.g. ``label_outside_sections``.
        path: file concerned.
        row: 1-based row in that file, or None.
        message: human-readable detail.
    """

    kind: str
    path: str
    row: int | None
    message: str

    def __str__(self) -> str:
        row = f", row {self.row}" if self.row is not None else ""
        return f"{self.path}{row}: {self.message}"


class SplitError(MeltlocError):
    """A splits file or split fractions cannot be used."""


def problem_lines(problems, first: int = 1) -> list[str]:
    """One line per kind of problem: the first case(s) and how many more there are.

    Real inputs hold many bad rows of one kind (a melt log covers far more core
    than was imaged); a person wants one line per kind, not thousands.
    """
    by_kind: dict[str, list[Problem]] = {}
    for p in problems:
        by_kind.setdefault(p.kind, []).append(p)
    lines = []
    for items in by_kind.values():
        more = f" (and {len(items) - first} more like it)" if len(items) > first else ""
        lines.extend(str(p) for p in items[:first - 1])
        lines.append(str(items[min(first, len(items)) - 1]) + more)
    return lines
