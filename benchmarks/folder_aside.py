"""A benchmark helper module, not part of meltloc: a new output folder built aside and renamed into place.

    from folder_aside import built_aside   # a script in benchmarks/ (its folder is on sys.path)

    with built_aside(out) as partial:      # write everything into partial
        ...

:func:`built_aside` builds in a hidden folder of its own beside OUT (``.OUT.<random>.partial``) and renames it to
OUT when the block ends without an error, so a failed copy leaves no half-made OUT and no folder it made on the way
to OUT, and two runs into one folder never share a hidden folder (one killed outright, SIGKILL, leaves its hidden
folder behind). OUT must not exist; the caller checks that first, for its own error message; one that appears
meanwhile raises :class:`FileExistsError` (an ``OSError``) and the built folder is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
        if out.exists():  # made by someone else meanwhile (a rename would replace an empty folder silently)
            raise FileExistsError(f"{out} appeared while it was being built; nothing is overwritten")
        partial.rename(out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        for folder in made:  # innermost first; only if still empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
