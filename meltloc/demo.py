"""`meltloc demo`: the whole pipeline on a small synthetic core, on a CPU, in minutes.

synth -> convert -> train every head (short settings) -> detect -> compare,
all under one folder::

    OUT/core/       the synthetic core (images/, sections.tab, features.csv, truth.csv)
    OUT/conv/       the convert output (split by section: train, val, test)
    OUT/weights/    one checkpoint per head (<head>.pt)
    OUT/detections.csv, OUT/overlays/   'meltloc detect' of the first trained head on the test sections
    OUT/report/     'meltloc compare' of every trained head: compare.csv, compare.md, figures

The settings (:class:`DemoSettings`, each head's ``demo_options``) are chosen to
finish in under 15 minutes on two CPU cores: 10 sections at 50 px/cm (5 train,
2 val, 3 test), strips at 5 rows per mm, a few hundred training steps or a
few epochs per head, cheaper inference for the slice classifiers. The figures
show that every part runs end to end, not what the heads can reach: the
README's figures come from full training.

Every registered head is trained (:mod:`meltloc.heads`). A head whose
training fails is reported and left out of the comparison; the rest goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from meltloc.compare import CompareResult, load_test_set, run_compare
from meltloc.convert import ConvertConfig, convert
from meltloc.errors import MeltlocError
from meltloc.heads import head_class, head_names, load_detector, registered
from meltloc.synth import SynthConfig, write_core


def demo_training() -> dict[str, dict]:
    """Short training per head (its :meth:`~meltloc.heads.base.Head.demo_options`), fit for a CPU."""
    return {name: cls.demo_options(name) for name, cls in registered().items()}


@dataclass
class DemoSettings:
    """What the demo draws and how it splits it.

    Attributes:
        sections: synthetic sections (1.65 m each).
        px_per_cm: their scan resolution (EastGRIP: 186; 50 keeps a CPU fast).
        px_per_mm: strip rows per mm of core (convert's ``--px-per-mm``; at most the image's own).
        val, test: fractions of the sections in those splits.
        seed: seed of the core, the splits and the training.
        heads: heads to try, in order.
        device: torch device.
        training: per-head training options (default :func:`demo_training`).
    """

    sections: int = 10
    px_per_cm: float = 50.0
    px_per_mm: float = 5.0
    val: float = 0.2
    test: float = 0.3
    seed: int = 7
    heads: tuple[str, ...] = field(default_factory=head_names)
    device: str = "cpu"
    training: dict[str, dict] = field(default_factory=demo_training)


@dataclass
class DemoResult:
    """What the demo did.

    Attributes:
        out: the demo folder.
        trained: head -> checkpoint written.
        skipped: head -> why it was not trained.
        seconds: step -> wall time (``synth``, ``convert``, ``train <head>``, ``detect``, ``compare``).
        compare: the comparison (None if no head was trained).
        detections: the detect output of the first trained head.
    """

    out: Path
    trained: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    compare: CompareResult | None = None
    detections: Path | None = None

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def _options(options: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in options.items()) or "its defaults"


def run_demo(out: str | Path, settings: DemoSettings | None = None,
             log: Callable[[str], None] = lambda line: None, show_progress: bool = True) -> DemoResult:
    """Run synth, convert, training of every available head, detect and compare under ``out``.

    Args:
        out: the demo folder (created; files of an earlier demo there are replaced).
        settings: what to draw and train.
        log: called with one line per step.
        show_progress: progress bars of the steps.

    Raises:
        MeltlocError: no head could be trained; errors of synth, convert, detect or compare.
    """
    from meltloc.detect import detect_images

    s = settings or DemoSettings()
    out = Path(out)
    result = DemoResult(out)
    core, conv, weights_dir = out / "core", out / "conv", out / "weights"

    t0 = time.time()
    log(f"synth: {s.sections} sections at {s.px_per_cm:g} px/cm, seed {s.seed} -> {core}")
    log("  " + write_core(core, n_sections=s.sections, seed=s.seed, config=SynthConfig(px_per_cm=s.px_per_cm),
                          show_progress=show_progress))
    result.seconds["synth"] = time.time() - t0

    t0 = time.time()
    px_per_mm = min(s.px_per_mm, s.px_per_cm / 10)
    log(f"convert: strips at {px_per_mm:g} rows/mm, val {s.val:g}, test {s.test:g} -> {conv}")
    converted = convert(core / "images", core / "sections.tab", core / "features.csv", conv,
                        ConvertConfig(px_per_mm=px_per_mm, val=s.val, test=s.test, seed=s.seed),
                        show_progress=show_progress)
    for line in converted.summary():
        log("  " + line)
    result.seconds["convert"] = time.time() - t0

    for head in s.heads:
        head_cls = head_class(head)
        options = dict(s.training.get(head, {}))
        path = weights_dir / f"{head}.pt"
        log(f"train {head} ({_options({k: v for k, v in options.items() if k != 'runs'})}) -> {path}")
        t0 = time.time()
        try:
            weights_dir.mkdir(parents=True, exist_ok=True)
            with torch.enable_grad():
                summary = head_cls.train(conv, path, head=head, seed=s.seed, device=s.device, resume=None,
                                         **options)
            with torch.no_grad():
                load_detector(path, s.device)  # it must also load
        except Exception as exc:  # a head still being written must not stop the others
            text = exc.message if isinstance(exc, MeltlocError) else f"{type(exc).__name__}: {exc}"
            result.skipped[head] = f"training failed ({' '.join(str(text).split())})"
            log(f"  {head} left out: {result.skipped[head]}")
            continue
        finally:
            result.seconds[f"train {head}"] = time.time() - t0
        result.trained[head] = path
        log(f"  {summary.get('message', f'wrote {path}')} [{result.seconds[f'train {head}'] / 60:.1f} min]")
    if not result.trained:
        raise MeltlocError("no head could be trained: " + "; ".join(f"{h}: {w}" for h, w in result.skipped.items()))

    test = load_test_set(conv, images=core / "images")
    first, path = next(iter(result.trained.items()))
    result.detections = out / "detections.csv"
    log(f"detect: {first} on the {len(test.images)} test section(s) -> {result.detections}, overlays in "
        f"{out / 'overlays'}")
    t0 = time.time()
    with torch.no_grad():
        summary = detect_images(test.images, load_detector(path, s.device), result.detections, test.manifest,
                                overlays=out / "overlays", show_progress=show_progress)
    result.seconds["detect"] = time.time() - t0
    log(f"  {summary.detections} detection(s) in {summary.images} image(s)")

    log(f"compare: {', '.join(result.trained)} on the test split -> {out / 'report'}")
    t0 = time.time()
    with torch.no_grad():
        result.compare = run_compare(conv, list(result.trained.values()), out / "report", images=core / "images",
                                     device=s.device, show_progress=show_progress)
    result.seconds["compare"] = time.time() - t0
    return result
