"""End refinement: a stage after any head that moves each melt layer's two ends onto the layer's.

Every head finds most layers but puts their ends a few tenths of a millimetre off on faint, diffuse
and tilted layers (docs/generalisation_log.md, eighteenth and nineteenth rounds). This stage looks at
each detected melt layer again, in a 192-row x 64-column crop of the core strip around it (10 strip
rows per mm, each row divided by its local brightness), with a second channel holding the fraction of
each row inside the detection, and a small 2-D network (seven 3 x 3 convolutions, 0.1 M parameters)
says how far to move each end. The shifts are averaged over the crop as is and flipped left-right,
up-down and both, and over the networks the file holds (seeds of one training). Scores, lenses and
the number of rows are left as they are; a layer that would end up thinner than
:data:`~meltloc.detections.MIN_THICKNESS_MM` (within the core) keeps its ends. The networks are small
and run on the CPU whatever ``--device`` the head has.

It is not a head: it answers ``refine(section, detections) -> detections`` for any head's output, and
``meltloc detect --refine-ends`` runs it (off by default). The shipped ``weights/end_refiner.pt`` holds
two networks trained by ``benchmarks/candidate_verifier.py --refine`` on 128 synthetic sections of every
style and packed by ``benchmarks/pack_end_refiner.py`` (README, "End refinement"). Its file is a meltloc
checkpoint of ``head`` ``end-refiner`` and loads with ``weights_only=True``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from meltloc import MELT_LAYER
from meltloc.detections import Detection, clean_detections, core_rows
from meltloc.errors import CheckpointError
from meltloc.heads.base import PlainConfig, section_strip

KIND = "end-refiner"
"""The ``head`` field of an end refiner's checkpoint (it is no head: :func:`meltloc.heads.load_detector` refuses it)."""


@dataclass(frozen=True)
class EndRefinerConfig(PlainConfig):
    """The strip the networks look at and the crop they were trained on."""

    px_per_mm: float = 10.0
    width: int = 64
    inset: float = 0.05
    norm_window_mm: float = 41.0
    crop_rows: int = 192
    shift_unit_rows: float = 4.0  # the networks' shifts are in this many strip rows (0.4 mm at 10 rows per mm)
    channels: tuple = field(default=(16, 32, 48, 64))


class EndNet(nn.Module):
    """Crop (2 x crop rows x width) -> a logit (is it a layer?) and, with ``outputs=3``, its two ends' shifts
    in units of :attr:`EndRefinerConfig.shift_unit_rows`."""

    def __init__(self, channels=(16, 32, 48, 64), outputs: int = 3):
        super().__init__()
        c0, c1, c2, c3 = channels

        def block(c_in, c_out, stride):
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                                 nn.ReLU(inplace=True))

        self.features = nn.Sequential(block(2, c0, 1), block(c0, c1, 2), block(c1, c1, 1), block(c1, c2, 2),
                                      block(c2, c2, 1), block(c2, c3, 2), block(c3, c3, 1))
        self.out = nn.Sequential(nn.Linear(2 * c3, 64), nn.ReLU(inplace=True), nn.Linear(64, outputs))
        self.outputs = outputs

    def forward(self, x):
        f = self.features(x)
        y = self.out(torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], 1))
        return y[:, 0] if self.outputs == 1 else y


def crop(normalised: np.ndarray, a: float, b: float, crop_rows: int, shift: float = 0.0,
         soft: bool = True) -> np.ndarray:
    """(2, crop_rows, width): the normalised strip around the interval [a, b) (strip rows) and a mask of its rows
    (``soft``: the fraction of each row inside it, so that its ends are seen to a fraction of a row; else 0 or 1).
    Rows beyond the strip repeat its first or last row."""
    top = int(round((a + b) / 2 + shift)) - crop_rows // 2
    rows = np.arange(top, top + crop_rows)
    pixels = normalised[np.clip(rows, 0, normalised.shape[0] - 1)].astype(np.float32)
    if soft:
        mask = np.clip(np.minimum(rows + 1, b) - np.maximum(rows, a), 0, 1).astype(np.float32)
    else:
        mask = ((rows + 0.5 >= a) & (rows + 0.5 <= b)).astype(np.float32)
    if not mask.any():
        mask[int(np.clip(round((a + b) / 2) - top, 0, crop_rows - 1))] = 1
    return np.stack([pixels, np.repeat(mask[:, None], pixels.shape[1], 1)])


@torch.no_grad()
def end_shifts_rows(nets: list[EndNet], crops: np.ndarray, unit_rows: float) -> np.ndarray:
    """(n, 2): each crop's top and bottom shifts in strip rows, averaged over the crop as is, flipped left-right,
    up-down and both, and over ``nets``."""
    x = torch.from_numpy(np.ascontiguousarray(crops, dtype=np.float32))
    out = []
    for net in nets:
        passes = [net(x), net(x.flip(3)), net(x.flip(2)), net(x.flip(2).flip(3))]
        # an up-down flip turns the top end's shift into minus the bottom end's
        out += [passes[0][:, 1:], passes[1][:, 1:], -passes[2][:, [2, 1]], -passes[3][:, [2, 1]]]
    return (torch.stack(out).mean(0) * unit_rows).numpy().astype(np.float64)


