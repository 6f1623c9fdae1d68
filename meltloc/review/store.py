"""The decisions file of ``meltloc review``: every decision written at once, atomically.

The file (default ``<DETECTIONS stem>.review.csv``) holds the detect columns
(with any extra columns the detections carry), then ``status``, ``note`` and
``reviewed_at`` (CONTRACT.md). Rows are never removed, so a row's position is
its id: row ``i`` of the detections is row ``i`` here, and features added by
hand are appended.

Safety:

* every change rewrites the whole file under a temporary name, synced, then
  renamed onto it (:func:`meltloc.atomic.atomic_path`): a killed server leaves
  the old file or the new one, never half of one;
* changes are serialised by a lock inside the process (two browser tabs on
  one server) and by an advisory file lock beside the file
  (``.<name>.lock``; two servers on one file); before each change the file is
  read again when another process has replaced it since, so neither
  overwrites the other's decisions.

Cells the reviewer did not touch are kept as they were written (text), so
unchanged rows read back byte for byte.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

from meltloc import MELT_LAYER, MELT_LENS
from meltloc.atomic import atomic_path
from meltloc.errors import MeltlocError

try:  # POSIX advisory locks; elsewhere only the in-process lock
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

DETECT_COLUMNS = ["image", "depth_from_m", "depth_to_m", "thickness_mm", "type", "score", "row_from", "row_to"]
REVIEW_COLUMNS = ["status", "note", "reviewed_at"]
UNREVIEWED, ACCEPTED, REJECTED, EDITED, ADDED = "unreviewed", "accepted", "rejected", "edited", "added"
STATUSES = (UNREVIEWED, ACCEPTED, REJECTED, EDITED, ADDED)
KEPT_STATUSES = (ACCEPTED, EDITED, ADDED)  # what the export writes
TYPES = (MELT_LAYER, MELT_LENS)
NOTE_MAX = 2000


class ReviewError(MeltlocError):
    """A detections or decisions file cannot be reviewed, or a decision is invalid."""


class DecisionError(ReviewError):
    """A request asks for an impossible decision (unknown row, bad status, depths out of order)."""


def default_decisions_path(detections: str | Path) -> Path:
    """``<DETECTIONS stem>.review.csv`` beside the detections."""
    detections = Path(detections)
    return detections.with_name(detections.stem + ".review.csv")


def now_utc() -> str:
    """The time of a decision: ISO 8601, UTC, seconds."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def number(text: object) -> float:
    """A float from a cell, NaN for an empty or non-numeric one."""
    try:
        value = float(str(text).strip())
    except ValueError:
        return float("nan")
    return value


def _fmt(value: float, digits: int) -> str:
    return "" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _read_table(path: Path, what: str) -> tuple[list[str], list[dict[str, str]]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise ReviewError(f"{what} not found", path) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ReviewError(f"cannot read the {what}: {exc}", path) from exc
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in (reader.fieldnames or [])]
    if not columns:
        raise ReviewError(f"the {what} is empty: expected the columns {', '.join(DETECT_COLUMNS)}", path)
    missing = [c for c in DETECT_COLUMNS if c not in columns]
    if missing:
        raise ReviewError(f"column(s) {', '.join(missing)} missing from the {what} (found: {', '.join(columns)}); "
                          "expected a 'meltloc detect' CSV", path)
    rows = []
    for rec in reader:
        rows.append({c.strip() if isinstance(c, str) else c: ("" if v is None else v) for c, v in rec.items()
                     if isinstance(c, str)})
    return columns, rows


@dataclass(frozen=True)
class Scale:
    """Depth <-> row of one image (``meltloc.geometry.DepthScale`` in the form the store needs)."""

    top_m: float
    top_row: float
    px_per_m: float

    def row(self, depth_m: float) -> float:
        return self.top_row + (depth_m - self.top_m) * self.px_per_m


