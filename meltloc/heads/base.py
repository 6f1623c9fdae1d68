"""The one contract every head answers, and the registry that knows which heads exist.

A head is a class registered with :func:`register` under one or more names.
Its instances are detectors: built from a checkpoint, they take a
:class:`~meltloc.section.Section` and return scored intervals in rows of its
image (:meth:`Head.detect`). Its class methods train it. Callers (detect,
compare, demo, the CLI) ask the registry for names, help texts and options,
and never test which head they hold.

This module imports no head, no torch and no numpy: the registry is filled when
:mod:`meltloc.heads` imports the head modules, each of which registers itself.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import TYPE_CHECKING, Callable, ClassVar, Sequence

from meltloc.detections import Detection
from meltloc.errors import CheckpointError, MeltlocError

if TYPE_CHECKING:  # the registry stays light: the CLI lists heads without numpy, pandas, cv2 or torch
    from meltloc.section import Section
    from meltloc.strips import Strip

TRAIN_OPTIONS = {
    "epochs": "Training epochs (default: the head's own).",
    "steps_per_epoch": "Batches per epoch.",
    "batch": "Batch size.",
    "model": "Architecture variant or starting weights.",
    "imgsz": "Network input size in pixels.",
    "runs": "Folder for the trainer's own run files.",
    "members": "Networks trained from seeds SEED, SEED+1, ... and combined into one checkpoint (an ensemble); "
               "training takes that many times as long, detect runs each network.",
}
"""Options of ``meltloc train`` beyond data, out, seed, device and resume; a head names those it takes."""


class PlainConfig:
    """``to_dict``/``from_dict`` of a head's config dataclass, as its checkpoint stores it.

    ``from_dict`` drops keys the dataclass does not have (written by another
    version) and turns lists back into tuples where the field is a tuple.
    """

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        import types
        import typing

        try:
            hints = typing.get_type_hints(cls)
        except NameError:  # an annotation naming something imported for type checking only: read the text
            hints = {f.name: f.type for f in fields(cls)}

        def is_tuple(hint) -> bool:
            if isinstance(hint, str):
                return hint.startswith(("tuple", "Tuple")) or "| tuple" in hint or "Optional[tuple" in hint
            if typing.get_origin(hint) in (typing.Union, types.UnionType):
                return any(is_tuple(h) for h in typing.get_args(hint))
            return typing.get_origin(hint) is tuple or hint is tuple

        names = {f.name for f in fields(cls)}
        kept = {k: (tuple(v) if isinstance(v, list) and is_tuple(hints.get(k)) else v)
                for k, v in dict(d).items() if k in names}
        return cls(**kept)


class Head:
    """One approach: how it trains (class methods) and how it detects (an instance per checkpoint).

    Class attributes a head sets:
        summary: one line for ``--help`` and the README.
        train_options: the :data:`TRAIN_OPTIONS` its trainer takes.
        option_help: per option, what it means for this head (shown in ``meltloc train --help``).
        demo_training: short training options for ``meltloc demo`` (a CPU, minutes).

    Instance attributes (set by ``__init__``):
        head: the registered name the checkpoint carries.
        classes: feature types it reports.
        checkpoint: the checkpoint dict.
        score_threshold: the operating threshold chosen on validation. What
            :meth:`detect` does without a threshold is :meth:`threshold_for`
            (None): for most heads this one, so detections scoring below it
            are not reported; the slice classifiers decide windows at it and
            then keep every interval.
    """

    name: ClassVar[str] = ""
    names: ClassVar[tuple[str, ...]] = ()
    summary: ClassVar[str] = ""
    train_options: ClassVar[tuple[str, ...]] = ()
    option_help: ClassVar[dict[str, str]] = {}
    demo_training: ClassVar[dict] = {}

    head: str
    classes: tuple[str, ...]
    checkpoint: dict
    score_threshold: float

    def __init__(self, checkpoint: dict, device: str = "cpu"):
        self.checkpoint = checkpoint
        self.head = checkpoint.get("head", self.name)
        self.device = device

    # ------------------------------------------------------------------ detecting
    def detect(self, section: Section, score_threshold: float | None = None) -> list[Detection]:
        """Scored intervals in rows of ``section.image``, by descending score.

        ``score_threshold`` None uses the head's operating threshold; pass a
        low one for AP curves.
        """
        return self.detect_many(section, [score_threshold])[0]

    def detect_many(self, section: Section, thresholds: Sequence[float | None]) -> list[list[Detection]]:
        """:meth:`detect` at each of ``thresholds`` (None: the operating one).

        A head predicts once and decodes for every threshold; :meth:`predict`
        and :meth:`decode` are what a head implements.
        """
        prediction = self.predict(section)
        return [self.decode(prediction, self.threshold_for(t)) for t in thresholds]

    def threshold_for(self, score_threshold: float | None) -> float:
        """The threshold :meth:`decode` gets for a caller's ``score_threshold`` (None: the operating one)."""
        return self.score_threshold if score_threshold is None else float(score_threshold)

    def predict(self, section: Section):
        """The network's raw answer for a section (whatever :meth:`decode` needs)."""
        raise NotImplementedError

    def decode(self, prediction, score_threshold: float) -> list[Detection]:
        """Detections in image rows scoring at least ``score_threshold``, by descending score."""
        raise NotImplementedError

    # ------------------------------------------------------------------ facts for compare
    def parameters(self) -> int | None:
        """Number of learned parameters (None when the head has no network)."""
        import torch

        modules = [m for m in vars(self).values() if isinstance(m, torch.nn.Module)]
        return sum(p.numel() for m in modules for p in m.parameters()) if modules else None

    def extra_figures(self, data_dir: Path, split: str, device: str = "cpu") -> dict[str, float]:
        """Figures only this kind of head has (e.g. slice accuracy), on a convert output's split."""
        return {}

    # ------------------------------------------------------------------ training
    @classmethod
    def demo_options(cls, name: str) -> dict:
        """Short training options for ``meltloc demo`` (minutes on a CPU) of the head registered as ``name``."""
        return dict(cls.demo_training)

    @classmethod
    def train(cls, data: Path, out: Path, *, head: str, seed: int = 0, device: str = "cpu",
              resume: Path | None = None, **options) -> dict:
        """Train on a convert output, write the best checkpoint to ``out``; returns figures and a one-line
        ``message``."""
        raise NotImplementedError

    @classmethod
    def upgrade(cls, checkpoint: dict) -> dict:
        """An old checkpoint of this head with whatever it pickled turned into plain data (``meltloc
        upgrade-checkpoint``); the default has nothing to turn."""
        return checkpoint

    @classmethod
    def check_options(cls, head: str, options: dict) -> None:
        """Raises MeltlocError naming the first option this head does not take."""
        for key in options:
            if key not in cls.train_options:
                takes = ", ".join("--" + o.replace("_", "-") for o in cls.train_options) or "none"
                raise MeltlocError(f"the {head} head has no option --{key.replace('_', '-')} "
                                   f"(its own options: {takes})")