def _check_config(cfg: EndRefinerConfig) -> None:
    """Raises ValueError naming the first setting no strip or crop can be made with."""
    for name in ("px_per_mm", "norm_window_mm", "shift_unit_rows", "inset"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0 \
                or (value == 0 and name != "inset"):
            raise ValueError(f"{name} = {value!r}")
    for name in ("width", "crop_rows"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 8:
            raise ValueError(f"{name} = {value!r}")
    if cfg.inset >= 0.5:
        raise ValueError(f"inset = {cfg.inset!r}")


class EndRefiner:
    """The networks of one end refiner checkpoint (:func:`load_end_refiner`).

    Attributes:
        path: the file it was read from (None when built from a checkpoint in memory).
        sha256: what identifies it in a detect run's record: the file's SHA-256, else one over its networks.
    """

    def __init__(self, checkpoint: dict, path: Path | None = None):
        import hashlib
        import io

        self.path = None if path is None else Path(path)
        try:
            self.cfg = EndRefinerConfig.from_dict(checkpoint["config"])
            _check_config(self.cfg)
            self.nets = []
            for state in checkpoint["model"]["nets"]:
                net = EndNet(tuple(self.cfg.channels), outputs=3)
                net.load_state_dict(state)
                self.nets.append(net.eval())
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise CheckpointError(f"an end refiner checkpoint this version cannot read ({type(exc).__name__}: "
                                  f"{str(exc).splitlines()[0][:120]})", path) from None
        if not self.nets:
            raise CheckpointError("an end refiner checkpoint that holds no network", path)
        self.train = checkpoint.get("train", {})
        if self.path is not None:
            from meltloc.checkpoint import file_sha256

            self.sha256 = file_sha256(self.path)
        else:
            buffer = io.BytesIO()
            torch.save([self.cfg.to_dict(), [net.state_dict() for net in self.nets]], buffer)
            self.sha256 = hashlib.sha256(buffer.getvalue()).hexdigest()

    def refine(self, section, detections: list[Detection], batch: int = 256) -> list[Detection]:
        """A head's ``detections`` (rows of ``section``'s image) cleaned as every head's are
        (:func:`~meltloc.detections.clean_detections`: one per band, inside the core), then each melt layer's ends
        moved; the rest as cleaned.

        The moved ends are clipped to the core, and a layer they would leave thinner than 0.3 mm keeps its ends
        (:func:`move_ends`). Order and number are those of the cleaned rows.
        """
        detections = clean_detections(section, detections)
        layers = [i for i, d in enumerate(detections) if d.type == MELT_LAYER]
        if not layers:
            return list(detections)
        from meltloc.heads.regression.net import normalise_local

        cfg = self.cfg
        strip = section_strip(section, cfg.px_per_mm, cfg.width, cfg.inset)
        normalised = normalise_local(strip.pixels, int(round(cfg.norm_window_mm * cfg.px_per_mm))).numpy()
        ends = np.array([strip.to_strip_rows([detections[i].row_from, detections[i].row_to]) for i in layers])
        shifts = np.concatenate([
            end_shifts_rows(self.nets, np.stack([crop(normalised, a, b, cfg.crop_rows) for a, b in ends[k:k + batch]]),
                            cfg.shift_unit_rows)
            for k in range(0, len(layers), batch)])
        moved = dict(zip(layers, (strip.to_image_rows(e) for e in ends + shifts)))
        return move_ends(section, detections, moved)


def move_ends(section, detections: list[Detection], ends_rows: dict) -> list[Detection]:
    """``detections`` with the rows given in ``ends_rows`` (index -> new (from, to) image rows) moved there, clipped
    to the core; a row that would then be thinner than :data:`~meltloc.detections.MIN_THICKNESS_MM` (the rule
    :func:`~meltloc.detections.clean_detections` applies when rows are written) or reversed keeps its ends."""
    top, bottom, min_rows = core_rows(section)
    out = list(detections)
    for i, (r0, r1) in ends_rows.items():
        r0, r1 = max(float(r0), top), min(float(r1), bottom)
        if r1 - r0 >= min_rows:
            out[i] = replace(detections[i], row_from=r0, row_to=r1)
    return out


def load_end_refiner(path: str | Path) -> EndRefiner:
    """The end refiner a checkpoint holds (read with ``weights_only=True``; a pickle only inside
    :func:`meltloc.checkpoint.trusting`, as every checkpoint).

    Raises:
        CheckpointError: missing or foreign file, or the checkpoint of a head.
    """
    from meltloc.checkpoint import load_checkpoint

    path = Path(path)
    if not path.is_file():
        raise CheckpointError("end refiner file not found; the shipped one is weights/end_refiner.pt, others are "
                              "written by benchmarks/pack_end_refiner.py", path)
    data = load_checkpoint(path)
    if data["head"] != KIND:
        raise CheckpointError(f"this is a '{data['head']}' head's checkpoint, not an end refiner (the shipped one: "
                              "weights/end_refiner.pt)", path)
    return EndRefiner(data, path)


def save_end_refiner(path: str | Path, state_dicts: list[dict], cfg: EndRefinerConfig | None = None,
                     train: dict | None = None) -> None:
    """Write the networks (state dicts of :class:`EndNet` with ``outputs=3``) as one end refiner checkpoint."""
    from meltloc.checkpoint import save_checkpoint

    cfg = cfg or EndRefinerConfig()
    for state in state_dicts:  # refuse what would not load, before writing anything
        EndNet(tuple(cfg.channels), outputs=3).load_state_dict(state)
    save_checkpoint(path, {"head": KIND, "config": cfg.to_dict(), "model": {"nets": list(state_dicts)},
                           "train": train or {}})
