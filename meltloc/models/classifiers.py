"""The seed project's slice classifiers as baselines: simple-cnn, enhanced-cnn, resnet34, vgg16.

The seed cut a section into 50 x 200 px slices, asked a CNN "does this slice
hold a melt layer?", slid the window down the core with a stride of 10 px,
predicted on 4 flips and took the majority. Here the same idea runs on the
common canvas of every head, the core strip (:mod:`meltloc.strips`, 10 rows
per mm of core, 64 columns across ~8 cm), and answers the common call
(section in, scored intervals in image rows out) through
:class:`ClassifierDetector`.

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

**Labels.** ``k`` = ``min_overlap_mm`` (1 mm = 10 rows). A window is
*positive* when it overlaps a true melt layer by at least ``min(k, layer
thickness)`` (so a layer thinner than 1 mm must lie wholly inside it);
*left out* of training and of slice accuracy when it overlaps a layer by less
than that (ambiguous), or an ignore region (``uncertain``, ``bubble_free``)
without being positive; *negative* otherwise. Melt lenses are negatives (the
classifier has one class, ``melt_layer``, as the seed's had).

**Class imbalance.** About 1-2 % of the windows of a core are positive (the
seed: 428 of 19,819; the synthetic training core here: 1.0 %). Training
draws *class-balanced batches*: each window is positive with probability
``pos_fraction`` (default 0.5), positives uniformly among all positive
window starts (any row, not only the stride grid), negatives uniformly among
all negative ones. The probabilities are thus those of a balanced prior; the
operating threshold is chosen on the validation sections (below), which puts
the prior back.

**Training** (:func:`train`): seeded; the seed's values where it gave them
(:func:`default_settings`): simple-cnn Adam 1e-3 (Keras' default), dropout
0.25 after each conv block and 0.5 before the output; enhanced-cnn SGD with
Nesterov momentum 0.9, lr 0.0049, dropout 0.5, He initialisation and its
input centred (median 0): with PyTorch's default initialisation its plain
stack of 9 ReLU convolutions stays at loss 0.69 under that SGD for hundreds
of steps; resnet34 Adam 1e-3; vgg16 Adam 1e-4. vgg16 with a local
torchvision VGG-16 file (``--model FILE``) loads its features and freezes
them (the seed's transfer model); without one (the default: nothing is ever
downloaded) the whole network trains from scratch, and the checkpoint
(``train.source``) and the message say so. Augmentation as the seed's (h and
v flips, brightness). Defaults are short (a few hundred batches of
32, ~10-20 min on 2 CPU cores): these are baselines.

**Inference** (:func:`predict_strip`, :func:`decode_windows`): every window of
the stride grid, each of the 4 flips (none, h, v, hv), sigmoid probabilities;
a window is positive when more than half of its flips reach the threshold (a
2-2 tie goes to the mean probability). Runs of positive windows (a single
negative window between two positives is bridged, ``merge_gap`` = 1) become
intervals scored by the mean probability of their windows and flips. The
interval of a run is the labelling rule inverted: a layer ``[a, b)`` makes
the windows of ``W`` rows starting in ``[a + k - W, b - k]`` positive, so a run of starts
``s_first .. s_last`` gives ``[s_first + W - k, s_last + k]``; a run too
short for that gives ``k`` rows around its centre.

**Operating threshold.** After training, the best weights run once over the
validation strips (4 flips) and the window threshold with the best melt-layer
F1 at IoU 0.5 is kept (``score_threshold`` in the checkpoint). A
``score_threshold`` passed to :meth:`ClassifierDetector.detect` is a floor on
the *interval* scores; the windows are always decided at the operating
threshold (a lower window threshold would grow and merge runs, not add
candidates).

**Slice accuracy** (:func:`slice_accuracy`): the seed's figure. Balanced
slices as the seed built them: every positive window of the stride grid in
the split's sections and as many negative windows drawn at random (seeded),
one prediction per slice (no flips) at probability 0.5, as Keras'
``evaluate`` gave it. The val split's figure is stored in the checkpoint.

Precision: training runs in float32. Inference (detection, slice accuracy)
runs under bfloat16 autocast on CPUs with bfloat16 support and on CUDA
(``precision="auto"``), about twice as fast as float32 on 2 cores;
``precision="float32"`` turns it off.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from meltloc import MELT_LAYER
from meltloc.checkpoint import load_checkpoint, save_checkpoint
from meltloc.detectors import Detection, section_strip
from meltloc.errors import CheckpointError, DatasetError, MeltlocError
from meltloc.progress import progress
from meltloc.section import Section
from meltloc.strip_dataset import StripSample, load_strips, read_strip_table

HEADS = ("simple-cnn", "enhanced-cnn", "resnet34", "vgg16")
FLIPS = ("none", "h", "v", "hv")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Label values of a window.
POSITIVE, NEGATIVE, LEFT_OUT = 1, 0, -1


# ---------------------------------------------------------------------- configuration
@dataclass
class ClassifierConfig:
    """Architecture, working scale and window geometry of a slice classifier (stored in checkpoints).

    Attributes:
        head: simple-cnn, enhanced-cnn, resnet34 or vgg16.
        px_per_mm, width, inset: the strip's working scale (from the convert output).
        classes: always ``("melt_layer",)``.
        window_mm: window height in mm of core (5 mm = 50 rows at 10 px/mm).
        stride_mm: sliding stride in mm (0.5 mm = 5 rows at 10 px/mm).
        input_rows, input_cols: network input; windows are resized to it.
        in_channels: network input channels: 1 (grey strips); the torchvision heads repeat grey to 3 inside.
        min_overlap_mm: ``k`` of the labelling rule (see the module docstring).
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

    @classmethod
    def from_dict(cls, d: dict) -> "ClassifierConfig":
        d = dict(d)
        for key in ("classes", "flips", "filters", "dense"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


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


# ---------------------------------------------------------------------- architectures
def _seed_init(model: nn.Module, cfg: ClassifierConfig) -> None:
    """He (Kaiming normal) weights and zero biases when ``cfg.init == "he"``; PyTorch's default otherwise."""
    if cfg.init == "torch":
        return
    if cfg.init != "he":
        raise MeltlocError(f"unknown init '{cfg.init}' (torch or he)")
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)


