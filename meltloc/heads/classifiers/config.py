"""Configuration of the slice classifiers: the architecture and window geometry a checkpoint stores
(:class:`ClassifierConfig`, :func:`default_config`) and the training settings (:class:`ClassifierSettings`,
:func:`default_settings`), with the defaults of each head.

**Geometry.** A *window* is ``window_mm`` = 5 mm of core (50 strip rows at
the default 10 rows/mm; the seed's slice was 50 rows = 2.7 mm at 186 px/cm)
across the full strip width (64 columns, ~8 cm less the 5 % insets), resized
(bilinear) to the network input ``input_rows`` x ``input_cols``. The input is
50 x 200 for simple-cnn and resnet34 (the seed's 50 x 200 slice; the simple
CNN then has the seed's 2.55 M parameters) and 50 x 64 (the strip's own
width, no resampling) for enhanced-cnn and vgg16, whose cost at 50 x 200 on
a CPU is 3-4 times higher for no extra information (``--imgsz 200`` gives
the seed's shape). Windows slide by ``stride_mm`` = 0.5 mm (5 strip rows;
the seed's 10 px at 186 px/cm are 0.54 mm): ~3,300 windows per 1.65 m
section, each predicted on 4 flips.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from meltloc import MELT_LAYER
from meltloc.errors import MeltlocError
from meltloc.heads.base import PlainConfig

HEADS = ("simple-cnn", "enhanced-cnn", "resnet34", "vgg16")
FLIPS = ("none", "h", "v", "hv")


@dataclass
class ClassifierConfig(PlainConfig):
    """Architecture, working scale and window geometry of a slice classifier (stored in checkpoints).

    Attributes:
        head: simple-cnn, enhanced-cnn, resnet34 or vgg16.
        px_per_mm, width, inset: the strip's working scale (from the convert output).
        classes: always ``("melt_layer",)``.
        window_mm: window height in mm of core (5 mm = 50 rows at 10 px/mm).
        stride_mm: sliding stride in mm (0.5 mm = 5 rows at 10 px/mm).
        input_rows, input_cols: network input; windows are resized to it.
        in_channels: network input channels: 1 (grey strips); the torchvision heads repeat grey to 3 inside.
        min_overlap_mm: ``k`` of the labelling rule (see
            :mod:`meltloc.heads.classifiers.windows`).
        flips: the flips voted at inference.
        merge_gap: negative windows bridged inside a run.
        conv_dropout, dense_dropout: dropout rates (simple-cnn, enhanced-cnn, vgg16 top).
        filters: enhanced-cnn's block widths.
        dense: enhanced-cnn's dense widths, or vgg16's top (before the output unit).
        init: weight initialisation of the seed's CNNs: ``torch`` (PyTorch's default) or ``he``
            (Kaiming normal, zero biases).
        center: subtract 1 from the normalised input (the strip median becomes 0; seed's CNNs).
        score_threshold: window probability threshold before one is chosen on validation.
        precision: inference under ``auto`` (bfloat16 autocast where supported) or ``float32``.
    """

    head: str = "simple-cnn"
    px_per_mm: float = 10.0
    width: int = 64
    inset: float = 0.05
    classes: tuple[str, ...] = (MELT_LAYER,)
    window_mm: float = 5.0
    stride_mm: float = 0.5
    input_rows: int = 50
    input_cols: int = 200
    in_channels: int = 1
    min_overlap_mm: float = 1.0
    flips: tuple[str, ...] = FLIPS
    merge_gap: int = 1
    conv_dropout: float = 0.25
    dense_dropout: float = 0.5
    filters: tuple[int, ...] = (157, 314, 471, 628)
    dense: tuple[int, ...] = (314, 157)
    init: str = "torch"
    center: bool = False
    score_threshold: float = 0.5
    precision: str = "auto"

    @property
    def window_rows(self) -> int:
        """Strip rows per window."""
        return max(2, int(round(self.window_mm * self.px_per_mm)))

    @property
    def stride_rows(self) -> int:
        """Strip rows between window starts."""
        return max(1, int(round(self.stride_mm * self.px_per_mm)))

    @property
    def min_overlap_rows(self) -> float:
        return self.min_overlap_mm * self.px_per_mm

    def describe(self) -> str:
        """The architecture in words (stored in checkpoints as ``config["architecture"]``)."""
        shape = f"input 1 x {self.input_rows} x {self.input_cols}"
        if self.head == "simple-cnn":
            return f"simple-cnn: 3 conv blocks 32/64/128 (3x3, max-pool, dropout), dense 128, 1 output; {shape}"
        if self.head == "enhanced-cnn":
            return (f"enhanced-cnn: 5x5 conv {self.filters[0]} + max-pool, 4 blocks of two 3x3 convs "
                    f"{'/'.join(map(str, self.filters))} + max-pool, dense {'/'.join(map(str, self.dense))}, "
                    f"1 output; {shape}")
        if self.head == "resnet34":
            return f"resnet34: torchvision resnet34 (from scratch), 1 output; {shape} repeated to 3 channels"
        return (f"vgg16: torchvision vgg16 features, dense {'/'.join(map(str, self.dense))}, 1 output; "
                f"{shape} repeated to 3 channels")

    def to_dict(self) -> dict:
        """The fields, with the window geometry in strip rows and the architecture in words for the record."""
        return {**asdict(self), "window_rows": self.window_rows, "stride_rows": self.stride_rows,
                "architecture": self.describe()}



def default_config(head: str) -> ClassifierConfig:
    """The default architecture and geometry of a head (see the module docstring for the choices).

    Raises:
        MeltlocError: unknown head.
    """
    if head == "simple-cnn":
        return ClassifierConfig(head=head, input_cols=200, conv_dropout=0.25, dense_dropout=0.5)
    if head == "enhanced-cnn":
        return ClassifierConfig(head=head, input_cols=64, dense_dropout=0.5,
                                filters=(157, 314, 471, 628), dense=(314, 157), init="he", center=True)
    if head == "resnet34":
        return ClassifierConfig(head=head, input_cols=200)
    if head == "vgg16":
        return ClassifierConfig(head=head, input_cols=64, dense_dropout=0.5, dense=(256, 128))
    raise MeltlocError(f"unknown classifier head '{head}' (known: {', '.join(HEADS)})")


@dataclass
class ClassifierSettings:
    """Training settings of a slice classifier (stored in the checkpoint).

    ``optimizer`` is ``adam`` or ``sgd`` (Nesterov momentum ``momentum``).
    ``pos_fraction`` is the share of positive windows in each batch (class
    balance). ``weights``: a local torchvision VGG-16 file (vgg16 only);
    ``freeze_features`` None freezes VGG-16's features exactly when weights
    are given. ``choose_threshold``: pick the window threshold on the val
    strips after training (one pass over them with 4 flips).
    """

    epochs: int = 10
    steps_per_epoch: int = 40
    batch: int = 32
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    pos_fraction: float = 0.5
    augment: bool = True
    seed: int = 0
    device: str = "cpu"
    threads: int = 0
    weights: str | None = None
    freeze_features: bool | None = None
    choose_threshold: bool = True
    max_val_slices: int = 400


def default_settings(head: str) -> ClassifierSettings:
    """The seed's values where it gave them, otherwise Keras' defaults; sized for ~10 min on 2 CPU cores.

    simple-cnn: Adam at Keras' default lr 1e-3, batch 32 (Keras' default).
    enhanced-cnn: the Hyperband best, SGD with Nesterov momentum 0.9, lr 0.0049.
    resnet34: Adam 1e-3. vgg16: Adam 1e-4 (a transfer-learning rate).
    """
    if head == "simple-cnn":
        return ClassifierSettings(epochs=15, steps_per_epoch=40, batch=32, optimizer="adam", lr=1e-3)
    if head == "enhanced-cnn":
        return ClassifierSettings(epochs=8, steps_per_epoch=25, batch=32, optimizer="sgd", lr=0.0049, momentum=0.9)
    if head == "resnet34":
        return ClassifierSettings(epochs=8, steps_per_epoch=20, batch=32, optimizer="adam", lr=1e-3)
    if head == "vgg16":
        return ClassifierSettings(epochs=8, steps_per_epoch=40, batch=32, optimizer="adam", lr=1e-4)
    raise MeltlocError(f"unknown classifier head '{head}' (known: {', '.join(HEADS)})")


__all__ = ["HEADS", "FLIPS", "ClassifierConfig", "ClassifierSettings", "default_config", "default_settings"]
