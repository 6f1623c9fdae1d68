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
    """Check up front, before any long work, that ``path`` can be written.

    ``folder`` True: ``path`` is an output folder (created here); otherwise a
    file whose folder is created here.

    Raises:
        OutputError: the folder cannot be created or written, or a folder stands where the file should go.
    """
    path = Path(path)
    where = path if folder else path.parent
    try:
        where.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocked = next((p for p in [where, *where.parents] if p.exists() and not p.is_dir()), None)
        why = f"{blocked} is a file, not a folder" if blocked is not None else (exc.strerror or str(exc))
        raise OutputError(f"cannot create the output folder ({why}); choose another --out", where) from exc
    if not os.access(where, os.W_OK | os.X_OK):
        raise OutputError("the output folder is not writable; choose another --out", where)
    if not folder and path.is_dir():
        raise OutputError("is a folder; give a file name", path)