class SimpleCNN(nn.Module):
    """The seed's simple CNN: (B, C, 50, 200) -> (B, 1) logits.

    Three blocks of a 3x3 'same' convolution (32, 64, 128 filters), ReLU, 2x2
    max-pool and dropout; flatten (6 x 25 x 128 = 19,200 at 50 x 200); dense 128,
    ReLU, dropout; one output unit (sigmoid in the loss). 2,550,529 parameters
    on a 1-channel 50 x 200 input (the seed's 2,551,105 were on 3 channels).
    """

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        blocks, c_in = [], cfg.in_channels
        for c_out in (32, 64, 128):
            blocks += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                       nn.Dropout(cfg.conv_dropout)]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        flat = 128 * (cfg.input_rows // 8) * (cfg.input_cols // 8)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(flat, 128), nn.ReLU(inplace=True),
                                        nn.Dropout(cfg.dense_dropout), nn.Linear(128, 1))
        self.shift = 1.0 if cfg.center else 0.0
        _seed_init(self, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x - self.shift))


class EnhancedCNN(nn.Module):
    """The seed's Hyperband-best CNN: (B, C, H, W) -> (B, 1) logits.

    As the seed's layer table has it: a 5x5 convolution of ``filters[0]`` (157)
    and a max-pool, then 4 blocks of two 3x3 convolutions (157, 314, 471, 628)
    each followed by a max-pool; flatten; dense 314 and 157 with ReLU and
    dropout; one output unit. 12,554,192 parameters on 1 x 50 x 200 (the seed:
    12,562,042 on 3 channels), 11,765,424 on 1 x 50 x 64.
    """

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        c0 = cfg.filters[0]
        layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels, c0, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
        c_in = c0
        for c_out in cfg.filters:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(inplace=True),
                       nn.Conv2d(c_out, c_out, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        rows, cols = cfg.input_rows, cfg.input_cols
        for _ in range(len(cfg.filters) + 1):
            rows, cols = rows // 2, cols // 2
        if rows < 1 or cols < 1:
            raise MeltlocError(f"enhanced-cnn needs an input of at least {2 ** (len(cfg.filters) + 1)} px a side, "
                               f"not {cfg.input_rows} x {cfg.input_cols}")
        dense: list[nn.Module] = [nn.Flatten()]
        width = c_in * rows * cols
        for d in cfg.dense:
            dense += [nn.Linear(width, d), nn.ReLU(inplace=True), nn.Dropout(cfg.dense_dropout)]
            width = d
        dense.append(nn.Linear(width, 1))
        self.classifier = nn.Sequential(*dense)
        self.shift = 1.0 if cfg.center else 0.0
        _seed_init(self, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x - self.shift))


class ImageNetInput(nn.Module):
    """Grey (B, 1, H, W) normalised strips -> (B, 3, H, W) as torchvision models expect.

    The strip normalisation puts the median at 1 and clips at 4; ``x / 4`` is
    then in [0, 1] and gets ImageNet's mean and standard deviation.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x[:, :1] / 4.0 - self.mean) / self.std


class ResNet34(nn.Module):
    """torchvision's ResNet-34, from scratch (never downloaded), one output unit: (B, 1, H, W) -> (B, 1)."""

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        from torchvision.models import resnet34

        self.input = ImageNetInput()
        self.net = resnet34(weights=None, num_classes=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.input(x))


