"""Ensembles of the YOLO head: several trained detectors answering as one.

YOLO runs of the same settings from other seeds differ by up to 0.08 F1 on
the hard test set (README, "The eleventh round"): each ranks some faint
layers and some core breaks by chance. An ensemble runs every member on the
strip, each keeping its boxes down to :data:`FLOOR`, and fuses them in one
dimension (weighted box fusion, Solovyev et al. 2021): boxes of the members
that overlap by IoU > :data:`FUSE_IOU` form one band, one box per member
(its best); the band's boundaries are the score-weighted mean of its boxes, its
score the sum of their scores divided by the number of members (a band that
one member of two sees at 0.8 scores 0.4), its class that of the highest
summed score. Bands left overlapping are merged by the same 1-D NMS as the
tiles of one member.

An ensemble is an ordinary YOLO checkpoint: the first member's ``config`` and
``model``, the others under ``members`` (each its own ``model``; the same
tiling and input), and one operating threshold chosen for the fused answer on
the validation sections by the one rule of
:func:`meltloc.heads.training.choose_threshold`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from meltloc.checkpoint import save_checkpoint
from meltloc.errors import CheckpointError, DatasetError

HEAD = "yolo"
FLOOR = 0.01
"""Each member's lowest kept score: the fused score of a band is the same at every operating threshold."""
FUSE_IOU = 0.55
CANVAS = ("px_per_mm", "width", "inset", "tile_rows", "tile_overlap", "input_hw", "classes")
"""The config fields that fix what a member sees: an ensemble's members share them."""

Found = tuple[str, float, float, float]  # (class name, score, start row, end row)


def fuse(answers: Sequence[Sequence[Found]], merge_iou: float, fuse_iou: float = FUSE_IOU) -> list[Found]:
    """One answer from the members' answers (1-D weighted box fusion, then 1-D NMS).

    Args:
        answers: per member, its ``(class name, score, start row, end row)`` detections.
        merge_iou: IoU above which two fused bands are one (the lower-scored is dropped).
        fuse_iou: IoU above which a member's box joins a band.

    Returns:
        Fused detections by descending score.
    """
    import torch

    from meltloc.heads.ops1d import iou_1d, nms_1d

    n_members = len(answers)
    if n_members == 0:
        return []
    boxes = sorted(((score, a, b, name, m) for m, found in enumerate(answers) for name, score, a, b in found
                    if b > a), key=lambda t: -t[0])
    bands: list[dict] = []
    for score, a, b, name, m in boxes:
        best = None
        if bands:
            ious = iou_1d(torch.tensor([[a, b]], dtype=torch.float64),
                          torch.tensor([band["interval"] for band in bands], dtype=torch.float64))[0]
            k = int(torch.argmax(ious))
            if float(ious[k]) > fuse_iou:
                best = bands[k]
        if best is not None and m in best["members"]:
            continue  # a weaker box of a member on a band it already voted for
        if best is None:
            best = {"members": set(), "boxes": [], "interval": (a, b)}
            bands.append(best)
        best["members"].add(m)
        best["boxes"].append((score, a, b, name))
        weight = sum(s for s, *_ in best["boxes"])
        best["interval"] = (sum(s * x for s, x, _, _ in best["boxes"]) / weight,
                            sum(s * y for s, _, y, _ in best["boxes"]) / weight)
    fused = []
    for band in bands:
        by_class: dict[str, float] = {}
        for s, _, _, name in band["boxes"]:
            by_class[name] = by_class.get(name, 0.0) + s
        name = max(by_class, key=by_class.get)
        score = sum(s for s, *_ in band["boxes"]) / n_members
        fused.append((name, score, *band["interval"]))
    if not fused:
        return []
    keep = nms_1d(torch.tensor([f[2:] for f in fused], dtype=torch.float64),
                  torch.tensor([f[1] for f in fused], dtype=torch.float64), merge_iou)
    return [fused[i] for i in keep.tolist()]


def detect_members(models: Sequence, pixels, cfg, score_threshold: float, device: str = "cpu") -> list[Found]:
    """Every member on one strip, fused; the detections scoring ``score_threshold`` or more."""
    from meltloc.heads.yolo.infer import detect_strip

    if len(models) == 1:
        return detect_strip(models[0], pixels, cfg, score_threshold, device)
    floor = min(FLOOR, score_threshold)
    answers = [detect_strip(m, pixels, cfg, floor, device) for m in models]
    return [f for f in fuse(answers, cfg.merge_iou) if f[1] >= score_threshold]


