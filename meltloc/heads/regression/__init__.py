"""The start/stop regression head: network (:mod:`.net`), trainer (:mod:`.train`) and detector (here)."""

from __future__ import annotations

from meltloc.errors import CheckpointError, MeltlocError
from meltloc.heads.base import Head, register, section_strip, strip_detections


@register("regression")
class RegressionHead(Head):
    """A 1-D dense interval detector: per position of a core strip, a score and the distances to the start
    and the stop of the layer it lies in (FCOS/ActionFormer in one dimension)."""

    summary = "start/stop regression over core strips (the shipped weights)"
    train_options = ("epochs", "steps_per_epoch", "batch", "members")
    option_help = {"members": "their per-position answers averaged"}
    demo_training = {"epochs": 8, "steps_per_epoch": 25, "batch": 8}

    def __init__(self, checkpoint: dict, device: str = "cpu"):
        from torch import nn

        from meltloc.heads.regression.net import RegressionConfig

        super().__init__(checkpoint, device)
        self.cfg = RegressionConfig.from_dict(checkpoint["config"])
        self.classes = self.cfg.classes
        self.model = _network(self.cfg, checkpoint["model"], device)
        # An ensemble (README, "Ninth round"): more networks of the same working scale, answers averaged.
        members = []
        for i, member in enumerate(checkpoint.get("members") or [], start=2):
            if not isinstance(member, dict) or not {"config", "model"} <= member.keys():
                raise CheckpointError(f"ensemble member {i} lacks its config or weights: a damaged checkpoint")
            cfg = RegressionConfig.from_dict(member["config"])
            if not same_canvas(cfg, self.cfg):
                raise CheckpointError(f"ensemble member {i} works on another strip ({canvas_text(cfg)}) than "
                                      f"the first ({canvas_text(self.cfg)}); combine members of one scale")
            members.append(_network(cfg, member["model"], device))
        self.members = nn.ModuleList(members)
        self.score_threshold = float(checkpoint.get("score_threshold", self.cfg.score_threshold))

    def predict(self, section):
        from meltloc.heads.regression.net import predict_strip_mean

        strip = section_strip(section, self.cfg.px_per_mm, self.cfg.width, self.cfg.inset)
        return strip, predict_strip_mean([self.model, *self.members], strip.pixels)

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
        members = int(options.pop("members", 1))
        for name, value in options.items():
            if not hasattr(settings, name):
                raise MeltlocError(f"the regression head has no option --{name.replace('_', '-')} (it takes "
                                   "--epochs, --steps-per-epoch, --batch, --members, --seed, --device, --resume)")
            setattr(settings, name, value)
        if members > 1:
            from meltloc.heads.regression.ensemble import train_members
            from meltloc.heads.training import train_ensemble

            return train_ensemble(out, members, resume, lambda: train_members(data, out, settings, members),
                                  "averaged")
        result = train(data, out, settings, resume=resume)
        best = result["best"] or {}
        nan = float("nan")
        result["message"] = (f"wrote {out} (best epoch {best.get('epoch')}: val F1 {best.get('f1', nan):.3f}, "
                             f"mean AP {best.get('map', nan):.3f}, boundary {best.get('boundary_mm', nan):.3f} mm; "
                             f"{result['seconds'] / 60:.1f} min, {result['parameters']:,} parameters; run record in "
                             f"{run_folder(out)})")
        return result


CANVAS = ("px_per_mm", "width", "inset", "classes", "stride")
"""The config fields that fix what a network sees and where its positions lie: an ensemble's members share them."""


def same_canvas(a, b) -> bool:
    """Whether two regression configs read the same strip and answer at the same positions."""
    return all(tuple(getattr(a, k)) == tuple(getattr(b, k)) if k == "classes" else getattr(a, k) == getattr(b, k)
               for k in CANVAS)


def canvas_text(cfg) -> str:
    return f"{cfg.px_per_mm:g} rows/mm, {cfg.width} columns, inset {cfg.inset:g}, stride {cfg.stride}, " \
           f"classes {', '.join(cfg.classes)}"


def _network(cfg, state: dict, device: str):
    """A regression network with these weights, ready for inference."""
    from meltloc.heads.regression.net import RegressionNet, fuse_for_inference

    model = RegressionNet(cfg)
    try:
        model.load_state_dict(state)
    except (RuntimeError, KeyError, TypeError, AttributeError) as exc:
        raise CheckpointError("regression weights do not fit the architecture in its config "
                              "(written by another version of meltloc?); train again") from exc
    return fuse_for_inference(model.to(device))
