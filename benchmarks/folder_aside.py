"""A benchmark helper module, not part of meltloc: a new output folder built aside and renamed into place.

    from folder_aside import built_aside   # a script in benchmarks/ (its folder is on sys.path)

    with built_aside(out) as partial:      # write everything into partial
        ...

:func:`built_aside` builds in a hidden folder of its own beside OUT (``.OUT.<random>.partial``) and renames it to
OUT when the block ends without an error, so a failed copy leaves no half-made OUT and no folder it made on the way
to OUT, and two runs into one folder never share a hidden folder (one killed outright, SIGKILL, leaves its hidden
folder behind). OUT must not exist; the caller checks that first, for its own error message; one that appears
meanwhile raises :class:`FileExistsError` (an ``OSError``) and the built folder is removed. On Linux the final
rename is ``renameat2`` with ``RENAME_NOREPLACE``, so even an OUT made between the last check and the rename is never
replaced (a plain rename replaces an empty folder silently); elsewhere, or on a file system without it, OUT is
checked just before a plain rename.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


_AT_FDCWD, _RENAME_NOREPLACE = -100, 1  # <fcntl.h>, <linux/fs.h>


def rename_no_replace(src: Path, dst: Path) -> None:
    """Rename ``src`` to ``dst``; :class:`FileExistsError` if ``dst`` exists, even if it appears at the last moment
    (Linux; elsewhere checked just before the rename)."""
    exists = FileExistsError(f"{dst} appeared while it was being built; nothing is overwritten")
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):  # not Linux (Windows: TypeError), or a C library without it
        renameat2 = None
    if renameat2 is not None:
        renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        renameat2.restype = ctypes.c_int
        if renameat2(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err == errno.EEXIST:
            raise exists
        if err not in (errno.EINVAL, errno.ENOSYS):  # EINVAL, ENOSYS: a file system or kernel without the flag
            raise OSError(err, os.strerror(err), str(src), None, str(dst))
    if dst.exists() or dst.is_symlink():
        raise exists
    src.rename(dst)


@contextlib.contextmanager
def built_aside(out: Path) -> Iterator[Path]:
    """A new empty folder (plain permissions, as the umask gives) that becomes ``out`` when the block succeeds."""
    out = Path(out)
    made = [p for p in (out.parent, *out.parent.parents) if not p.exists()]  # folders made on the way to OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    partial.chmod(0o777 & ~umask)  # a plain folder once renamed, not mkdtemp's private one
    try:
        yield partial
        rename_no_replace(partial, out)  # an OUT made by someone else meanwhile is never replaced
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        for folder in made:  # innermost first; only if still empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