def same_canvas(a, b) -> bool:
    """Whether two YOLO configs cut and feed the same tiles."""
    return all(tuple(getattr(a, k)) == tuple(getattr(b, k)) if k in ("input_hw", "classes")
               else getattr(a, k) == getattr(b, k) for k in CANVAS)


def combine(members: Sequence[str | Path], data_dir: str | Path, out: str | Path, compact: bool = False,
            device: str = "cpu") -> dict:
    """Write an ensemble checkpoint of trained YOLO checkpoints, its threshold chosen on ``data_dir``'s
    validation split.

    Args:
        members: two or more YOLO checkpoints (single networks) trained on ``data_dir``'s train split.
        data_dir: the ``meltloc convert`` output they were trained on.
        out: the ensemble checkpoint to write (never one of ``members``).
        compact: store every network's weights in 8 bits (:func:`~meltloc.heads.yolo.network.compact_payload`:
            a quarter of the size); the threshold is then chosen for the networks as stored.
        device: where the networks run on the validation sections.

    Returns:
        ``{"out", "score_threshold", "threshold_val_f1", "members", "val"}``.

    Raises:
        MeltlocError: fewer than two members, or ``out`` is one of them.
        CheckpointError: a member is an ensemble already, or cuts other tiles than the first.
        DatasetError: ``data_dir`` has no validation sections, or strips of another scale than the members'.
    """
    from meltloc.heads.training import (choose_threshold, detections_table, ensemble_record, read_members,
                                        truth_table)
    from meltloc.heads.yolo.config import YoloConfig
    from meltloc.heads.yolo.network import compact_payload, load_network
    from meltloc.strip_dataset import load_strips, read_strip_table

    paths, checkpoints = read_members(members, out, HEAD)
    configs = [YoloConfig.from_dict(ck["config"]) for ck in checkpoints]
    for p, cfg in zip(paths, configs):
        if not same_canvas(cfg, configs[0]):
            raise CheckpointError(f"cuts other tiles or feeds another input than {paths[0].name}", p)
    first = configs[0]
    table = read_strip_table(data_dir)
    if (float(table["px_per_mm"].iloc[0]), int(table["width"].iloc[0])) != (first.px_per_mm, first.width):
        raise DatasetError(f"its strips are not the members' ({first.px_per_mm:g} rows/mm, {first.width} "
                           "columns): pass the data they were trained on", data_dir)
    val_set = load_strips(data_dir, first.classes, ("val",))
    if not val_set:
        raise DatasetError("no validation sections to choose the ensemble's threshold on", data_dir)
    if compact:
        checkpoints = [{**ck, "model": compact_payload(ck["model"])} for ck in checkpoints]
    models = [load_network(ck["model"], device) for ck in checkpoints]
    pred = detections_table(val_set, lambda smp: detect_members(models, smp.pixels, first, FLOOR, device))
    threshold, val = choose_threshold(lambda thr: pred[pred["score"] >= thr], truth_table(val_set, data_dir))
    payload = dict(checkpoints[0])
    payload["members"] = [{"config": ck["config"], "model": ck["model"]} for ck in checkpoints[1:]]
    payload["score_threshold"] = threshold
    figures = {k: float(val[k]) for k in ("f1", "precision", "recall", "boundary_mm") if k in val}
    payload["train"] = {**checkpoints[0].get("train", {}), **ensemble_record(paths, checkpoints),
                        "threshold_val_f1": figures.get("f1", float("nan")), "val": figures}
    save_checkpoint(out, payload)
    return {"out": str(out), "score_threshold": threshold, "threshold_val_f1": figures.get("f1", float("nan")),
            "members": len(paths), "val": figures}


def train_members(data_dir: str | Path, out: str | Path, settings, members: int) -> dict:
    """Train ``members`` YOLO networks with ``settings`` from seeds ``settings.seed``, ``+1``, ... (each in
    ``<out>.runs/member<i>.pt``, ultralytics' files beside it) and :func:`combine` them into ``out``.

    Returns:
        :func:`combine`'s summary, with ``seconds`` (all training) and ``parameters`` (all networks).
    """
    from dataclasses import replace

    from meltloc.heads import training
    from meltloc.heads.yolo.train import train

    def train_one(path: Path, i: int) -> dict:
        runs = str(Path(settings.runs) / f"member{i + 1}") if settings.runs else None
        return train(data_dir, path, replace(settings, seed=settings.seed + i, runs=runs))

    return training.train_members(data_dir, out, members, train_one,
                                  lambda paths, data, to: combine(paths, data, to, device=settings.device))
