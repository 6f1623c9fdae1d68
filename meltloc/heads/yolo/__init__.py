"""The YOLO head (ultralytics): tiles of the core strip as images, melt layers as boxes spanning the width.

The modules, one job each: :mod:`.config` (the checkpoint's config, the training
settings and ultralytics' arguments), :mod:`.data` (the convert output's YOLO
dataset), :mod:`.network` (the network as plain data, rebuilt offline),
:mod:`.infer` (tiles in, intervals out), :mod:`.train` (training and the
operating threshold) and :mod:`.env` (ultralytics kept offline); the detector
and the registration are here.
"""

from __future__ import annotations

from dataclasses import fields

from meltloc.errors import MeltlocError
from meltloc.heads.base import Head, register, section_strip, strip_detections


@register("yolo")
class YoloHead(Head):
    """An ultralytics YOLO detector on tiles of the strip; boxes become intervals along the core.

    Its non-maximum suppression runs per tile inside the network call, so
    :meth:`decode` runs the network at the threshold asked for.
    """

    summary = "an ultralytics YOLO detector on tiles of the core strip"
    train_options = ("epochs", "batch", "model", "imgsz", "runs", "members")
    option_help = {"model": "a model YAML (yolov8n.yaml, yolo11s.yaml) or a local .pt to start from",
                   "imgsz": "the tile's long side, a multiple of 32 (default: the tile height)",
                   "runs": "ultralytics' run files (default <out>.runs/ beside --out)",
                   "members": "their boxes fused (each band scored by the mean of the networks' scores)"}
    demo_training = {"epochs": 30, "batch": 16}  # from scratch it finds nothing after 8 epochs, F1 ~0.95 after 30

    def __init__(self, checkpoint: dict, device: str = "cpu"):
        from meltloc.errors import CheckpointError
        from meltloc.heads.yolo.config import DEFAULT_THRESHOLD, YoloConfig
        from meltloc.heads.yolo.ensemble import same_canvas
        from meltloc.heads.yolo.network import load_network

        super().__init__(checkpoint, device)
        self.cfg = YoloConfig.from_dict(checkpoint["config"])
        self.classes = self.cfg.classes
        self.model = load_network(checkpoint.get("model"), device)
        # An ensemble (README, "The twelfth round"): more networks cutting the same tiles, answers fused.
        self.members = []
        for i, member in enumerate(checkpoint.get("members") or [], start=2):
            if not isinstance(member, dict) or "model" not in member:
                raise CheckpointError(f"ensemble member {i} lacks its weights: a damaged checkpoint")
            config = member.get("config", checkpoint["config"])
            if not isinstance(config, dict):
                raise CheckpointError(f"ensemble member {i} has no readable config: a damaged checkpoint")
            if not same_canvas(YoloConfig.from_dict(config), self.cfg):
                raise CheckpointError(f"ensemble member {i} cuts other tiles than the first; combine members "
                                      "trained on one convert output")
            self.members.append(load_network(member["model"], device))
        self.score_threshold = float(checkpoint.get("score_threshold", DEFAULT_THRESHOLD))

    def predict(self, section):
        return section_strip(section, self.cfg.px_per_mm, self.cfg.width, self.cfg.inset)

    def decode(self, strip, score_threshold: float):
        from meltloc.heads.yolo.ensemble import detect_members

        return strip_detections(strip, detect_members([self.model, *self.members], strip.pixels, self.cfg,
                                                      score_threshold, self.device))

    @classmethod
    def upgrade(cls, checkpoint: dict) -> dict:
        """Old checkpoints pickled the ultralytics network: it becomes the model YAML and a state dict."""
        if isinstance(checkpoint.get("model"), (bytes, bytearray)):
            from meltloc.heads.yolo.network import network_payload, unpickle_ultralytics

            checkpoint = {**checkpoint, "model": network_payload(unpickle_ultralytics(bytes(checkpoint["model"])))}
        return checkpoint

    @classmethod
    def train(cls, data, out, *, head="yolo", seed=0, device="cpu", resume=None, epochs=None, batch=None,
              **options) -> dict:
        """Options are the fields of :class:`~meltloc.heads.yolo.config.YoloSettings` (``model``, ``imgsz``,
        ``runs``, ``patience``, ...).

        Raises:
            MeltlocError: an option the YOLO head does not have; see also :func:`~meltloc.heads.yolo.train.train`.
        """
        from meltloc.heads.yolo.config import YoloSettings
        from meltloc.heads.yolo.train import train

        members = int(options.pop("members", None) or 1)
        chosen = {"seed": seed, "device": device}
        if epochs is not None:
            chosen["epochs"] = int(epochs)
        if batch is not None:
            chosen["batch"] = int(batch)
        known = {f.name for f in fields(YoloSettings)}
        for name, value in options.items():
            if value is None:
                continue
            if name not in known:
                raise MeltlocError(f"the yolo head has no option '{name}' (it has: {', '.join(sorted(known))})")
            chosen[name] = str(value) if name in ("runs", "model") else value
        settings = YoloSettings(**chosen)  # one call, so that its checks see every option
        if members > 1:
            from meltloc.heads.training import train_ensemble
            from meltloc.heads.yolo.ensemble import train_members

            return train_ensemble(out, members, resume, lambda: train_members(data, out, settings, members),
                                  "fused")
        result = train(data, out, settings, resume=resume)
        val = result["val"]
        nan = float("nan")
        result["message"] = (f"wrote {out} ({result['epochs']} epochs; val F1 {val.get('f1', nan):.3f} at score >= "
                             f"{result['score_threshold']:.2f}, mean AP {val.get('map', nan):.3f}, boundary "
                             f"{val.get('boundary_mm', nan):.3f} mm; {result['seconds'] / 60:.1f} min, "
                             f"{result['parameters']:,} parameters; ultralytics run in {result['run']})")
        return result
