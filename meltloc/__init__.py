"""meltloc: melt layers in ice-core line-scan images, as depth intervals in meters.

From Python (see :mod:`meltloc.api`)::

    import meltloc
    detector = meltloc.load_detector()              # or a checkpoint of any head
    section = meltloc.read_section("227.png", sections="sections.tab")
    detector.detect(section)                        # DataFrame: depth_from_m, depth_to_m, type, score, ...

Data flows one way: read (:mod:`manifest`, :mod:`labels`, :mod:`imageio`) ->
geometry (:mod:`geometry`) -> alignment -> datasets/formats -> heads
(:mod:`meltloc.heads`) -> detect -> metrics -> review/record. Lower layers
never import higher ones.
"""

__version__ = "0.1.0"

# Feature types as meltloc names them (CONTRACT.md).
MELT_LAYER = "melt_layer"
MELT_LENS = "melt_lens"
UNCERTAIN = "uncertain"
BUBBLE_FREE = "bubble_free"
POSITIVE_TYPES = (MELT_LAYER, MELT_LENS)
IGNORE_TYPES = (UNCERTAIN, BUBBLE_FREE)

_API = ("load_detector", "read_section", "section_from_array", "detect_images", "Localizer")


def __getattr__(name: str):
    """The Python API (:mod:`meltloc.api`), imported on first use so that ``import meltloc`` stays light."""
    if name in _API:
        from meltloc import api

        return getattr(api, name)
    raise AttributeError(f"module 'meltloc' has no attribute {name!r}")


__all__ = ["MELT_LAYER", "MELT_LENS", "UNCERTAIN", "BUBBLE_FREE", *_API]
