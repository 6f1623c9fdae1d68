"""Ensembles of the regression head: several trained networks answering as one.

Networks trained alike but from other seeds err in different places: the
mean of their per-position probabilities and intervals is steadier than any
one of them (README, "Ninth round": higher mean AP on the hard test set than
each member). An ensemble is an ordinary regression checkpoint: the first
member's ``config`` and ``model``, the others under ``members`` (each its own
``config`` and ``model``; they must share the working scale and stride), and
one operating threshold, chosen for the averaged answer on the validation
sections by the same rule as a single network's. Detect costs one network
run per member (the strip is cut once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from meltloc.checkpoint import save_checkpoint
from meltloc.errors import CheckpointError, DatasetError
from meltloc.heads.training import ensemble_record, read_members, truth_table
from meltloc.strip_dataset import load_strips, read_strip_table

HEAD = "regression"


def combine(members: Sequence[str | Path], data_dir: str | Path, out: str | Path, device: str = "cpu") -> dict:
    """Write an ensemble checkpoint of trained regression checkpoints, its threshold chosen on ``data_dir``'s
    validation split.

    Args:
        members: two or more regression checkpoints (single networks) trained on ``data_dir``'s train split.
        data_dir: the ``meltloc convert`` output they were trained on.
        out: the ensemble checkpoint to write (never one of ``members``).
        device: where the networks run on the validation sections.

    Returns:
        ``{"out", "score_threshold", "threshold_val_f1", "members"}``.

    Raises:
        MeltlocError: fewer than two members, or ``out`` is one of them.
        CheckpointError: a member is not a single regression network, or works on another strip than the first.
        DatasetError: ``data_dir`` has no validation sections, or strips of another scale.
    """
    from meltloc.heads.regression import RegressionHead, canvas_text, same_canvas
    from meltloc.heads.regression.net import RegressionConfig
    from meltloc.heads.regression.train import choose_operating_threshold

    paths, checkpoints = read_members(members, out, HEAD)
    first = RegressionConfig.from_dict(checkpoints[0]["config"])
    table = read_strip_table(data_dir)
    if (float(table["px_per_mm"].iloc[0]), int(table["width"].iloc[0])) != (first.px_per_mm, first.width):
        raise DatasetError(f"its strips are not the members' ({canvas_text(first)}): pass the data they were "
                           "trained on", data_dir)
    for p, ck in zip(paths[1:], checkpoints[1:]):
        cfg = RegressionConfig.from_dict(ck["config"])
        if not same_canvas(cfg, first):
            raise CheckpointError(f"works on another strip ({canvas_text(cfg)}) than {paths[0].name} "
                                  f"({canvas_text(first)})", p)
    val_set = load_strips(data_dir, first.classes, ("val",))
    if not val_set:
        raise DatasetError("no validation sections to choose the ensemble's threshold on", data_dir)
    payload = {key: value for key, value in checkpoints[0].items() if key not in ("optimizer", "scheduler")}
    payload["members"] = [{"config": ck["config"], "model": ck["model"]} for ck in checkpoints[1:]]
    payload["train"] = {**checkpoints[0].get("train", {}), **ensemble_record(paths, checkpoints)}
    head = RegressionHead(payload, device)
    threshold, f1 = choose_operating_threshold([head.model, *head.members], val_set, truth_table(val_set, data_dir))
    payload["score_threshold"] = threshold
    payload["train"]["threshold_val_f1"] = f1
    save_checkpoint(out, payload)
    return {"out": str(out), "score_threshold": threshold, "threshold_val_f1": f1, "members": len(paths)}


def train_members(data_dir: str | Path, out: str | Path, settings, members: int, show_progress: bool = True) -> dict:
    """Train ``members`` networks with ``settings`` from seeds ``settings.seed``, ``+1``, ... (each kept by its own
    best validation epoch, in ``<out>.runs/member<i>.pt``) and :func:`combine` them into ``out``.

    Returns:
        :func:`combine`'s summary, with ``seconds`` (all training) and ``parameters`` (all networks).
    """
    from dataclasses import replace

    from meltloc.heads import training
    from meltloc.heads.regression.train import train

    def train_one(path: Path, i: int) -> dict:
        return train(data_dir, path, replace(settings, seed=settings.seed + i), show_progress=show_progress,
                     label=f"train regression {i + 1}/{members}")

    return training.train_members(data_dir, out, members, train_one,
                                  lambda paths, data, to: combine(paths, data, to, device=settings.device))
