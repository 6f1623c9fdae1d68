"""meltloc: melt layers in ice-core line-scan images, as depth intervals in meters.

Data flows one way: read (:mod:`manifest`, :mod:`labels`, :mod:`imageio`) ->
geometry (:mod:`geometry`) -> alignment -> datasets/formats -> models ->
detect -> metrics -> report. Lower layers never import higher ones.
"""

__version__ = "0.1.0"

# Feature types as meltloc names them (CONTRACT.md).
MELT_LAYER = "melt_layer"
MELT_LENS = "melt_lens"
UNCERTAIN = "uncertain"
BUBBLE_FREE = "bubble_free"
POSITIVE_TYPES = (MELT_LAYER, MELT_LENS)
IGNORE_TYPES = (UNCERTAIN, BUBBLE_FREE)