class DecisionStore:
    """The decisions of one review, kept in memory and in the decisions file.

    Args:
        detections: the detect CSV.
        decisions: the decisions file; created from the detections when absent,
            continued when present.
        depth_range: image name -> (top_m, bottom_m) of its section, to check
            depths of edits and additions (optional).
        scale_of: image name -> :class:`Scale` or None, to fill ``row_from`` /
            ``row_to`` of edited and added rows (optional; rows stay empty without).

    Raises:
        ReviewError: a file cannot be read, lacks a column, or the decisions
            file was made from other detections.
    """

    def __init__(self, detections: str | Path, decisions: str | Path | None = None,
                 depth_range: Callable[[str], tuple[float, float] | None] | None = None,
                 scale_of: Callable[[str], Scale | None] | None = None):
        self.detections = Path(detections)
        self.path = Path(decisions) if decisions is not None else default_decisions_path(self.detections)
        self.depth_range = depth_range or (lambda image: None)
        self.scale_of = scale_of or (lambda image: None)
        self._lock = threading.RLock()
        self._stamp: tuple | None = None
        self.version = 0
        if self.path.resolve() == self.detections.resolve():
            raise ReviewError("the decisions file would replace the detections; give another --decisions", self.path)
        det_columns, det_rows = _read_table(self.detections, "detections file")
        det_columns = [c for c in det_columns if c not in REVIEW_COLUMNS]
        with self._file_lock():
            if self.path.exists():
                self._load()
                self._check_made_from(det_rows)
            else:
                self.columns = det_columns + REVIEW_COLUMNS
                self.rows = [{**{c: r.get(c, "") for c in det_columns}, "status": UNREVIEWED, "note": "",
                              "reviewed_at": ""} for r in det_rows]
                self._write()

    # -- file handling -------------------------------------------------------------------------

    @contextlib.contextmanager
    def _file_lock(self) -> Iterator[None]:
        with self._lock:
            if fcntl is None:
                yield
                return
            lock_path = self.path.with_name(f".{self.path.name}.lock")
            lock_path.parent.mkdir(parents=True, exist_ok=True)
            with open(lock_path, "a") as f:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(f.fileno(), fcntl.LOCK_UN)

    def _file_stamp(self) -> tuple | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_ino, st.st_mtime_ns, st.st_size

    def _load(self) -> None:
        columns, rows = _read_table(self.path, "decisions file")
        missing = [c for c in REVIEW_COLUMNS if c not in columns]
        if missing:
            raise ReviewError(f"column(s) {', '.join(missing)} missing: not a 'meltloc review' decisions file",
                              self.path)
        for i, row in enumerate(rows):
            if row.get("status", "") not in STATUSES:
                raise ReviewError(f"unknown status '{row.get('status')}' (expected {', '.join(STATUSES)})",
                                  self.path, i + 2)
        self.columns = [c for c in columns if c not in REVIEW_COLUMNS] + REVIEW_COLUMNS
        self.rows = rows
        self._stamp = self._file_stamp()

    def _check_made_from(self, det_rows: list[dict[str, str]]) -> None:
        own = [r for r in self.rows if r["status"] != ADDED]
        same = len(own) == len(det_rows) and all(
            a.get("image") == b.get("image") and a.get("score") == b.get("score") for a, b in zip(own, det_rows))
        if not same:
            raise ReviewError(f"this decisions file was made from other detections than {self.detections} "
                              f"({len(own)} detected rows here, {len(det_rows)} there): give another --decisions "
                              "file, or move this one away to start over", self.path)

    def _write(self) -> None:
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=self.columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="") as f:
                f.write(buf.getvalue())
                f.flush()
                os.fsync(f.fileno())
        self._stamp = self._file_stamp()
        self.version += 1

    def _refresh(self) -> None:
        """Read the file again when another process replaced it since our last read or write."""
        stamp = self._file_stamp()
        if stamp is not None and stamp != self._stamp:
            self._load()
            self.version += 1

    def reload(self) -> int:
        """Pick up changes made by another process; returns the version."""
        with self._file_lock():
            self._refresh()
            return self.version

    # -- reading -------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, index: int) -> dict[str, str]:
        with self._lock:
            if not 0 <= index < len(self.rows):
                raise DecisionError(f"no row {index} (the decisions hold rows 0-{len(self.rows) - 1})")
            return dict(self.rows[index])

    def snapshot(self) -> list[dict[str, str]]:
        with self._lock:
            return [dict(r) for r in self.rows]

    # -- changes -------------------------------------------------------------------------------

    def _check_depths(self, image: str, depth_from_m: float, depth_to_m: float, kind: str) -> None:
        if not (math.isfinite(depth_from_m) and math.isfinite(depth_to_m)):
            raise DecisionError("depths must be numbers")
        if depth_to_m < depth_from_m:
            raise DecisionError(f"depth_to_m {depth_to_m} is above depth_from_m {depth_from_m}")
        if kind == MELT_LAYER and depth_to_m - depth_from_m < 0.00005:
            raise DecisionError("a melt layer must be at least 0.05 mm thick")
        span = self.depth_range(image)
        if span is not None:
            top, bottom = span
            if depth_from_m < top - 0.05 or depth_to_m > bottom + 0.05:
                raise DecisionError(f"{depth_from_m:.4f}-{depth_to_m:.4f} m is outside {image} "
                                    f"({top:.3f}-{bottom:.3f} m)")

    def _set_geometry(self, row: dict[str, str], depth_from_m: float, depth_to_m: float) -> None:
        row["depth_from_m"] = _fmt(depth_from_m, 6)
        row["depth_to_m"] = _fmt(depth_to_m, 6)
        row["thickness_mm"] = _fmt((depth_to_m - depth_from_m) * 1000.0, 6)
        scale = self.scale_of(row["image"])
        if scale is not None:
            row["row_from"] = _fmt(scale.row(depth_from_m), 2)
            row["row_to"] = _fmt(scale.row(depth_to_m), 2)

    def update(self, index: int, status: str | None = None, depth_from_m: float | None = None,
               depth_to_m: float | None = None, type: str | None = None, note: str | None = None) -> dict[str, str]:
        """Decide on one row and write the file.

        A change of boundaries or type makes the row ``edited`` (a row added by
        hand stays ``added``) unless ``status`` says otherwise; ``status``
        ``unreviewed`` clears ``reviewed_at`` (an undo).

        Raises:
            DecisionError: unknown row or status, depths out of order or outside the section.
        """
        if status is not None and status not in STATUSES:
            raise DecisionError(f"unknown status '{status}': choose {', '.join(STATUSES)}")
        if type is not None and type not in TYPES:
            raise DecisionError(f"unknown type '{type}': choose {', '.join(TYPES)}")
        if note is not None and len(note) > NOTE_MAX:
            raise DecisionError(f"the note is longer than {NOTE_MAX} characters")
        with self._file_lock():
            self._refresh()
            row = self.row(index)
            if status == ADDED and row["status"] != ADDED:
                raise DecisionError("only a feature added by hand can have the status 'added'")
            if status is not None and status != ADDED and row["status"] == ADDED and status != REJECTED:
                status = ADDED  # a feature drawn by hand stays 'added' (or is rejected to drop it)
            old_from, old_to = number(row["depth_from_m"]), number(row["depth_to_m"])
            new_from = old_from if depth_from_m is None else float(depth_from_m)
            new_to = old_to if depth_to_m is None else float(depth_to_m)
            kind = type or row["type"]
            moved = (depth_from_m is not None and new_from != old_from) or \
                    (depth_to_m is not None and new_to != old_to)
            if depth_from_m is not None or depth_to_m is not None:
                self._check_depths(row["image"], new_from, new_to, kind)
                if moved:
                    self._set_geometry(row, new_from, new_to)
            changed = moved or (type is not None and type != row["type"])
            if type is not None:
                row["type"] = type
            if note is not None:
                row["note"] = " ".join(note.split())
            if status is None:
                status = (ADDED if row["status"] == ADDED else EDITED) if changed else row["status"]
            row["status"] = status
            row["reviewed_at"] = "" if status == UNREVIEWED else now_utc()
            self.rows[index] = row
            self._write()
            return dict(row)

    def add(self, image: str, depth_from_m: float, depth_to_m: float, type: str = MELT_LAYER,
            note: str = "") -> tuple[int, dict[str, str]]:
        """Append a feature drawn by hand (status ``added``); returns its row index and row.

        Raises:
            DecisionError: unknown type, depths out of order or outside the section.
        """
        if type not in TYPES:
            raise DecisionError(f"unknown type '{type}': choose {', '.join(TYPES)}")
        if len(note) > NOTE_MAX:
            raise DecisionError(f"the note is longer than {NOTE_MAX} characters")
        self._check_depths(image, float(depth_from_m), float(depth_to_m), type)
        with self._file_lock():
            self._refresh()
            row = {c: "" for c in self.columns}
            row.update(image=image, type=type, status=ADDED, note=" ".join(note.split()), reviewed_at=now_utc())
            self._set_geometry(row, float(depth_from_m), float(depth_to_m))
            self.rows.append(row)
            self._write()
            return len(self.rows) - 1, dict(row)