class VGG16(nn.Module):
    """torchvision's VGG-16 features and 3 dense top layers: (B, 1, H, W) -> (B, 1).

    The features (13 convolutions, 5 max-pools) are torchvision's; their
    output is average-pooled to ``max(1, H/32) x max(1, W/32)`` cells (1 x 2
    at 50 x 64), flattened and passed through dense ``dense[0]`` (256) and
    ``dense[1]`` (128) with ReLU and dropout, then one output unit. With
    ImageNet weights (:meth:`load_features`) the features are frozen, as in
    the seed's transfer model.
    """

    def __init__(self, cfg: ClassifierConfig):
        super().__init__()
        from torchvision.models import vgg16

        if cfg.input_rows < 32 or cfg.input_cols < 32:
            raise MeltlocError(f"vgg16 needs an input of at least 32 x 32 px, not {cfg.input_rows} x {cfg.input_cols}")
        self.input = ImageNetInput()
        self.features = vgg16(weights=None).features
        cells = (max(1, cfg.input_rows // 32), max(1, cfg.input_cols // 32))
        self.pool = nn.AdaptiveAvgPool2d(cells)
        top: list[nn.Module] = [nn.Flatten()]
        width = 512 * cells[0] * cells[1]
        for d in cfg.dense:
            top += [nn.Linear(width, d), nn.ReLU(inplace=True), nn.Dropout(cfg.dense_dropout)]
            width = d
        top.append(nn.Linear(width, 1))
        self.classifier = nn.Sequential(*top)

    def load_features(self, path: str | Path) -> None:
        """Load the convolution weights of a local torchvision VGG-16 file (e.g. ``vgg16-397923af.pth``).

        Accepts a plain state dict of ``torchvision.models.vgg16`` (keys ``features.N.weight``) or of its
        features alone. Nothing is downloaded.

        Raises:
            CheckpointError: the file is missing, unreadable or holds no VGG-16 features.
        """
        path = Path(path)
        if not path.is_file():
            raise CheckpointError("VGG-16 weights file not found (nothing is downloaded: pass a local "
                                  "torchvision vgg16 .pth file)", path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises many kinds for foreign files
            raise CheckpointError(f"not a readable weights file ({type(exc).__name__})", path) from exc
        if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
            state = state["state_dict"]
        if not isinstance(state, dict):
            raise CheckpointError("not a state dict of torchvision's vgg16", path)
        feats = {k[len("features."):]: v for k, v in state.items() if isinstance(k, str) and k.startswith("features.")}
        if not feats:
            feats = {k: v for k, v in state.items() if isinstance(k, str) and k.split(".")[0].isdigit()}
        try:
            self.features.load_state_dict(feats, strict=True)
        except (RuntimeError, KeyError) as exc:
            raise CheckpointError("the file holds no torchvision VGG-16 features (keys or shapes differ)",
                                  path) from exc

    def freeze_features(self) -> None:
        for p in self.features.parameters():
            p.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.pool(self.features(self.input(x))))


ARCHITECTURES = {"simple-cnn": SimpleCNN, "enhanced-cnn": EnhancedCNN, "resnet34": ResNet34, "vgg16": VGG16}


def build_model(cfg: ClassifierConfig) -> nn.Module:
    """The network of ``cfg.head``, randomly initialised: (B, 1, input_rows, input_cols) -> (B, 1) logits.

    Raises:
        MeltlocError: unknown head or an input too small for it.
    """
    if cfg.head not in ARCHITECTURES:
        raise MeltlocError(f"unknown classifier head '{cfg.head}' (known: {', '.join(HEADS)})")
    return ARCHITECTURES[cfg.head](cfg)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def autocast(device: str, precision: str):
    """bfloat16 autocast where it is supported and asked for (``precision="auto"``), else nothing."""
    if precision != "auto":
        return contextlib.nullcontext()
    kind = torch.device(device).type
    if kind == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if kind == "cpu":
        try:
            supported = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
        except (AttributeError, RuntimeError):
            supported = False
        if supported:
            return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


# ---------------------------------------------------------------------- windows and labels
def normalise_strip(pixels: np.ndarray) -> torch.Tensor:
    """Strip pixels (uint8, H x W) -> float tensor divided by the strip's median, clipped to [0, 4]."""
    from meltloc.models.regression import normalise_strip as _normalise

    return _normalise(pixels)


def window_starts(n_rows: int, window_rows: int, stride_rows: int) -> np.ndarray:
    """First rows of the sliding windows over a strip of ``n_rows``: 0, stride, ...; the last one ends at the bottom.

    Returns:
        (N,) int64 starts (one start, 0, when the strip is shorter than a window).
    """
    last = max(0, n_rows - window_rows)
    starts = np.arange(0, last + 1, stride_rows, dtype=np.int64)
    if starts[-1] != last:
        starts = np.append(starts, last)
    return starts


def window_labels(starts: np.ndarray, window_rows: int, intervals: np.ndarray, ignore: np.ndarray,
                  min_overlap_rows: float) -> np.ndarray:
    """Labels of windows ``[s, s + window_rows)``: 1 positive, 0 negative, -1 left out.

    Args:
        starts: (N,) window starts in strip rows.
        intervals: (M, 2) true melt layers in strip rows.
        ignore: (K, 2) ignore regions in strip rows.
        min_overlap_rows: ``k``: a window is positive when it overlaps a layer by
            at least ``min(k, layer thickness)`` rows.

    Returns:
        (N,) int8 labels: positive as above; left out when it overlaps a layer
        by less than that, or touches an ignore region without being positive.
    """
    s = np.asarray(starts, dtype=np.float64)[:, None]
    e = s + window_rows
    labels = np.zeros(len(starts), dtype=np.int8)
    iv = np.asarray(intervals, dtype=np.float64).reshape(-1, 2)
    ign = np.asarray(ignore, dtype=np.float64).reshape(-1, 2)
    positive = np.zeros(len(starts), dtype=bool)
    partial = np.zeros(len(starts), dtype=bool)
    if len(iv):
        overlap = np.clip(np.minimum(e, iv[None, :, 1]) - np.maximum(s, iv[None, :, 0]), 0, None)   # (N, M)
        need = np.minimum(min_overlap_rows, iv[:, 1] - iv[:, 0])[None, :] - 1e-6
        positive = (overlap >= need).any(axis=1)
        partial = ((overlap > 0) & (overlap < need)).any(axis=1)
    touches_ignore = np.zeros(len(starts), dtype=bool)
    if len(ign):
        touches_ignore = ((np.minimum(e, ign[None, :, 1]) - np.maximum(s, ign[None, :, 0])) > 0).any(axis=1)
    labels[(partial | touches_ignore) & ~positive] = LEFT_OUT
    labels[positive] = POSITIVE
    return labels


def cut_windows(strip: torch.Tensor, starts, cfg: ClassifierConfig) -> torch.Tensor:
    """Windows of a normalised strip, resized to the network input.

    Args:
        strip: (H, W) normalised strip (:func:`normalise_strip`).
        starts: (B,) window starts.

    Returns:
        (B, 1, input_rows, input_cols) float tensor.
    """
    w = cfg.window_rows
    if strip.shape[0] < w:
        strip = F.pad(strip[None, None], (0, 0, 0, w - strip.shape[0]), mode="replicate")[0, 0]
    idx = torch.as_tensor(np.asarray(starts), dtype=torch.long)[:, None] + torch.arange(w)[None, :]
    x = strip[idx][:, None]                                                    # (B, 1, w, W)
    if x.shape[-2:] != (cfg.input_rows, cfg.input_cols):
        x = F.interpolate(x, size=(cfg.input_rows, cfg.input_cols), mode="bilinear", align_corners=False)
    return x


def flip(x: torch.Tensor, name: str) -> torch.Tensor:
    """A flip of (B, C, H, W) windows: none, h (mirror across the core), v (upside down), hv."""
    dims = {"none": (), "h": (3,), "v": (2,), "hv": (2, 3)}[name]
    return torch.flip(x, dims) if dims else x


# ---------------------------------------------------------------------- inference
@torch.inference_mode()
def predict_windows(model: nn.Module, strip: torch.Tensor, starts: np.ndarray, cfg: ClassifierConfig,
                    device: str = "cpu", batch: int = 256, flips: tuple[str, ...] | None = None) -> np.ndarray:
    """Sigmoid probabilities of windows and their flips.

    Args:
        strip: (H, W) normalised strip.
        starts: (N,) window starts.
        flips: flips to predict (default ``cfg.flips``).

    Returns:
        (N, F) float32 probabilities, one column per flip.
    """
    model.eval()
    flips = cfg.flips if flips is None else flips
    out = np.zeros((len(starts), len(flips)), dtype=np.float32)
    for i in range(0, len(starts), batch):
        x = cut_windows(strip, starts[i:i + batch], cfg).to(device).contiguous(memory_format=torch.channels_last)
        for j, name in enumerate(flips):
            with autocast(device, cfg.precision):
                logits = model(flip(x, name))
            out[i:i + batch, j] = torch.sigmoid(logits.float()).flatten().cpu().numpy()
    return out


def predict_strip(model: nn.Module, pixels: np.ndarray, cfg: ClassifierConfig, device: str = "cpu",
                  batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Window starts (N,) and probabilities (N, flips) of a whole strip (uint8 pixels)."""
    strip = normalise_strip(pixels)
    starts = window_starts(strip.shape[0], cfg.window_rows, cfg.stride_rows)
    return starts, predict_windows(model, strip, starts, cfg, device, batch)


def vote(probs: np.ndarray, threshold: float) -> np.ndarray:
    """Majority vote of the flips: (N, F) probabilities -> (N,) bool; a tie goes to the mean probability."""
    yes = (probs >= threshold).sum(axis=1)
    n = probs.shape[1]
    return (2 * yes > n) | ((2 * yes == n) & (probs.mean(axis=1) >= threshold))


def decode_windows(starts: np.ndarray, probs: np.ndarray, cfg: ClassifierConfig, threshold: float,
                   n_rows: int | None = None) -> list[tuple[float, float, float]]:
    """Runs of positive windows -> intervals in strip rows.

    Args:
        starts: (N,) window starts on the stride grid, ascending.
        probs: (N, F) probabilities of the flips.
        threshold: window probability threshold of the vote.
        n_rows: strip height, to clip the intervals.

    Returns:
        ``(score, start row, end row)`` per run, by descending score; the score
        is the mean probability of the run's windows (its bridged gaps
        included) and flips.
    """
    positive = vote(probs, threshold)
    idx = np.flatnonzero(positive)
    if idx.size == 0:
        return []
    # Split where more than merge_gap negative windows separate two positives.
    breaks = np.flatnonzero(np.diff(idx) > cfg.merge_gap + 1)
    w, k = cfg.window_rows, min(cfg.min_overlap_rows, cfg.window_rows / 2)
    mean_prob = probs.mean(axis=1)
    out = []
    for run in np.split(idx, breaks + 1):
        first, last = run[0], run[-1]
        s0, s1 = float(starts[first]), float(starts[last])
        a, b = s0 + w - k, s1 + k
        if b - a < k:
            centre = (s0 + s1 + w) / 2
            a, b = centre - k / 2, centre + k / 2
        if n_rows is not None:
            a, b = max(0.0, a), min(float(n_rows), b)
        if b > a:
            out.append((float(mean_prob[first:last + 1].mean()), a, b))
    out.sort(key=lambda r: -r[0])
    return out


def prepare_for_inference(model: nn.Module, device: str) -> nn.Module:
    return model.to(device).eval().to(memory_format=torch.channels_last)


class ClassifierDetector:
    """A slice classifier behind the common detector call (see :mod:`meltloc.detectors`).

    Attributes:
        head: the checkpoint's head (simple-cnn, enhanced-cnn, resnet34 or vgg16).
        classes: ``("melt_layer",)``.
        checkpoint: the checkpoint dict.
        cfg: its :class:`ClassifierConfig`.
        score_threshold: the window threshold chosen on validation.
    """

    classes = (MELT_LAYER,)

    def __init__(self, checkpoint: dict, device: str = "cpu"):
        self.checkpoint = checkpoint
        self.head = checkpoint.get("head")
        if self.head not in HEADS:
            raise CheckpointError(f"not a slice-classifier checkpoint (head '{self.head}')")
        try:
            self.cfg = ClassifierConfig.from_dict(checkpoint["config"])
            self.model = build_model(self.cfg)
            self.model.load_state_dict(checkpoint["model"])
        except (RuntimeError, KeyError, TypeError, AttributeError, MeltlocError) as exc:
            raise CheckpointError(f"{self.head} weights do not fit the architecture in its config "
                                  "(written by another version of meltloc?); train again") from exc
        self.device = device
        self.model = prepare_for_inference(self.model, device)
        self.score_threshold = float(checkpoint.get("score_threshold", self.cfg.score_threshold))

    def predict_strip(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Window starts and flip probabilities of a strip at this head's working scale."""
        return predict_strip(self.model, pixels, self.cfg, self.device)

    def detect(self, section: Section, score_threshold: float | None = None) -> list[Detection]:
        """Melt layers in rows of ``section.image``, by descending score.

        Windows are decided at the operating threshold; ``score_threshold``,
        when given, drops intervals whose mean probability is below it.
        """
        return self.detect_thresholds(section, [score_threshold])[0]

    def detect_thresholds(self, section: Section, thresholds: Sequence[float | None]) -> list[list[Detection]]:
        """:meth:`detect` at each of ``thresholds``, with the windows predicted once.

        The window predictions (the slow part) do not depend on the threshold,
        so ``meltloc compare`` asks for its operating and ranking detections in
        one call.
        """
        strip = section_strip(section, self.cfg.px_per_mm, self.cfg.width, self.cfg.inset)
        starts, probs = self.predict_strip(strip.pixels)
        found = decode_windows(starts, probs, self.cfg, self.score_threshold, strip.pixels.shape[0])
        out = []
        for floor in thresholds:
            kept = []
            for score, a, b in found:
                if floor is not None and score < floor:
                    continue
                r0, r1 = strip.to_image_rows([a, b])
                kept.append(Detection(MELT_LAYER, score, float(r0), float(r1)))
            out.append(kept)
        return out


# ---------------------------------------------------------------------- slices of a convert output
@dataclass
class StripWindows:
    """A strip ready for window sampling: normalised pixels and the label of every possible start."""

    sample: StripSample
    strip: torch.Tensor          # (H, W) normalised
    labels: np.ndarray           # (H - window_rows + 1,) label of a window starting at each row


def strip_windows(samples: list[StripSample], cfg: ClassifierConfig) -> list[StripWindows]:
    """Normalise strips and label the windows starting at every row."""
    out = []
    for smp in samples:
        strip = normalise_strip(smp.pixels)
        starts = np.arange(max(1, strip.shape[0] - cfg.window_rows + 1))
        labels = window_labels(starts, cfg.window_rows, smp.intervals, smp.ignore, cfg.min_overlap_rows)
        out.append(StripWindows(smp, strip, labels))
    return out


def balanced_slices(strips: list[StripWindows], cfg: ClassifierConfig, seed: int = 0,
                    max_positives: int | None = None) -> list[tuple[int, int, int]]:
    """The seed's balanced slice set: every positive window of the stride grid and as many random negatives.

    Returns:
        ``(strip index, window start, label)`` triples, positives first.
    """
    rng = np.random.default_rng(seed)
    pos, neg = [], []
    for i, sw in enumerate(strips):
        grid = window_starts(sw.strip.shape[0], cfg.window_rows, cfg.stride_rows)
        lab = sw.labels[np.minimum(grid, len(sw.labels) - 1)]
        pos += [(i, int(s), 1) for s in grid[lab == POSITIVE]]
        neg += [(i, int(s), 0) for s in grid[lab == NEGATIVE]]
    if max_positives is not None and len(pos) > max_positives:
        pos = [pos[j] for j in sorted(rng.choice(len(pos), max_positives, replace=False))]
    n = min(len(pos), len(neg))
    neg = [neg[j] for j in sorted(rng.choice(len(neg), n, replace=False))] if n else []
    return pos + neg


@torch.inference_mode()
def score_slices(model: nn.Module, strips: list[StripWindows], slices: list[tuple[int, int, int]],
                 cfg: ClassifierConfig, device: str = "cpu", batch: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities (no flips) and labels of slices from :func:`balanced_slices`."""
    model.eval()
    probs = np.zeros(len(slices), dtype=np.float32)
    labels = np.array([lab for _, _, lab in slices], dtype=np.float32)
    order = sorted(range(len(slices)), key=lambda j: slices[j][0])
    for i in range(0, len(order), batch):
        chunk = order[i:i + batch]
        x = torch.cat([cut_windows(strips[slices[j][0]].strip, [slices[j][1]], cfg) for j in chunk])
        x = x.to(device).contiguous(memory_format=torch.channels_last)
        with autocast(device, cfg.precision):
            logits = model(x)
        probs[chunk] = torch.sigmoid(logits.float()).flatten().cpu().numpy()
    return probs, labels


def slice_accuracy(detector_or_checkpoint, data_dir: str | Path, split: str = "test", seed: int = 0,
                   device: str = "cpu") -> float:
    """The seed's slice accuracy of a classifier on a convert output's split.

    Balanced slices (every positive window of the stride grid in the split's
    sections, as many random negatives, seeded), one prediction each at
    probability 0.5, no flips.

    Args:
        detector_or_checkpoint: a :class:`ClassifierDetector`, a checkpoint dict or a checkpoint file.
        data_dir: a ``meltloc convert`` output.
        split: train, val or test.

    Returns:
        The fraction of slices classified right (NaN when the split has no positive slice).

    Raises:
        DatasetError: no strip in that split.
        CheckpointError: not a slice-classifier checkpoint or detector.
    """
    det = detector_or_checkpoint
    if isinstance(det, (str, Path)):
        det = load_checkpoint(det)
    if isinstance(det, dict):
        det = ClassifierDetector(det, device)
    if not isinstance(det, ClassifierDetector):
        raise CheckpointError(f"slice accuracy is a figure of the slice classifiers ({', '.join(HEADS)}), "
                              f"not of '{getattr(det, 'head', type(det).__name__)}'")
    samples = load_strips(data_dir, det.cfg.classes, (split,))
    if not samples:
        raise DatasetError(f"no strip in the {split} split", data_dir)
    strips = strip_windows(samples, det.cfg)
    slices = balanced_slices(strips, det.cfg, seed)
    if not slices:
        return float("nan")
    probs, labels = score_slices(det.model, strips, slices, det.cfg, det.device)
    return float(((probs >= 0.5) == (labels == 1)).mean())


# ---------------------------------------------------------------------- training
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


def augment_batch(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The seed's augmentation (flips and brightness) on (B, 1, H, W) windows, per window."""
    b = x.shape[0]
    h = torch.from_numpy(rng.random(b) < 0.5)
    v = torch.from_numpy(rng.random(b) < 0.5)
    x = torch.where(h[:, None, None, None], torch.flip(x, (3,)), x)
    x = torch.where(v[:, None, None, None], torch.flip(x, (2,)), x)
    gain = torch.from_numpy(rng.uniform(0.7, 1.3, b).astype(np.float32))[:, None, None, None]
    return (x * gain).clamp(0, 4)


class WindowSampler:
    """Class-balanced batches of windows from training strips.

    Positives are drawn uniformly among all positive window starts (every row),
    negatives among all negative ones; each window is positive with
    probability ``pos_fraction``.
    """

    def __init__(self, strips: list[StripWindows], cfg: ClassifierConfig, pos_fraction: float):
        self.strips, self.cfg, self.pos_fraction = strips, cfg, pos_fraction
        self.pos = self._index(POSITIVE)
        self.neg = self._index(NEGATIVE)

    def _index(self, label: int) -> np.ndarray:
        parts = [np.stack([np.full(int((sw.labels == label).sum()), i), np.flatnonzero(sw.labels == label)], axis=1)
                 for i, sw in enumerate(self.strips)]
        return np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)

    @property
    def positive_share(self) -> float:
        """Share of positive windows among the labelled ones (before balancing)."""
        return len(self.pos) / max(1, len(self.pos) + len(self.neg))

    def batch(self, rng: np.random.Generator, size: int, augment: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(size, 1, input_rows, input_cols) windows and (size,) labels."""
        is_pos = rng.random(size) < self.pos_fraction
        picks = np.where(is_pos[:, None], self.pos[rng.integers(len(self.pos), size=size)],
                         self.neg[rng.integers(len(self.neg), size=size)])
        x = torch.cat([cut_windows(self.strips[i].strip, [s], self.cfg) for i, s in picks])
        if augment:
            x = augment_batch(x, rng)
        return x, torch.from_numpy(is_pos.astype(np.float32))


def _optimizer(model: nn.Module, s: ClassifierSettings) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, nesterov=True, weight_decay=s.weight_decay)
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)
    raise MeltlocError(f"unknown optimizer '{s.optimizer}' (adam or sgd)")


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               device: str = "cpu") -> float:
    """One optimisation step (float32) on (B, 1, H, W) windows and (B,) 0/1 labels; returns the binary cross-entropy."""
    model.train()
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    logits = model(x).flatten()
    loss = F.binary_cross_entropy_with_logits(logits, y.to(device))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def val_slices(model: nn.Module, strips: list[StripWindows], slices, cfg: ClassifierConfig, device: str) -> dict:
    """Loss and accuracy on balanced validation slices."""
    if not slices:
        return {}
    probs, labels = score_slices(model, strips, slices, cfg, device)
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    loss = float(-(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean())
    return {"slice_accuracy": float(((probs >= 0.5) == (labels == 1)).mean()), "loss": loss}


def intervals_table(samples: list[StripSample], found: dict[str, list]) -> pd.DataFrame:
    """Decoded intervals (strip rows) of samples as a detections table with depths."""
    rows = []
    for smp in samples:
        for score, a, b in found.get(smp.image, []):
            r0, r1 = smp.to_image_rows([a, b])
            d0, d1 = smp.scale.row_to_depth([r0, r1])
            rows.append({"image": smp.image, "type": MELT_LAYER, "score": score, "row_from": r0, "row_to": r1,
                         "depth_from_m": d0, "depth_to_m": d1})
    return pd.DataFrame(rows, columns=["image", "type", "score", "row_from", "row_to", "depth_from_m", "depth_to_m"])


def choose_threshold(probs: dict[str, tuple[np.ndarray, np.ndarray]], samples: list[StripSample],
                     truth: pd.DataFrame, cfg: ClassifierConfig) -> tuple[float, dict]:
    """The window threshold with the best melt-layer F1 at IoU 0.5 on the given strips, and its figures.

    Ties go to the threshold nearest 0.5.
    """
    from meltloc.metrics import evaluate_intervals

    best = (cfg.score_threshold, {"f1": -1.0})
    for thr in np.round(np.arange(0.1, 0.96, 0.05), 2):
        found = {smp.image: decode_windows(*probs[smp.image], cfg, float(thr), smp.pixels.shape[0]) for smp in samples}
        fig = evaluate_intervals(intervals_table(samples, found), truth).overall
        f1 = fig["f1"] if np.isfinite(fig["f1"]) else -1.0
        if f1 > best[1]["f1"] + 1e-9 or (abs(f1 - best[1]["f1"]) <= 1e-9 and abs(thr - 0.5) < abs(best[0] - 0.5)):
            best = (float(thr), {"f1": float(f1), "map": float(fig["map"]), "boundary_mm": float(fig["boundary_mm"])})
    return best


def train(data_dir: str | Path, out: str | Path, head: str, settings: ClassifierSettings | None = None,
          config: ClassifierConfig | None = None, resume: str | Path | None = None, show_progress: bool = True) -> dict:
    """Train a slice classifier on a convert output and write its best checkpoint to ``out``.

    Each epoch: ``steps_per_epoch`` class-balanced batches, then loss and
    slice accuracy on balanced val slices; the epoch with the best val slice
    accuracy (then the lowest val loss) is kept in ``out``, the last epoch (to
    resume from) in ``out`` with suffix ``.last.pt``. At the end the window
    threshold is chosen on the val strips (:func:`choose_threshold`).

    Args:
        data_dir: a ``meltloc convert`` output (strips.csv, strips/, intervals.csv).
        out: checkpoint file to write.
        head: simple-cnn, enhanced-cnn, resnet34 or vgg16.
        settings: training settings (default :func:`default_settings`).
        config: architecture and geometry (default :func:`default_config`); the
            working scale is taken from the strips.
        resume: a ``.last.pt`` checkpoint to continue from.

    Returns:
        Summary: best epoch and val figures, threshold, seconds, parameters.

    Raises:
        DatasetError: no training strips or no positive window.
        CheckpointError: a resume file of another head, or bad VGG-16 weights.
    """
    s = settings or default_settings(head)
    cfg = config or default_config(head)
    cfg.head = head
    data_dir, out = Path(data_dir), Path(out)
    if s.threads:
        torch.set_num_threads(s.threads)
    if not 0 < s.pos_fraction < 1:
        raise MeltlocError(f"pos_fraction must be between 0 and 1, not {s.pos_fraction}")
    table = read_strip_table(data_dir)
    cfg.px_per_mm = float(table["px_per_mm"].iloc[0])
    cfg.width = int(table["width"].iloc[0])
    if "inset" in table.columns:
        cfg.inset = float(table["inset"].iloc[0])
    if s.weights is not None and head != "vgg16":
        raise MeltlocError(f"starting weights (--model) are for vgg16 only; {head} trains from scratch")
    train_set = load_strips(data_dir, cfg.classes, ("train",))
    val_set = load_strips(data_dir, cfg.classes, ("val",))
    if not train_set:
        raise DatasetError("no strip in the train split", data_dir)
    train_windows = strip_windows(train_set, cfg)
    sampler = WindowSampler(train_windows, cfg, s.pos_fraction)
    if len(sampler.pos) == 0:
        raise DatasetError("the train split holds no melt layer: no positive window to learn from", data_dir)
    if len(sampler.neg) == 0:
        raise DatasetError("the train split holds no negative window", data_dir)
    val_windows = strip_windows(val_set, cfg)
    vslices = balanced_slices(val_windows, cfg, seed=s.seed, max_positives=s.max_val_slices // 2)

    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    model = build_model(cfg)
    source = "from scratch"
    if head == "vgg16":
        if s.weights is not None:
            model.load_features(s.weights)
            source = f"features from {s.weights}"
        if s.freeze_features if s.freeze_features is not None else s.weights is not None:
            model.freeze_features()
            source += ", features frozen"
    model = model.to(s.device).to(memory_format=torch.channels_last)
    opt = _optimizer(model, s)
    start_epoch, best, history, seconds = 0, None, [], 0.0
    if resume is not None:
        ck = load_checkpoint(resume, expect_head=head)
        try:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError("the resume file does not fit this architecture or these settings", resume) from exc
        start_epoch, best, history = ck["epoch"], ck.get("best"), ck["train"].get("history", [])
        seconds = ck["train"].get("seconds", 0.0)
        rng = np.random.default_rng([s.seed, start_epoch])
    last_path = out.with_suffix(".last.pt")
    train_info = {"data": str(data_dir), "source": source, "n_train_sections": len(train_set),
                  "n_val_sections": len(val_set), "positive_windows": int(len(sampler.pos)),
                  "negative_windows": int(len(sampler.neg)), "positive_share": sampler.positive_share,
                  "val_slices": len(vslices), "parameters": count_parameters(model),
                  "trainable_parameters": count_parameters(model, trainable_only=True)}
    epochs = progress(range(start_epoch, s.epochs), f"train {head}", total=max(0, s.epochs - start_epoch),
                      enabled=show_progress, unit="epoch")
    for epoch in epochs:
        t0 = time.time()
        losses = [train_step(model, opt, *sampler.batch(rng, s.batch, s.augment), s.device)
                  for _ in range(s.steps_per_epoch)]
        val = val_slices(model, val_windows, vslices, cfg, s.device)
        seconds += time.time() - t0
        record = {"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4),
                  **{f"val_{k}": v for k, v in val.items()}, "seconds": round(seconds, 1)}
        history.append(record)
        epochs.set_postfix(loss=f"{record['loss']:.3f}", val_acc=f"{val.get('slice_accuracy', float('nan')):.3f}")
        score = (val.get("slice_accuracy", 0.0), -val.get("loss", record["loss"]))
        payload = {"head": head, "config": cfg.to_dict(), "model": model.state_dict(),
                   "train": {**asdict(s), **train_info, "history": history, "seconds": seconds},
                   "epoch": epoch + 1, "best": best}
        if best is None or tuple(best["score"]) < score or not out.exists():
            best = {"score": list(score), "epoch": epoch + 1, **val}
            payload["best"] = best
            save_checkpoint(out, payload)
        save_checkpoint(last_path, {**payload, "best": best, "optimizer": opt.state_dict()})
    if not out.exists():
        raise CheckpointError("nothing trained: the resume file has already reached the asked epochs", resume)

    # The operating threshold and the val figures, with the best weights.
    final = load_checkpoint(out, expect_head=head)
    model.load_state_dict(final["model"])
    model.eval()
    t0 = time.time()
    threshold, val_figures = cfg.score_threshold, {}
    if s.choose_threshold and val_set:
        from meltloc.train_regression import truth_table

        probs = {smp.image: predict_strip(model, smp.pixels, cfg, s.device) for smp in
                 progress(val_set, "val strips", enabled=show_progress, unit="strip")}
        threshold, val_figures = choose_threshold(probs, val_set, truth_table(val_set, cfg.classes, data_dir), cfg)
    val_acc = val_slices(model, val_windows, vslices, cfg, s.device).get("slice_accuracy", float("nan"))
    seconds += time.time() - t0
    final["score_threshold"] = threshold
    final["slice_accuracy_val"] = val_acc
    final["train"].update({"seconds": seconds, "history": history, "threshold_val": val_figures})
    save_checkpoint(out, final)
    return {"best": best, "seconds": seconds, "parameters": count_parameters(model),
            "trainable_parameters": train_info["trainable_parameters"], "history": history, "out": str(out),
            "last": str(last_path), "score_threshold": threshold, "slice_accuracy_val": val_acc,
            "val": val_figures, "source": source}


def train_cli(data, out, head: str, seed: int = 0, device: str = "cpu", resume=None, epochs=None, batch=None,
              **options) -> dict:
    """``meltloc train --head simple-cnn|enhanced-cnn|resnet34|vgg16``: default settings, overridden by ``options``.

    Options are the fields of :class:`ClassifierSettings` and of
    :class:`ClassifierConfig` (e.g. ``lr``, ``pos_fraction``,
    ``stride_rows``), plus ``model`` (a local VGG-16 weights file, vgg16
    only) and ``imgsz`` (network input width, ``input_cols``).

    Raises:
        MeltlocError: unknown head or option; see also :func:`train`.
    """
    settings = default_settings(head)
    config = default_config(head)
    settings.seed, settings.device = seed, device
    if epochs is not None:
        settings.epochs = int(epochs)
    if batch is not None:
        settings.batch = int(batch)
    s_known = {f.name for f in fields(ClassifierSettings)}
    c_known = {f.name for f in fields(ClassifierConfig)} - {"head", "px_per_mm", "width", "inset", "classes"}
    for name, value in options.items():
        if value is None:
            continue
        if name == "model":
            name, value = "weights", str(value)
        elif name == "imgsz":
            name = "input_cols"
        if name in s_known:
            setattr(settings, name, value)
        elif name in c_known:
            setattr(config, name, tuple(value) if isinstance(getattr(config, name), tuple) else value)
        else:
            raise MeltlocError(f"the {head} head has no option '{name}' "
                               f"(it has: model, imgsz, {', '.join(sorted(s_known | c_known))})")
    result = train(data, out, head, settings, config, resume=resume)
    best = result["best"] or {}
    val = result["val"]
    nan = float("nan")
    result["message"] = (f"wrote {out} ({head}, {result['source']}; best epoch {best.get('epoch')}: val slice "
                         f"accuracy {result['slice_accuracy_val']:.3f}; val F1 {val.get('f1', nan):.3f} at window "
                         f"threshold {result['score_threshold']:.2f}, mean AP {val.get('map', nan):.3f}, boundary "
                         f"{val.get('boundary_mm', nan):.3f} mm; {result['seconds'] / 60:.1f} min, "
                         f"{result['parameters']:,} parameters)")
    return result


__all__ = ["HEADS", "FLIPS", "ClassifierConfig", "ClassifierSettings", "ClassifierDetector", "SimpleCNN",
           "EnhancedCNN", "ResNet34", "VGG16", "build_model", "default_config", "default_settings", "window_starts",
           "window_labels", "cut_windows", "predict_strip", "decode_windows", "vote", "slice_accuracy",
           "balanced_slices", "train", "train_cli"]
