"""The YOLO network of a checkpoint: stored as plain data (its model YAML and state dict,
:func:`network_payload`) and rebuilt offline (:func:`build_network`), so loading it runs no code; the
ultralytics pickle of an old checkpoint or of a foreign ``.pt`` is read only when trusted
(:func:`unpickle_ultralytics`).
"""

from __future__ import annotations

import torch

from meltloc.errors import CheckpointError


def network_payload(model: torch.nn.Module) -> dict:
    """An ultralytics detection model as plain data: its model YAML (a dict) and its float state dict.

    This is what a meltloc YOLO checkpoint stores (``checkpoint["model"]``); :func:`build_network` rebuilds the
    network from it offline, and nothing in it is a pickled object.
    """
    from meltloc.checkpoint import plain

    model = model.float()
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    return {"yaml": plain(dict(model.yaml)), "state_dict": state}


_SMALLEST_COMPACT = 1024
"""Tensors with fewer values stay as they are: they cost nothing, and one of them is the fixed 0..15 ramp that
decodes YOLO's box edges (``dfl.conv.weight``, 16 values), which 8 bits would bend."""


def compact_payload(payload: dict) -> dict:
    """:func:`network_payload` with every weight tensor of two or more dimensions and at least
    :data:`_SMALLEST_COMPACT` values (the convolutions) stored as 8-bit integers and one float scale per output
    channel: about a quarter of the float32 size, so that an ensemble of several networks stays a small file.
    :func:`build_network` restores float weights (``integer * scale``); the rounding error of a weight is at most
    half its channel's largest weight / 127.
    """
    if payload.get("int8_scales"):
        return payload  # compact already
    state, scales = {}, {}
    for key, value in payload["state_dict"].items():
        if value.is_floating_point() and value.dim() >= 2 and value.numel() >= _SMALLEST_COMPACT:
            value = value.float()
            scale = value.abs().flatten(1).amax(dim=1).clamp(min=1e-12) / 127.0
            shape = (-1,) + (1,) * (value.dim() - 1)
            state[key] = torch.round(value / scale.view(shape)).to(torch.int8)
            scales[key] = scale
        else:
            state[key] = value
    return {**payload, "state_dict": state, "int8_scales": scales}


def _float_state(payload: dict) -> dict:
    """The float state dict of a payload, compact (:func:`compact_payload`) or not."""
    scales = payload.get("int8_scales") or {}
    state = {}
    for key, value in payload["state_dict"].items():
        if key in scales:
            value = value.float() * scales[key].float().view((-1,) + (1,) * (value.dim() - 1))
        state[key] = value.float() if value.is_floating_point() else value
    return state


def build_network(payload: dict, device: str = "cpu", fuse: bool = True) -> torch.nn.Module:
    """The ultralytics detection model rebuilt from :func:`network_payload`: float, fused, in evaluation mode.

    Raises:
        CheckpointError: the YAML or the weights do not make a network.
    """
    import copy

    from meltloc.heads.yolo.env import import_ultralytics

    import_ultralytics()
    from ultralytics.nn.tasks import DetectionModel

    try:
        spec = copy.deepcopy(dict(payload["yaml"]))
        model = DetectionModel(cfg=spec, ch=int(spec.get("channels", 3)), nc=spec.get("nc"), verbose=False)
        model.load_state_dict(_float_state(payload), strict=True)
    except Exception as exc:  # ultralytics and torch raise many kinds
        raise CheckpointError(f"the YOLO network in this checkpoint cannot be rebuilt ({type(exc).__name__}: "
                              f"{' '.join(str(exc).split())[:200]})") from exc
    model = model.float()
    model = model.fuse(verbose=False) if fuse and hasattr(model, "fuse") else model
    return model.to(device).eval()


def unpickle_ultralytics(blob: bytes) -> torch.nn.Module:
    """The model in the bytes of an ultralytics ``.pt`` (a pickle): only with ``--trust-checkpoint``.

    Raises:
        CheckpointError: not trusted (the pickle could run code), or not an ultralytics checkpoint.
    """
    from meltloc.checkpoint import safe_load
    from meltloc.heads.yolo.env import import_ultralytics

    import_ultralytics()
    import ultralytics.nn.tasks  # noqa: F401  (the pickled classes)

    ckpt = safe_load(bytes(blob), what="ultralytics checkpoint")
    try:
        return (ckpt.get("ema") or ckpt["model"]).float()
    except Exception as exc:
        raise CheckpointError(f"the YOLO weights cannot be read ({type(exc).__name__}: {exc})") from exc


def load_network(model_field, device: str = "cpu") -> torch.nn.Module:
    """The detection model of a YOLO checkpoint's ``model`` field: the plain payload (rebuilt offline, no code
    runs), or the ultralytics pickle of an old checkpoint (refused unless trusted).

    Raises:
        CheckpointError: neither, or an old pickle without ``--trust-checkpoint``.
    """
    if isinstance(model_field, dict) and "yaml" in model_field and "state_dict" in model_field:
        return build_network(model_field, device)
    if isinstance(model_field, (bytes, bytearray)):
        model = unpickle_ultralytics(bytes(model_field))
        model = model.fuse(verbose=False) if hasattr(model, "fuse") else model
        return model.to(device).eval()
    raise CheckpointError("this yolo checkpoint holds no YOLO network")
