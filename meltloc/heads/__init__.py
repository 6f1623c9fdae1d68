"""Every localizer and baseline, behind one contract and one registry.

A head is one module (or folder) here, registered at its class with
:func:`~meltloc.heads.base.register`; importing this package imports each of
them, which fills the registry. Adding a head is its module plus its line
below. Nothing outside this package names a head.

    >>> from meltloc.heads import head_names, load_detector
    >>> head_names()[:3]
    ('regression', 'yolo', 'threshold')
"""

from meltloc.heads.base import (Detection, Head, head_class, load_detector, names_text, register, registered,
                                section_strip)
from meltloc.heads import regression, yolo, threshold, classifiers  # noqa: E402,F401  (each registers itself)


def head_names() -> tuple[str, ...]:
    """Every registered head name, in registration order."""
    return tuple(registered())


__all__ = ["Detection", "Head", "head_class", "head_names", "load_detector", "names_text", "register", "registered",
           "section_strip"]