# ---------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[Head]] = {}


def register(*names: str) -> Callable[[type[Head]], type[Head]]:
    """Class decorator: the head answers to ``names`` (its checkpoints carry one of them)."""

    def add(cls: type[Head]) -> type[Head]:
        for n in names:
            if n in _REGISTRY and _REGISTRY[n] is not cls:
                raise ValueError(f"head name '{n}' is registered twice")
            _REGISTRY[n] = cls
        cls.name = names[0]
        cls.names = tuple(names)
        return cls

    return add


def registered() -> dict[str, type[Head]]:
    """Name -> head class, in registration order."""
    return dict(_REGISTRY)


def head_class(name: str) -> type[Head]:
    """The class registered as ``name``.

    Raises:
        MeltlocError: no head of that name.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise MeltlocError(f"unknown head '{name}': choose {names_text()}") from None


def names_text() -> str:
    """'a, b or c': the registered names for messages and help."""
    names = list(_REGISTRY)
    return ", ".join(names[:-1]) + " or " + names[-1] if len(names) > 1 else "".join(names)


def load_detector(weights: str | Path, device: str = "cpu") -> Head:
    """The detector a checkpoint holds.

    Raises:
        CheckpointError: missing or foreign file, or a head this version does not have.
    """
    from meltloc.checkpoint import load_checkpoint

    ck = load_checkpoint(weights)
    cls = _REGISTRY.get(ck["head"])
    from meltloc.heads.ends import KIND as END_REFINER

    if ck["head"] == END_REFINER:
        raise CheckpointError("an end refiner, not a head's checkpoint: give it with --end-refiner (or --refine-ends "
                              "for the shipped one), and a head's checkpoint with --weights", weights)
    if cls is None:
        raise CheckpointError(f"a '{ck['head']}' checkpoint: this version of meltloc has no such head "
                              f"(it has {names_text()})", weights)
    try:
        return cls(ck, device)
    except CheckpointError as exc:  # name the file when the head's own reader could not
        if exc.path is None:
            raise CheckpointError(exc.message, weights) from exc
        raise


def section_strip(section: Section, px_per_mm: float, width: int, inset: float) -> Strip:
    """The section's strip at a head's working scale (nominal 1.65 m when the image has no manifest entry)."""
    from meltloc.strips import make_strip, nominal_px_per_mm

    image_px_per_mm = section.scale.px_per_m / 1000 if section.scale is not None else nominal_px_per_mm(section.bounds)
    return make_strip(section.image, section.bounds, image_px_per_mm, px_per_mm, width, inset)


def strip_detections(strip: Strip, found) -> list[Detection]:
    """``(type, score, row_a, row_b)`` in strip rows as detections in rows of the section's image."""
    out = []
    for name, score, a, b in found:
        r0, r1 = strip.to_image_rows([a, b])
        out.append(Detection(name, float(score), float(r0), float(r1)))
    return out
