"""One review: the sections, their images, the decisions, the hand log and the truth.

Everything the web app serves comes from here; the app only turns requests
into calls and results into JSON. Images are looked up by name in an index
of the given folders made at start-up; a request never names a path, and
every path served is checked to lie inside one of those folders.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from meltloc import IGNORE_TYPES, MELT_LAYER
from meltloc.alignment import align_section
from meltloc.convert import near_section, point_extent
from meltloc.errors import GeometryError, ImageReadError, MeltlocError, Problem
from meltloc.geometry import CoreBounds, DepthScale
from meltloc.imageio import list_images, read_image
from meltloc.labels import read_labels
from meltloc.manifest import Manifest, read_manifest
from meltloc.names import NameIndex
from meltloc.review.export import age_model, export_log, export_table
from meltloc.review.store import (ACCEPTED, ADDED, EDITED, REJECTED, STATUSES, UNREVIEWED, DecisionStore,
                                  ReviewError, Scale, number)
from meltloc.review.tiles import TileCache, default_cache_root

LOW_SCORE = 0.5


class NotFound(ReviewError):
    """A section, tile or row the request names does not exist (or may not be read)."""


@dataclass
class SectionEntry:
    """A section on the list: its image (name and path, if found) and manifest depths."""

    image: str
    path: Path | None
    top_m: float | None
    bottom_m: float | None
    rows: list[int] = field(default_factory=list)  # decision rows in this image


def inside(path: Path, roots: list[Path]) -> bool:
    """True when ``path`` (links resolved) lies inside one of ``roots``."""
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return any(real.is_relative_to(root) for root in roots)


class ReviewSession:
    """State of one ``meltloc review``.

    Args:
        detections: the detect CSV.
        image_dirs: folders holding the section images.
        sections: the section manifest (PANGAEA .tab or CSV).
        labels: a hand log (label table) drawn beside the detections, aligned per section like convert does.
        truth: a synth ``truth.csv`` (or convert ``intervals.csv``): true intervals drawn too.
        decisions: the decisions file (default ``<DETECTIONS stem>.review.csv``).
        cache_dir: tile cache (default :func:`meltloc.review.tiles.default_cache_root` / ``tiles``).
        low_score: detections under this score count as "low score".

    Raises:
        ReviewError, ManifestError, LabelTableError: an input cannot be used.
    """

    def __init__(self, detections: str | Path, image_dirs: list[str | Path], sections: str | Path | None = None,
                 labels: str | Path | None = None, truth: str | Path | None = None,
                 decisions: str | Path | None = None, cache_dir: str | Path | None = None,
                 low_score: float = LOW_SCORE, cache_bytes: int = 20 * 1024 ** 3):
        self.problems: list[Problem] = []
        self.low_score = low_score
        self.roots = []
        for d in image_dirs:
            d = Path(d)
            if not d.is_dir():
                raise ReviewError("image folder not found", d)
            self.roots.append(d.resolve())
        self.manifest: Manifest | None = read_manifest(sections) if sections is not None else None
        if self.manifest is not None:
            self.problems.extend(self.manifest.problems)
        self.files: dict[str, Path] = {}
        for root in self.roots:
            for p in list_images(root):
                if p.name in self.files:
                    self.problems.append(Problem("image_duplicate", str(p), None,
                                                 f"{p.name} is also in {self.files[p.name].parent}; that one is used"))
                    continue
                self.files[p.name] = p
        self.store = DecisionStore(detections, decisions, depth_range=self.depth_range, scale_of=self.scale_of)
        self.tiles = TileCache(Path(cache_dir) if cache_dir else default_cache_root() / "tiles", cache_bytes)
        self.labels = read_labels(labels) if labels is not None else None
        if self.labels is not None:
            self.problems.extend(self.labels.problems)
            self._labels_key = hashlib.sha1(Path(labels).read_bytes()).hexdigest()[:12]
        self.truth = self._read_truth(Path(truth)) if truth is not None else None
        self._build_sections()
        self._prep_lock = threading.Lock()
        self._prefetching: set[str] = set()

    # -- inputs --------------------------------------------------------------------------------

    def _read_truth(self, path: Path) -> pd.DataFrame:
        try:
            table = pd.read_csv(path, dtype={"image": str})
        except (OSError, ValueError) as exc:
            raise ReviewError(f"cannot read the truth table: {exc}", path) from exc
        missing = [c for c in ("image", "type", "depth_from_m", "depth_to_m") if c not in table.columns]
        if missing:
            raise ReviewError(f"column(s) {', '.join(missing)} missing: expected a synth truth.csv "
                              "(image, type, depth_from_m, depth_to_m)", path)
        return table

    def _manifest_row(self, image: str):
        return None if self.manifest is None else self.manifest.find(image)

    def _build_sections(self) -> None:
        entries: dict[str, SectionEntry] = {}

        def entry(image: str) -> SectionEntry:
            if image not in entries:
                rec = self._manifest_row(image)
                path = self.files.get(image)
                if path is None:  # 227.png on disk for a 227.bmp in the manifest or the detections
                    path = self.files.get(NameIndex(self.files).find(image))
                entries[image] = SectionEntry(image, path, None if rec is None else float(rec["top_m"]),
                                              None if rec is None else float(rec["bottom_m"]))
            return entries[image]

        for i, row in enumerate(self.store.snapshot()):
            entry(row["image"]).rows.append(i)
        shown = {e.path.name for e in entries.values() if e.path is not None}
        for name in self.files:  # sections with no detection are reviewed too (missed layers)
            if name not in shown and (self.manifest is None or self._manifest_row(name) is not None):
                entry(name)
        order = sorted(entries.values(), key=lambda e: (e.top_m is None, e.top_m or 0.0, e.image))
        self.sections: dict[str, SectionEntry] = {e.image: e for e in order}
        self._synced = len(self.store)

    # -- geometry ------------------------------------------------------------------------------

    def depth_range(self, image: str) -> tuple[float, float] | None:
        e = self.sections.get(image) if hasattr(self, "sections") else None
        if e is not None and e.top_m is not None:
            return e.top_m, e.bottom_m
        rec = self._manifest_row(image)
        return None if rec is None else (float(rec["top_m"]), float(rec["bottom_m"]))

    def scale_of(self, image: str) -> Scale | None:
        e = self.sections.get(image) if hasattr(self, "sections") else None
        if e is None or e.path is None or e.top_m is None:
            return None
        meta = self.tiles.cached(e.path)
        if meta is None:
            return None
        b = meta["bounds"]
        scale = DepthScale(e.top_m, e.bottom_m, b["top_row"], b["bottom_row"])
        return Scale(e.top_m, b["top_row"], scale.px_per_m)

    def section(self, image: str) -> SectionEntry:
        e = self.sections.get(image)
        if e is None:
            raise NotFound(f"no section '{image}' in this review")
        return e

    def image_path(self, image: str) -> Path:
        """The image file of a section, checked to lie inside the given folders.

        Raises:
            NotFound: unknown section, no image file, or a file outside the folders (a link out of them).
        """
        e = self.section(image)
        if e.path is None:
            raise NotFound(f"the image of section '{image}' is not in the image folders")
        if not inside(e.path, self.roots):
            raise NotFound(f"the image of section '{image}' lies outside the image folders")
        return e.path

    # -- the list ------------------------------------------------------------------------------

    def counts(self, e: SectionEntry, rows=None) -> dict:
        """Depth range and counts of a section (``rows``: a snapshot, else the store's rows are read)."""
        if rows is None:
            rows = {i: self.store.row(i) for i in e.rows}
        statuses = Counter(rows[i]["status"] for i in e.rows)
        low = sum(1 for i in e.rows if rows[i]["status"] == UNREVIEWED and number(rows[i]["score"]) < self.low_score)
        types = Counter(rows[i]["type"] for i in e.rows if rows[i]["status"] != REJECTED)
        return {"image": e.image, "top_m": e.top_m, "bottom_m": e.bottom_m, "has_image": e.path is not None,
                **{s: statuses.get(s, 0) for s in STATUSES}, "low": low,
                "melt_layer": types.get("melt_layer", 0), "melt_lens": types.get("melt_lens", 0)}

    def listing(self) -> dict:
        self.store.reload()
        self._sync_new_rows()
        rows = self.store.snapshot()
        return {"sections": [self.counts(e, rows) for e in self.sections.values()], "low_score": self.low_score,
                "version": self.store.version, "detections": str(self.store.detections),
                "decisions": str(self.store.path), "has_labels": self.labels is not None,
                "has_truth": self.truth is not None, "rows": len(rows)}

    def _sync_new_rows(self) -> None:
        """Rows appended by another process (two servers on one file) join their section."""
        with self._prep_lock:
            n = len(self.store)
            for i in range(self._synced, n):
                e = self.sections.get(self.store.row(i)["image"])
                if e is not None and i not in e.rows:
                    e.rows.append(i)
            self._synced = max(self._synced, n)

    # -- one section ---------------------------------------------------------------------------

    def prepare(self, image: str) -> dict:
        """Tiles (made on first use), depth scale and aligned hand log of a section."""
        path = self.image_path(image)
        try:
            meta, decoded = self.tiles.prepare(path)
        except (ImageReadError, GeometryError) as exc:
            raise ReviewError(f"{image}: {exc.message}") from exc
        e = self.sections[image]
        scale = None
        if e.top_m is not None:
            b = meta["bounds"]
            scale = DepthScale(e.top_m, e.bottom_m, b["top_row"], b["bottom_row"])
        labels, alignment = self._aligned_labels(e, path, meta, scale, decoded)
        return {"meta": meta, "scale": scale, "labels": labels, "alignment": alignment}

    def _aligned_labels(self, e: SectionEntry, path: Path, meta: dict, scale: DepthScale | None,
                        decoded: np.ndarray | None) -> tuple[list[dict], dict | None]:
        if self.labels is None or scale is None or self.labels.table.empty:
            return [], None
        lab = self.labels.table
        extents = np.array([point_extent(t, a, b) for t, a, b in zip(lab["type"], lab["depth_from_m"],
                                                                      lab["depth_to_m"])]).reshape(-1, 2)
        near = near_section(extents, e.top_m, e.bottom_m, 15.0)
        cached = self.tiles.folder(path) / f"align-{self._labels_key}.json"
        try:
            alignment = json.loads(cached.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            layers = near & (lab["type"].to_numpy() == MELT_LAYER)
            image = decoded if decoded is not None else read_image(path)
            b = meta["bounds"]
            bounds = CoreBounds(b["top_row"], b["bottom_row"], b["left_col"], b["right_col"], meta["height"],
                                meta["width"], b.get("black", 0.0))
            found = align_section(e.image, image, bounds, scale,
                                  lab.loc[layers, ["depth_from_m", "depth_to_m"]].to_numpy())
            alignment = found.as_row()
            cached.write_text(json.dumps(alignment), encoding="utf-8")
        shift_m = alignment["shift_mm"] / 1000.0
        out = []
        for i in np.flatnonzero(near):
            rec = lab.iloc[i]
            d0, d1 = float(rec["depth_from_m"]) + shift_m, float(rec["depth_to_m"]) + shift_m
            if not e.top_m <= 0.5 * (d0 + d1) <= e.bottom_m:
                continue
            out.append({"type": rec["type"], "raw_type": rec["raw_type"], "depth_from_m": d0, "depth_to_m": d1,
                        "line": int(rec["line"]), "ignore": rec["type"] in IGNORE_TYPES})
        return out, alignment

    def _truth_rows(self, e: SectionEntry) -> list[dict]:
        if self.truth is None:
            return []
        stem = Path(e.image).stem
        sel = self.truth[self.truth["image"].astype(str).map(lambda n: n == e.image or Path(n).stem == stem)]
        shown = ("melt_layer", "melt_lens", *IGNORE_TYPES)  # not the drawn cracks
        return [{"type": str(r.type), "depth_from_m": float(r.depth_from_m), "depth_to_m": float(r.depth_to_m)}
                for r in sel.itertuples() if str(r.type) in shown and math.isfinite(float(r.depth_from_m))]

    def detail(self, image: str) -> dict:
        """Everything the viewer shows of one section."""
        e = self.section(image)
        prepared = self.prepare(image)
        self.store.reload()
        self._sync_new_rows()
        rows = {i: self.store.row(i) for i in e.rows}
        scale: DepthScale | None = prepared["scale"]
        return {
            "image": e.image, "top_m": e.top_m, "bottom_m": e.bottom_m, "meta": prepared["meta"],
            "scale": None if scale is None else {"top_m": scale.top_m, "bottom_m": scale.bottom_m,
                                                 "top_row": scale.top_row, "bottom_row": scale.bottom_row,
                                                 "px_per_m": scale.px_per_m},
            "detections": [self.row_json(i, rows[i]) for i in e.rows],
            "labels": prepared["labels"], "alignment": prepared["alignment"], "truth": self._truth_rows(e),
            "counts": self.counts(e, rows), "version": self.store.version,
        }

    def prefetch(self, image: str) -> None:
        """Make the tiles of the sections after ``image`` in the background (one at a time)."""
        names = list(self.sections)
        if image not in names:
            return
        nxt = [n for n in names[names.index(image) + 1:names.index(image) + 3]
               if self.sections[n].path is not None and self.tiles.cached(self.sections[n].path) is None]
        for name in nxt:
            with self._prep_lock:
                if name in self._prefetching:
                    continue
                self._prefetching.add(name)

            def work(name=name):
                try:
                    self.prepare(name)
                except MeltlocError:
                    pass
                finally:
                    with self._prep_lock:
                        self._prefetching.discard(name)

            threading.Thread(target=work, daemon=True, name=f"prefetch-{name}").start()
            break  # one at a time: the machine has other work

    # -- decisions -----------------------------------------------------------------------------

    @staticmethod
    def row_json(index: int, row: dict[str, str]) -> dict:
        return {"id": index, "image": row["image"], "type": row["type"], "status": row["status"],
                "note": row.get("note", ""), "reviewed_at": row.get("reviewed_at", ""),
                "depth_from_m": _num(row["depth_from_m"]), "depth_to_m": _num(row["depth_to_m"]),
                "thickness_mm": _num(row["thickness_mm"]), "score": _num(row["score"]),
                "row_from": _num(row["row_from"]), "row_to": _num(row["row_to"])}

    def _result(self, index: int, row: dict[str, str]) -> dict:
        self._sync_new_rows()
        e = self.sections.get(row["image"])
        return {"detection": self.row_json(index, row), "counts": None if e is None else self.counts(e),
                "version": self.store.version}

    def decide(self, index: int, **changes) -> dict:
        row = self.store.update(index, **changes)
        return self._result(index, row)

    def add(self, image: str, depth_from_m: float, depth_to_m: float, type: str = MELT_LAYER,
            note: str = "") -> dict:
        e = self.section(image)
        if e.top_m is None:
            raise ReviewError(f"section '{image}' has no depths in the manifest: features cannot be added there")
        index, row = self.store.add(image, depth_from_m, depth_to_m, type, note)
        return self._result(index, row)  # the new row joins its section there

    # -- export --------------------------------------------------------------------------------

    def age_of(self):
        if self.labels is None or self.labels.table.empty:
            return None
        t = self.labels.table
        return age_model(t["depth_from_m"], t["age_b2k"])

    def export(self, path: str | Path):
        self.store.reload()
        return export_log(self.store.snapshot(), path, self.depth_range, self.age_of())

    def export_frame(self) -> pd.DataFrame:
        self.store.reload()
        return export_table(self.store.snapshot(), self.depth_range, self.age_of())[0]


def _num(text: str):
    value = number(text)
    return value if math.isfinite(value) else None


__all__ = ["ReviewSession", "NotFound", "inside", "LOW_SCORE", "ACCEPTED", "ADDED", "EDITED", "REJECTED",
           "UNREVIEWED"]
