"""The seed's slice classifiers as baselines: each window of the strip is melt or not; runs of positive
windows become intervals. The detector and the registration are here.

The seed cut a section into 50 x 200 px slices, asked a CNN "does this slice
hold a melt layer?", slid the window down the core with a stride of 10 px,
predicted on 4 flips and took the majority. Here the same idea runs on the
common canvas of every head, the core strip (:mod:`meltloc.strips`, 10 rows
per mm of core, 64 columns across ~8 cm), and answers the common call
(section in, scored intervals in image rows out) through
:class:`ClassifierHead`.

The modules, one job each: :mod:`.config` (architecture, window geometry and
training settings of each head), :mod:`.nets` (the networks and their
precision), :mod:`.windows` (windows, the labelling rule, inference and
decoding), :mod:`.slices` (balanced slices and the seed's slice accuracy) and
:mod:`.train` (training and the operating threshold).
"""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from meltloc import MELT_LAYER
from meltloc.errors import CheckpointError, MeltlocError
from meltloc.heads.base import Head, register, section_strip, strip_detections


@register("simple-cnn", "enhanced-cnn", "resnet34", "vgg16")
class ClassifierHead(Head):
    """A slice classifier behind the common detector call.

    Windows are decided at the operating threshold (the window probability
    chosen on validation); a lower ``score_threshold`` passed to
    :meth:`detect` cannot add windows, it only stops dropping intervals
    whose mean probability is below the operating one. So for these heads
    the ranking run of ``compare`` is the operating run, scored by each
    interval's mean probability.
    """

    summary = "the seed's slice classifiers (baselines): simple-cnn, enhanced-cnn, resnet34, vgg16"
    train_options = ("epochs", "steps_per_epoch", "batch", "model", "imgsz")
    option_help = {"model": "a local VGG-16 weights file to start from (vgg16)",
                   "imgsz": "the network's input width in pixels"}
    demo_training = {"epochs": 2, "steps_per_epoch": 15, "flips": ("none",), "max_val_slices": 200}
    _DEMO_WINDOWS = {"simple-cnn": {"imgsz": 64, "stride_mm": 1.0}, "enhanced-cnn": {"stride_mm": 2.0},
                     "resnet34": {"imgsz": 64, "stride_mm": 1.0}, "vgg16": {"stride_mm": 2.0}}

    classes = (MELT_LAYER,)

    def __init__(self, checkpoint: dict, device: str = "cpu"):
        from meltloc.heads.classifiers.config import ClassifierConfig
        from meltloc.heads.classifiers.nets import build_model, prepare_for_inference

        super().__init__(checkpoint, device)
        if self.head not in self.names:
            raise CheckpointError(f"not a slice-classifier checkpoint (head '{self.head}')")
        try:
            self.cfg = ClassifierConfig.from_dict(checkpoint["config"])
            model = build_model(self.cfg)
            model.load_state_dict(checkpoint["model"])
        except (RuntimeError, KeyError, TypeError, AttributeError, MeltlocError) as exc:
            raise CheckpointError(f"{self.head} weights do not fit the architecture in its config "
                                  "(written by another version of meltloc?); train again") from exc
        self.model = prepare_for_inference(model, device)
        self.score_threshold = float(checkpoint.get("score_threshold", self.cfg.score_threshold))

    def predict_strip(self, pixels):
        """Window starts and flip probabilities of a strip at this head's working scale."""
        from meltloc.heads.classifiers.windows import predict_strip

        return predict_strip(self.model, pixels, self.cfg, self.device)

    def predict(self, section):
        from meltloc.heads.classifiers.windows import decode_windows

        strip = section_strip(section, self.cfg.px_per_mm, self.cfg.width, self.cfg.inset)
        starts, probs = self.predict_strip(strip.pixels)
        return strip, decode_windows(starts, probs, self.cfg, self.score_threshold, strip.pixels.shape[0])

    @classmethod
    def demo_options(cls, name: str) -> dict:
        """Inference without flips, windows every 1 mm (simple-cnn, resnet34, on the strip's own 64 columns) or
        2 mm (the heaviest two) instead of 0.5 mm: the slice classifiers are by far the slowest at detect."""
        return {**cls.demo_training, **cls._DEMO_WINDOWS.get(name, {})}

    def threshold_for(self, score_threshold):
        """Windows are decided at the operating threshold in :meth:`predict`; a threshold then only drops the
        intervals whose mean probability is below it (None: none dropped)."""
        return 0.0 if score_threshold is None else float(score_threshold)

    def decode(self, prediction, score_threshold: float):
        strip, found = prediction
        floor = score_threshold
        return strip_detections(strip, [(MELT_LAYER, score, a, b) for score, a, b in found if score >= floor])

    def extra_figures(self, data_dir: Path, split: str, device: str = "cpu") -> dict[str, float]:
        """The seed's slice accuracy on the split (balanced slices, one prediction each at 0.5)."""
        from meltloc.heads.classifiers.slices import slice_accuracy

        return {"slice_accuracy": float(slice_accuracy(self, data_dir, split=split, device=device))}

    @classmethod
    def train(cls, data, out, *, head="simple-cnn", seed=0, device="cpu", resume=None, epochs=None, batch=None,
              **options) -> dict:
        """Default settings of ``head``, overridden by ``options``: the fields of
        :class:`~meltloc.heads.classifiers.config.ClassifierSettings` and
        :class:`~meltloc.heads.classifiers.config.ClassifierConfig` (e.g. ``lr``, ``pos_fraction``,
        ``stride_rows``), plus ``model`` (a local VGG-16 weights file, vgg16 only) and ``imgsz`` (network
        input width, ``input_cols``).

        Raises:
            MeltlocError: unknown option; see also :func:`~meltloc.heads.classifiers.train.train`.
        """
        from meltloc.heads.classifiers.config import (ClassifierConfig, ClassifierSettings, default_config,
                                                      default_settings)
        from meltloc.heads.classifiers.train import train

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
