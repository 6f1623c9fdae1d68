"""Progress bars for long work (tqdm on stderr; silent when disabled)."""

from __future__ import annotations

from typing import Iterable, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def progress(iterable: Iterable[T], desc: str, total: int | None = None, enabled: bool = True, unit: str = "it"):
    """Wrap an iterable in a progress bar; returns a tqdm object (usable for ``set_postfix``)."""
    return tqdm(iterable, desc=desc, total=total, disable=not enabled, unit=unit, dynamic_ncols=True, leave=True)
