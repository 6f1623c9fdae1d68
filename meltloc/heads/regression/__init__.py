"""The start/stop regression head: network (:mod:`.net`), trainer (:mod:`.train`) and detector (here)."""

from __future__ import annotations

from meltloc.errors import CheckpointError, MeltlocError
from meltloc.heads.base import Head, register, section_strip, strip_detections


@register("regression")
class RegressionHead(Head):
    """A 1-D dense interval detector: per position of a core strip, a score and the distances to the start
    and the stop of the layer it lies in (FCOS/ActionFormer in one dimension)."""

    summary = "start/stop regression over core strips (the shipped weights)"
    train_options = ("epochs", "steps_per_epoch", "batch")
    demo_training = {"epochs": 8, "steps_per_epoch": 25, "batch": 8}

    def __init__(self, checkpoint: dict, device: str = "cpu"):
        from meltloc.heads.regression.net import RegressionConfig, RegressionNet, fuse_for_inference

        super().__init__(checkpoint, device)
        self.cfg = RegressionConfig.from_dict(checkpoint["config"])
        self.classes = self.cfg.classes
        self.model = RegressionNet(self.cfg)
        try:
            self.model.load_state_dict(checkpoint["model"])
        except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
            raise CheckpointError("regression weights do not fit the architecture in its config "
                                  "(written by another version of meltloc?); train again") from exc
        self.model = fuse_for_inference(self.model.to(device))
        self.score_threshold = float(checkpoint.get("score_threshold", self.cfg.score_threshold))

    def predict(self, section):
        from meltloc.heads.regression.net import predict_strip

        strip = section_strip(section, self.cfg.px_per_mm, self.cfg.width, self.cfg.inset)
        return strip, predict_strip(self.model, strip.pixels)

    def decode(self, prediction, score_threshold: float):
        from meltloc.heads.regression.net import decode_strip

        strip, (probs, boxes) = prediction
        return strip_detections(strip, decode_strip(probs, boxes, self.cfg.classes, score_threshold,
                                                    self.cfg.nms_iou))

    @classmethod
    def train(cls, data, out, *, head="regression", seed=0, device="cpu", resume=None, **options) -> dict:
        """Train with the default settings (:class:`~meltloc.heads.regression.train.TrainSettings`), overridden by
        ``options`` (its field names)."""
        from meltloc.heads.regression.train import TrainSettings, train
        from meltloc.heads.training import run_folder

        settings = TrainSettings(seed=seed, device=device)
        for name, value in options.items():
            if not hasattr(settings, name):
                raise MeltlocError(f"the regression head has no option --{name.replace('_', '-')} "
                                   "(it takes --epochs, --steps-per-epoch, --batch, --seed, --device, --resume)")
            setattr(settings, name, value)
        result = train(data, out, settings, resume=resume)
        best = result["best"] or {}
        nan = float("nan")
        result["message"] = (f"wrote {out} (best epoch {best.get('epoch')}: val F1 {best.get('f1', nan):.3f}, "
                             f"mean AP {best.get('map', nan):.3f}, boundary {best.get('boundary_mm', nan):.3f} mm; "
                             f"{result['seconds'] / 60:.1f} min, {result['parameters']:,} parameters; run record in "
                             f"{run_folder(out)})")
        return result
