"""Checkpoints: one file that carries what is needed to use it, and that cannot run code when read.

A checkpoint is a dict saved with ``torch.save``:
``{"format": "meltloc-checkpoint", "head", "version", "config" (working
scale, classes, architecture), "model" (state dict or head-specific
payload), "train" (settings, seed, data folder, seconds, history), "epoch",
"best", "optimizer", "scheduler"}``.

**Safety.** Every checkpoint holds plain data only (tensors, numbers,
strings, lists, tuples and dicts) and is read with
``torch.load(weights_only=True)``, which builds no Python object and so
cannot run code. A file that needs more (an old meltloc checkpoint, an
ultralytics ``.pt``, any pickle from elsewhere) is refused with one line,
unless the user trusts it explicitly (``--trust-checkpoint``, i.e.
:func:`trusting`), which prints a warning; ``meltloc upgrade-checkpoint``
rewrites an old meltloc checkpoint in the safe format once.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import pickle
from dataclasses import asdict, is_dataclass
from pathlib import Path, PurePath
from typing import Iterator

import torch

from meltloc import __version__
from meltloc.atomic import atomic_path
from meltloc.errors import CheckpointError

FORMAT = "meltloc-checkpoint"

UNSAFE_HINT = ("it holds pickled Python objects, which could run code when loaded: refused. An old meltloc "
               "checkpoint can be rewritten once with 'meltloc upgrade-checkpoint FILE --out NEW "
               "--trust-checkpoint' (or retrained); pass --trust-checkpoint only for a file you trust")

_trust = {"on": False}


def trust_enabled() -> bool:
    """Whether foreign (pickled) checkpoints may be loaded: only inside :func:`trusting`."""
    return _trust["on"]


@contextlib.contextmanager
def trusting(enabled: bool = True) -> Iterator[None]:
    """Allow loading pickled (possibly code-running) checkpoints inside the block: ``--trust-checkpoint``."""
    before = _trust["on"]
    _trust["on"] = bool(enabled)
    try:
        yield
    finally:
        _trust["on"] = before


def library_versions(ultralytics: bool = False) -> dict[str, str]:
    """The versions of the libraries a training's numbers depend on (torch, numpy, OpenCV; ``ultralytics`` for a
    head trained by it), for a checkpoint's training record: a rerun with other versions can differ (the package
    pins them, but an environment can hold others)."""
    import cv2
    import numpy as np

    versions = {"torch": torch.__version__, "numpy": np.__version__, "opencv": cv2.__version__}
    if ultralytics:
        import ultralytics as ul

        versions["ultralytics"] = ul.__version__
    return {name: str(v) for name, v in versions.items()}  # plain str: torch's version is a str subclass


def plain(value):
    """``value`` as data ``torch.load(weights_only=True)`` reads: numpy scalars and arrays, paths and
    dataclasses become numbers, tensors, strings and dicts."""
    import numpy as np

    if isinstance(value, torch.Tensor) or value is None or isinstance(value, (bool, int, float, str, bytes)):
        return value
    if isinstance(value, dict):
        return {plain(k): plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(plain(v) for v in value)
    if isinstance(value, (list, set, frozenset)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, PurePath):
        return str(value)
    if is_dataclass(value) and not isinstance(value, type):
        return plain(asdict(value))
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, torch.dtype) or isinstance(value, torch.device):
        return str(value)
    if hasattr(value, "state_dict") and callable(value.state_dict):
        return plain(value.state_dict())
    return str(value)


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write a checkpoint atomically; ``payload`` needs ``head``, ``config`` and ``model``.

    The payload is reduced to plain data (:func:`plain`), so the file always loads with ``weights_only=True``.
    """
    for key in ("head", "config", "model"):
        if key not in payload:
            raise ValueError(f"checkpoint payload lacks '{key}'")
    data = plain({"format": FORMAT, "version": __version__, **payload})
    buffer = io.BytesIO()
    torch.save(data, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def safe_load(source, path: str | Path | None = None, what: str = "checkpoint"):
    """``torch.load`` of a file or bytes with ``weights_only=True``; a pickle needing more is refused
    (:data:`UNSAFE_HINT`) unless :func:`trusting` is on.

    Raises:
        CheckpointError: unreadable, or pickled objects without trust.
    """
    where = path if path is not None else (source if isinstance(source, (str, Path)) else None)
    src = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        return torch.load(src, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" not in str(exc) and "Unsupported global" not in str(exc):  # junk, not pickled objects
            raise CheckpointError(f"not a readable {what} ({type(exc).__name__}); pass a file written by "
                                  "'meltloc train'", where) from exc
        if not trust_enabled():
            raise CheckpointError(f"not a safe {what}: {UNSAFE_HINT}", where) from None
    except Exception as exc:  # torch raises many kinds for foreign files
        raise CheckpointError(f"not a readable {what} ({type(exc).__name__}); pass a file written by "
                              "'meltloc train'", where) from exc
    if isinstance(src, io.BytesIO):
        src.seek(0)
    try:
        return torch.load(src, map_location="cpu", weights_only=False)  # trusted explicitly by the user
    except Exception as exc:
        raise CheckpointError(f"not a readable {what} ({type(exc).__name__}: {exc})", where) from exc


def load_checkpoint(path: str | Path, expect_head: str | None = None) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint` (``weights_only=True``: no code can run).

    Raises:
        CheckpointError: missing file, a pickle with Python objects (unless trusted), not a meltloc
            checkpoint, or (with ``expect_head``) a checkpoint of another head.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("weights file not found; train one with 'meltloc train' or pass --weights", path)
    data = safe_load(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError("not a meltloc checkpoint (e.g. a bare ultralytics or torchvision file); "
                              "pass a file written by 'meltloc train'", path)
    head = data.get("head")
    if not isinstance(head, str) or not head:
        raise CheckpointError("a meltloc checkpoint that names no head; pass a file written by 'meltloc train'", path)
    if expect_head is not None and head != expect_head:
        raise CheckpointError(f"this is a '{head}' checkpoint, not '{expect_head}'", path)
    return data


def is_safe_file(path: str | Path) -> bool:
    """Whether ``path`` loads with ``weights_only=True`` (plain data only)."""
    try:
        torch.load(path, map_location="cpu", weights_only=True)
        return True
    except Exception:
        return False


def upgrade_checkpoint(path: str | Path, out: str | Path) -> dict:
    """Rewrite an old meltloc checkpoint (pickled objects) as plain data; must run inside :func:`trusting`.

    The head's :meth:`~meltloc.heads.base.Head.upgrade` turns what it pickled into plain data (YOLO: the
    ultralytics network becomes the model YAML and a state dict).

    Returns:
        The new checkpoint.

    Raises:
        CheckpointError: not a meltloc checkpoint, or not trusted.
    """
    from meltloc.heads import head_class

    data = load_checkpoint(path)
    data = head_class(data["head"]).upgrade(data)
    save_checkpoint(out, {k: v for k, v in data.items() if k not in ("format", "version")})
    return load_checkpoint(out)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes (the identity of a checkpoint in a run record)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
