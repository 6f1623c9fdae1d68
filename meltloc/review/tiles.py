"""Image tiles of a section for the review page, made once and cached on disk.

A full-scale section (30,700 x 1,700 px, 40-60 MB) never goes to the browser:
the first time a section is opened its image is decoded once, its core found
(:func:`meltloc.geometry.find_core`), and a pyramid written: level ``z`` is
the core's columns at ``1 / 2**z`` of full resolution, cut into JPEG tiles of
:data:`TILE_ROWS` rows. Levels go down until the whole section fits in about
2,000 rows (the overview). The page then asks only for the tiles it shows.

Layout of the cache (one folder per image file, named by a hash of its
resolved path, size and modification time, so a changed file gets new
tiles)::

    CACHE/<key>/meta.json       size, core bounds, crop, levels, bytes
    CACHE/<key>/z<level>/<i>.jpg

A folder is written under a temporary name and renamed, so a killed server
never leaves half a pyramid. Least recently used folders are removed when the
cache grows past its size limit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

import cv2
import numpy as np

from meltloc.geometry import CoreBounds, find_core
from meltloc.imageio import read_image, to_8bit_scale
from meltloc.strips import levels_8bit

TILE_ROWS = 512
OVERVIEW_ROWS = 2048
JPEG_QUALITY = 90
CACHE_VERSION = 2  # 2: dim scans of more than 8 bits brightened


def default_cache_root() -> Path:
    """``$MELTLOC_CACHE`` or ``$XDG_CACHE_HOME/meltloc`` (``~/.cache/meltloc``)."""
    if os.environ.get("MELTLOC_CACHE"):
        return Path(os.environ["MELTLOC_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "meltloc"


def cache_key(path: Path) -> str:
    st = path.stat()
    text = f"{CACHE_VERSION}|{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    return hashlib.sha1(text.encode()).hexdigest()[:20]


def _levels(rows: int) -> int:
    n = 1
    while rows / 2 ** (n - 1) > OVERVIEW_ROWS:
        n += 1
    return n


def build_pyramid(image: np.ndarray, bounds: CoreBounds, folder: Path) -> dict:
    """Write the tiles of one decoded image into ``folder``; returns the metadata (also in meta.json)."""
    height, width = image.shape
    margin = max(4, int(0.04 * bounds.width_cols))
    col0, col1 = max(0, bounds.left_col - margin), min(width, bounds.right_col + 1 + margin)
    # a dim scan of more than 8 bits is brightened as its strips are, judged on a sample of its core
    r0, r1 = max(0, int(bounds.top_row)), min(height, int(np.ceil(bounds.bottom_row)))
    ice = image[r0:r1:4, bounds.left_col:bounds.right_col + 1:4]
    level = levels_8bit(np.ascontiguousarray(image[:, col0:col1]), ice if ice.size else image, bounds.black,
                        divisor=to_8bit_scale(image))
    levels, total = [], 0
    params = [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
    for z in range(_levels(height)):
        if z:
            level = cv2.resize(level, (max(1, level.shape[1] // 2), max(1, level.shape[0] // 2)),
                               interpolation=cv2.INTER_AREA)
        (folder / f"z{z}").mkdir(parents=True, exist_ok=True)
        n_tiles = (level.shape[0] + TILE_ROWS - 1) // TILE_ROWS
        for i in range(n_tiles):
            ok, buf = cv2.imencode(".jpg", level[i * TILE_ROWS:(i + 1) * TILE_ROWS], params)
            if not ok:  # pragma: no cover - cv2 encodes any uint8 array
                raise RuntimeError("JPEG encoding failed")
            buf.tofile(str(folder / f"z{z}" / f"{i}.jpg"))
            total += buf.size
        levels.append({"z": z, "rows": int(level.shape[0]), "cols": int(level.shape[1]), "tiles": n_tiles})
    meta = {"version": CACHE_VERSION, "height": height, "width": width, "col0": int(col0), "col1": int(col1),
            "tile_rows": TILE_ROWS, "levels": levels, "bytes": int(total),
            "bounds": {"top_row": bounds.top_row, "bottom_row": bounds.bottom_row, "left_col": bounds.left_col,
                       "right_col": bounds.right_col, "black": bounds.black}}
    (folder / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return meta


class TileCache:
    """Tiles of section images on disk, made on first use.

    Args:
        root: cache folder (created).
        max_bytes: the least recently used pyramids are removed beyond this.
    """

    def __init__(self, root: str | Path, max_bytes: int = 20 * 1024 ** 3):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._meta: dict[str, dict] = {}  # pyramids known to be on disk, by key

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def folder(self, path: Path) -> Path:
        return self.root / cache_key(path)

    def cached(self, path: Path) -> dict | None:
        """The metadata of an image's pyramid when it is on disk, else None."""
        key = cache_key(path)
        if key in self._meta:
            return self._meta[key]
        meta_path = self.root / key / "meta.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if meta.get("version") != CACHE_VERSION:
            return None
        self._meta[key] = meta
        return meta

    def prepare(self, path: Path, image: np.ndarray | None = None) -> tuple[dict, np.ndarray | None]:
        """The pyramid of ``path``, made if missing; also the decoded image when it had to be decoded.

        Raises:
            ImageReadError, GeometryError: the image cannot be read or holds no core.
        """
        key = cache_key(path)
        with self._lock_for(key):
            meta = self.cached(path)
            if meta is not None and (self.root / key / "meta.json").is_file():
                os.utime(self.root / key / "meta.json")  # recently used: evicted last
                return meta, None
            self._meta.pop(key, None)
            if image is None:
                image = read_image(path)
            bounds = find_core(image)
            tmp = self.root / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                meta = build_pyramid(image, bounds, tmp)
                final = self.root / key
                shutil.rmtree(final, ignore_errors=True)
                os.replace(tmp, final)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        self._evict(keep=key)
        return meta, image

    def tile(self, path: Path, z: int, i: int) -> Path | None:
        """The file of tile ``i`` of level ``z``, or None when there is no such tile."""
        meta = self.cached(path)
        if meta is None or not 0 <= z < len(meta["levels"]) or not 0 <= i < meta["levels"][z]["tiles"]:
            return None
        f = self.folder(path) / f"z{z}" / f"{i}.jpg"
        if not f.is_file():  # removed by another server's eviction
            self._meta.pop(cache_key(path), None)
            return None
        return f

    def _evict(self, keep: str) -> None:
        entries = []
        for meta_path in self.root.glob("*/meta.json"):
            try:
                size = int(json.loads(meta_path.read_text(encoding="utf-8")).get("bytes", 0))
                entries.append((meta_path.stat().st_mtime, size, meta_path.parent))
            except (OSError, ValueError):
                continue
        total = sum(e[1] for e in entries)
        for _, size, folder in sorted(entries):
            if total <= self.max_bytes:
                break
            if folder.name == keep:
                continue
            self._meta.pop(folder.name, None)
            shutil.rmtree(folder, ignore_errors=True)
            total -= size
