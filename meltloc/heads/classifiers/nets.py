"""The networks of the slice classifiers: the seed's simple and enhanced CNNs and torchvision's ResNet-34
and VGG-16, each (B, 1, input_rows, input_cols) windows -> (B, 1) logits, built by name from a
:class:`~meltloc.heads.classifiers.config.ClassifierConfig`, and the precision they run at.

Precision: training runs in float32. Inference (detection, slice accuracy)
runs under bfloat16 autocast on CPUs with bfloat16 support and on CUDA
(``precision="auto"``), about twice as fast as float32 on 2 cores;
``precision="float32"`` turns it off.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch
from torch import nn

from meltloc.errors import CheckpointError, MeltlocError
from meltloc.heads.classifiers.config import HEADS, ClassifierConfig

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


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


def prepare_for_inference(model: nn.Module, device: str) -> nn.Module:
    return model.to(device).eval().to(memory_format=torch.channels_last)


__all__ = ["SimpleCNN", "EnhancedCNN", "ResNet34", "VGG16", "build_model", "count_parameters", "autocast",
           "prepare_for_inference"]
