"""Write files under a temporary name and rename them, so none is ever half-written; and guard inputs.

Guarantees (checked before any work, by the CLI):

* no output is one of the command's inputs (:func:`check_output`), nor a folder holding one
  (:func:`claim_folder`);
* an existing output is replaced only with ``--overwrite`` (or ``--resume``);
* a read-only file is never replaced, even with ``--overwrite`` (:func:`atomic_path`);
* an output folder (synth, convert, overlays, compare) that is not empty and was not written by that
  meltloc command is refused: the command records itself in ``FOLDER/.meltloc.json``.
"""

from __future__ import annotations

import contextlib
import json
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
    refuse_read_only(path)
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
    except OSError as exc:  # a full disk, a file-size limit: name the file, say what is kept
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise OutputError(f"cannot write it ({exc.strerror or exc}; is the disk full?): it was left as it was "
                          "and the outputs finished before it are kept; free some space or choose another output "
                          "and run the command again", path) from exc
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


MARKER = ".meltloc.json"
IMAGE_SUFFIXES = (".png", ".bmp", ".tif", ".tiff", ".jpg", ".jpeg")


def refuse_read_only(path: str | Path) -> None:
    """Raise :class:`OutputError` when ``path`` is an existing file without write permission."""
    path = Path(path)
    if path.is_file() and not os.access(path, os.W_OK):
        raise OutputError("is read-only: meltloc never replaces a read-only file; choose another output "
                          "(or make it writable yourself)", path)


def _same(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output(path: str | Path, inputs=(), overwrite: bool = False, resume: bool = False,
                 option: str = "--out", whole_folders: bool = False) -> None:
    """Check an output file before any work: writable, not an input, not replacing anything unasked.

    Args:
        path: the output file.
        inputs: the command's input files and folders (None entries are skipped).
        overwrite: the user passed ``--overwrite``.
        resume: the command continues into this output (``--resume``).
        option: the option named in messages.
        whole_folders: every file in a folder input is an input (a convert output given to train); otherwise
            only image names in it are.

    Raises:
        OutputError: it is an input, read-only, or exists without ``--overwrite``/``--resume``.
    """
    path = Path(path)
    ensure_writable(path)
    for item in inputs:
        if item is None:
            continue
        if _same(path, Path(item)):
            raise OutputError(f"is also an input of this command: meltloc never writes onto its inputs; choose "
                              f"another {option}", path)
        if whole_folders and Path(item).is_dir() and path.exists() and _holds(Path(item), path):
            raise OutputError(f"is a file of the input folder {item}: meltloc never writes onto its inputs; choose "
                              f"another {option}", path)
        if Path(item).is_dir() and path.suffix.lower() in IMAGE_SUFFIXES and _holds(Path(item), path):
            raise OutputError(f"is an image name in the input folder {item}: it is (or would be read as) an input; "
                              f"choose another {option}", path)
    refuse_read_only(path)
    if path.exists() and not (overwrite or resume):
        raise OutputError(f"exists already: pass --overwrite to replace it, or choose another {option}", path)


def _holds(folder: Path, item: Path) -> bool:
    try:
        item, folder = item.resolve(), folder.resolve()
    except OSError:
        return False
    return item == folder or folder in item.parents


def claim_folder(folder: str | Path, command: str, inputs=(), settings: dict | None = None,
                 overwrite: bool = False, resume: bool = False, option: str = "--out") -> None:
    """Check an output folder before any work and record in it which command writes there.

    A folder that holds an input, or is not empty and was not written by ``meltloc COMMAND``, is refused
    (even with ``--overwrite``). One written by it before is replaced only with ``--overwrite`` or
    ``--resume``, or when that run did not finish and ``settings`` are the same (it is finished now).
    Different settings name the first difference.

    Raises:
        OutputError: as above, or the folder cannot be written.
    """
    folder = Path(folder)
    ensure_writable(folder, folder=True)
    for item in inputs:
        if item is not None and _holds(folder, Path(item)):
            raise OutputError(f"holds an input of this command ({item}): meltloc never writes where its inputs "
                              f"are; choose an empty or new folder for {option}", folder)
    settings = json.loads(json.dumps(settings or {}, default=str))  # as it reads back from the record
    marker = folder / MARKER
    if folder.is_dir() and any(p.name != MARKER for p in folder.iterdir()):  # a bare record: nothing to lose
        try:
            record = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None
        if not isinstance(record, dict) or record.get("command") != command:
            raise OutputError(f"is not empty and was not written by 'meltloc {command}': meltloc never writes among "
                              f"other files; choose an empty or new folder for {option}", folder)
        before = record.get("settings", {})
        changed = [k for k in sorted(set(before) | set(settings)) if before.get(k) != settings.get(k)]
        if not (overwrite or resume):
            if record.get("complete", True):
                raise OutputError(f"holds the output of an earlier 'meltloc {command}': pass --overwrite to replace "
                                  f"it, or choose another {option}", folder)
            if changed:
                k = changed[0]
                raise OutputError(f"holds an unfinished 'meltloc {command}' run with other settings ({k}: "
                                  f"{before.get(k)!r} then, {settings.get(k)!r} now): rerun it as it was, or pass "
                                  "--overwrite to start again", folder)
    write_text(marker, json.dumps({"command": command, "complete": False, "settings": settings}))


def finish_folder(folder: str | Path) -> None:
    """Mark the run recorded by :func:`claim_folder` as finished."""
    marker = Path(folder) / MARKER
    record = json.loads(marker.read_text(encoding="utf-8"))
    record["complete"] = True
    write_text(marker, json.dumps(record))


@contextlib.contextmanager
def output_folder(folder: str | Path, command: str, inputs=(), settings: dict | None = None,
                  overwrite: bool = False, resume: bool = False, option: str = "--out") -> Iterator[Path]:
    """:func:`claim_folder`, the work inside the block, then :func:`finish_folder`.

    When the work fails before writing anything, the folder is left as it was: the record is removed, and the
    folder too if the claim created it.
    """
    folder = Path(folder)
    existed = folder.exists()
    claim_folder(folder, command, inputs=inputs, settings=settings, overwrite=overwrite, resume=resume,
                 option=option)
    try:
        yield folder
    except BaseException:
        if folder.is_dir() and all(p.name == MARKER for p in folder.iterdir()):
            with contextlib.suppress(OSError):
                (folder / MARKER).unlink()
                if not existed:
                    folder.rmdir()
        raise
    finish_folder(folder)
