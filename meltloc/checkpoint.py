"""Checkpoints: one file that carries what is needed to use it.

A checkpoint is a dict saved with ``torch.save``:
``{"format": "meltloc-checkpoint", "head", "version", "config" (working
scale, classes, architecture), "model" (state dict or head-specific
payload), "train" (settings, seed, data folder, seconds, history), "epoch",
"best", "optimizer", "scheduler"}``.
"""

from __future__ import annotations

import io
from pathlib import Path

import torch

from meltloc import __version__
from meltloc.atomic import atomic_path
from meltloc.errors import CheckpointError

FORMAT = "meltloc-checkpoint"
HEADS = ("regression", "yolo", "simple-cnn", "enhanced-cnn", "resnet34", "vgg16")


def save_checkpoint(path: str | Path, payload: dict) -> None:
    """Write a checkpoint atomically; ``payload`` needs ``head``, ``config`` and ``model``."""
    for key in ("head", "config", "model"):
        if key not in payload:
            raise ValueError(f"checkpoint payload lacks '{key}'")
    data = {"format": FORMAT, "version": __version__, **payload}
    buffer = io.BytesIO()
    torch.save(data, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def load_checkpoint(path: str | Path, expect_head: str | None = None) -> dict:
    """Read a checkpoint written by :func:`save_checkpoint`.

    Raises:
        CheckpointError: missing file, not a meltloc checkpoint, or (with
            ``expect_head``) a checkpoint of another head.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("weights file not found; train one with 'meltloc train' or pass --weights", path)
    try:
        data = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # torch raises many kinds for foreign files
        raise CheckpointError(f"not a readable checkpoint ({type(exc).__name__}); pass a file written by 'meltloc train'",
                              path) from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError("not a meltloc checkpoint (e.g. a bare ultralytics or torchvision file); "
                              "pass a file written by 'meltloc train'", path)
    head = data.get("head")
    if head not in HEADS:
        raise CheckpointError(f"checkpoint of unknown head '{head}' (known: {', '.join(HEADS)})", path)
    if expect_head is not None and head != expect_head:
        raise CheckpointError(f"this is a '{head}' checkpoint, not '{expect_head}'", path)
    return data
