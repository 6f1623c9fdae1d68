"""Which torch device to run on: ``--device auto`` (CUDA when present, else CPU), or a named one that must exist."""

from __future__ import annotations

import re

from meltloc.errors import MeltlocError


class DeviceError(MeltlocError):
    """The device asked for is not a torch device, or is not on this machine."""


def resolve_device(name: str | None) -> str:
    """The torch device string for ``--device``.

    ``auto`` (or None): ``cuda`` when torch sees a GPU, else ``cpu``. ``cpu``,
    ``cuda``, ``cuda:N`` and ``mps`` are checked against this machine.

    Raises:
        DeviceError: an unknown name (``gpu``), or a device this machine does not have, in one line.
    """
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return "cpu"
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match:
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: this machine has no CUDA GPU that torch can use "
                              "(torch.cuda.is_available() is False); use --device auto or cpu")
        index = int(match.group(1) or 0)
        if index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s) "
                              f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
        return name
    if name == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError("--device mps: this machine has no Apple GPU that torch can use; use --device auto or cpu")
        return name
    raise DeviceError(f"--device {name}: not a device; use auto (CUDA when present, else CPU), cpu, cuda or cuda:N")
