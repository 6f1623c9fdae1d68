"""Write files under a temporary name and rename them, so none is ever half-written."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from meltloc.errors import OutputError


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success.

    On an exception the temporary file is removed and ``path`` is left as it was.
    The temporary name keeps the suffix, so writers that look at it still work.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_csv(df, path: str | Path, **kwargs) -> None:
    """Write a pandas DataFrame as CSV atomically (no index unless asked)."""
    kwargs.setdefault("index", False)
    with atomic_path(path) as tmp:
        df.to_csv(tmp, **kwargs)


def ensure_writable(path: str | Path, folder: bool = False) -> None:
    """Check up front, before any long work, that ``path`` can be written; creates nothing.

    ``folder`` True: ``path`` is an output folder; otherwise a file. The
    nearest folder that exists on the way must be writable, and no file may
    stand where a folder is needed.

    Raises:
        OutputError: the output cannot be created or written.
    """
    path = Path(path)
    if not folder and path.is_dir():
        raise OutputError("is a folder; give a file name", path)
    where = path if folder else path.parent
    existing = next((p for p in [where, *where.parents] if p.exists()), None)
    if existing is None:
        return
    if not existing.is_dir():
        raise OutputError(f"cannot create the output folder: {existing} is a file, not a folder; choose another --out",
                          where)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write into {existing} (no permission); choose another --out", where)
