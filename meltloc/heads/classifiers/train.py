"""Training a slice classifier on a convert output: class-balanced batches of windows, the optimisation
loop with a checkpoint per epoch, and the operating threshold chosen on the validation strips.

**Class imbalance.** About 1-2 % of the windows of a core are positive (the
seed: 428 of 19,819; the synthetic training core here: 1.0 %). Training
draws *class-balanced batches*: each window is positive with probability
``pos_fraction`` (default 0.5), positives uniformly among all positive
window starts (any row, not only the stride grid), negatives uniformly among
all negative ones. The probabilities are thus those of a balanced prior; the
operating threshold is chosen on the validation sections (below), which puts
the prior back.

**Training** (:func:`train`): seeded; the seed's values where it gave them
(:func:`~meltloc.heads.classifiers.config.default_settings`): simple-cnn Adam 1e-3 (Keras' default), dropout
0.25 after each conv block and 0.5 before the output; enhanced-cnn SGD with
Nesterov momentum 0.9, lr 0.0049, dropout 0.5, He initialisation and its
input centred (median 0): with PyTorch's default initialisation its plain
stack of 9 ReLU convolutions stays at loss 0.69 under that SGD for hundreds
of steps; resnet34 Adam 1e-3; vgg16 Adam 1e-4. vgg16 with a local
torchvision VGG-16 file (``--model FILE``) loads its features and freezes
them (the seed's transfer model); without one (the default: nothing is ever
downloaded) the whole network trains from scratch, and the checkpoint
(``train.source``) and the message say so. Augmentation as the seed's (h and
v flips, brightness). Defaults are short (a few hundred batches of
32, ~10-20 min on 2 CPU cores): these are baselines.

**Operating threshold.** After training, the best weights run once over the
validation strips (4 flips) and the window threshold with the best melt-layer
F1 at IoU 0.5 is kept (``score_threshold`` in the checkpoint). A
``score_threshold`` passed to :meth:`~meltloc.heads.classifiers.ClassifierHead.detect` is a floor on
the *interval* scores; the windows are always decided at the operating
threshold (a lower window threshold would grow and merge runs, not add
candidates).
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from meltloc import MELT_LAYER
from meltloc.checkpoint import library_versions, load_checkpoint, save_checkpoint
from meltloc.errors import CheckpointError, DatasetError, MeltlocError
from meltloc.heads.classifiers.config import ClassifierConfig, ClassifierSettings, default_config, default_settings
from meltloc.heads.classifiers.nets import build_model, count_parameters
from meltloc.heads.classifiers.slices import StripWindows, balanced_slices, score_slices, strip_windows
from meltloc.heads.classifiers.windows import NEGATIVE, POSITIVE, cut_windows, decode_windows, predict_strip
from meltloc.heads.training import Checkpoints, choose_threshold, detections_table, truth_table, write_run_record
from meltloc.interrupt import stop_if_asked
from meltloc.progress import progress
from meltloc.strip_dataset import StripSample, load_strips, read_strip_table


def augment_batch(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """The seed's augmentation (flips and brightness) on (B, 1, H, W) windows, per window."""
    b = x.shape[0]
    h = torch.from_numpy(rng.random(b) < 0.5)
    v = torch.from_numpy(rng.random(b) < 0.5)
    x = torch.where(h[:, None, None, None], torch.flip(x, (3,)), x)
    x = torch.where(v[:, None, None, None], torch.flip(x, (2,)), x)
    gain = torch.from_numpy(rng.uniform(0.7, 1.3, b).astype(np.float32))[:, None, None, None]
    return (x * gain).clamp(0, 4)


class WindowSampler:
    """Class-balanced batches of windows from training strips.

    Positives are drawn uniformly among all positive window starts (every row),
    negatives among all negative ones; each window is positive with
    probability ``pos_fraction``.
    """

    def __init__(self, strips: list[StripWindows], cfg: ClassifierConfig, pos_fraction: float):
        self.strips, self.cfg, self.pos_fraction = strips, cfg, pos_fraction
        self.pos = self._index(POSITIVE)
        self.neg = self._index(NEGATIVE)

    def _index(self, label: int) -> np.ndarray:
        parts = [np.stack([np.full(int((sw.labels == label).sum()), i), np.flatnonzero(sw.labels == label)], axis=1)
                 for i, sw in enumerate(self.strips)]
        return np.concatenate(parts) if parts else np.zeros((0, 2), dtype=np.int64)

    @property
    def positive_share(self) -> float:
        """Share of positive windows among the labelled ones (before balancing)."""
        return len(self.pos) / max(1, len(self.pos) + len(self.neg))

    def batch(self, rng: np.random.Generator, size: int, augment: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(size, 1, input_rows, input_cols) windows and (size,) labels."""
        is_pos = rng.random(size) < self.pos_fraction
        picks = np.where(is_pos[:, None], self.pos[rng.integers(len(self.pos), size=size)],
                         self.neg[rng.integers(len(self.neg), size=size)])
        x = torch.cat([cut_windows(self.strips[i].strip, [s], self.cfg) for i, s in picks])
        if augment:
            x = augment_batch(x, rng)
        return x, torch.from_numpy(is_pos.astype(np.float32))


def _optimizer(model: nn.Module, s: ClassifierSettings) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if s.optimizer == "sgd":
        return torch.optim.SGD(params, lr=s.lr, momentum=s.momentum, nesterov=True, weight_decay=s.weight_decay)
    if s.optimizer == "adam":
        return torch.optim.Adam(params, lr=s.lr, weight_decay=s.weight_decay)
    raise MeltlocError(f"unknown optimizer '{s.optimizer}' (adam or sgd)")


def train_step(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               device: str = "cpu") -> float:
    """One optimisation step (float32) on (B, 1, H, W) windows and (B,) 0/1 labels; returns the binary cross-entropy."""
    model.train()
    x = x.to(device).contiguous(memory_format=torch.channels_last)
    logits = model(x).flatten()
    loss = F.binary_cross_entropy_with_logits(logits, y.to(device))
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return float(loss.detach())


def val_slices(model: nn.Module, strips: list[StripWindows], slices, cfg: ClassifierConfig, device: str) -> dict:
    """Loss and accuracy on balanced validation slices."""
    if not slices:
        return {}
    probs, labels = score_slices(model, strips, slices, cfg, device)
    p = np.clip(probs.astype(np.float64), 1e-7, 1 - 1e-7)
    loss = float(-(labels * np.log(p) + (1 - labels) * np.log(1 - p)).mean())
    return {"slice_accuracy": float(((probs >= 0.5) == (labels == 1)).mean()), "loss": loss}


def choose_window_threshold(probs: dict[str, tuple[np.ndarray, np.ndarray]], samples: list[StripSample],
                            truth: pd.DataFrame, cfg: ClassifierConfig) -> tuple[float, dict]:
    """The window threshold by the one rule of :func:`meltloc.heads.training.choose_threshold` (windows
    predicted once; each threshold decodes them), and the figures there."""

    def at(thr: float) -> pd.DataFrame:
        return detections_table(samples, lambda smp: [(MELT_LAYER, score, a, b) for score, a, b in
                                                      decode_windows(*probs[smp.image], cfg, thr, smp.pixels.shape[0])])

    threshold, fig = choose_threshold(at, truth)
    return threshold, {"f1": float(fig["f1"]), "map": float(fig.get("map", float("nan"))),
                       "boundary_mm": float(fig.get("boundary_mm", float("nan")))}


def train(data_dir: str | Path, out: str | Path, head: str, settings: ClassifierSettings | None = None,
          config: ClassifierConfig | None = None, resume: str | Path | None = None, show_progress: bool = True) -> dict:
    """Train a slice classifier on a convert output and write its best checkpoint to ``out``.

    Each epoch: ``steps_per_epoch`` class-balanced batches, then loss and
    slice accuracy on balanced val slices; the epoch with the best val slice
    accuracy (then the lowest val loss) is kept in ``out``, the last epoch (to
    resume from) in ``out`` with suffix ``.last.pt``. At the end the window
    threshold is chosen on the val strips (:func:`choose_window_threshold`).

    Args:
        data_dir: a ``meltloc convert`` output (strips.csv, strips/, intervals.csv).
        out: checkpoint file to write.
        head: simple-cnn, enhanced-cnn, resnet34 or vgg16.
        settings: training settings (default :func:`default_settings`).
        config: architecture and geometry (default :func:`default_config`); the
            working scale is taken from the strips.
        resume: a ``.last.pt`` checkpoint to continue from.

    Returns:
        Summary: best epoch and val figures, threshold, seconds, parameters.

    Raises:
        DatasetError: no training strips or no positive window.
        CheckpointError: a resume file of another head, or bad VGG-16 weights.
    """
    s = settings or default_settings(head)
    cfg = config or default_config(head)
    cfg.head = head
    data_dir, out = Path(data_dir), Path(out)
    if s.threads:
        torch.set_num_threads(s.threads)
    if not 0 < s.pos_fraction < 1:
        raise MeltlocError(f"pos_fraction must be between 0 and 1, not {s.pos_fraction}")
    table = read_strip_table(data_dir)
    cfg.px_per_mm = float(table["px_per_mm"].iloc[0])
    cfg.width = int(table["width"].iloc[0])
    if "inset" in table.columns:
        cfg.inset = float(table["inset"].iloc[0])
    if s.weights is not None and head != "vgg16":
        raise MeltlocError(f"starting weights (--model) are for vgg16 only; {head} trains from scratch")
    train_set = load_strips(data_dir, cfg.classes, ("train",))
    val_set = load_strips(data_dir, cfg.classes, ("val",))
    if not train_set:
        raise DatasetError("no strip in the train split", data_dir)
    train_windows = strip_windows(train_set, cfg)
    sampler = WindowSampler(train_windows, cfg, s.pos_fraction)
    if len(sampler.pos) == 0:
        raise DatasetError("the train split holds no melt layer: no positive window to learn from", data_dir)
    if len(sampler.neg) == 0:
        raise DatasetError("the train split holds no negative window", data_dir)
    val_windows = strip_windows(val_set, cfg)
    vslices = balanced_slices(val_windows, cfg, seed=s.seed, max_positives=s.max_val_slices // 2)

    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    model = build_model(cfg)
    source = "from scratch"
    if head == "vgg16":
        if s.weights is not None:
            model.load_features(s.weights)
            source = f"features from {s.weights}"
        if s.freeze_features if s.freeze_features is not None else s.weights is not None:
            model.freeze_features()
            source += ", features frozen"
    model = model.to(s.device).to(memory_format=torch.channels_last)
    opt = _optimizer(model, s)
    start_epoch, history, seconds = 0, [], 0.0
    saved = Checkpoints(out, head)
    if resume is not None:
        ck = saved.resume(resume)
        try:
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CheckpointError("the resume file does not fit this architecture or these settings", resume) from exc
        start_epoch, history = ck["epoch"], ck["train"].get("history", [])
        seconds = ck["train"].get("seconds", 0.0)
        rng = np.random.default_rng([s.seed, start_epoch])
    train_info = {"data": str(data_dir), "source": source, "n_train_sections": len(train_set),
                  "n_val_sections": len(val_set), "positive_windows": int(len(sampler.pos)),
                  "negative_windows": int(len(sampler.neg)), "positive_share": sampler.positive_share,
                  "val_slices": len(vslices), "parameters": count_parameters(model),
                  "trainable_parameters": count_parameters(model, trainable_only=True)}
    epochs = progress(range(start_epoch, s.epochs), f"train {head}", total=max(0, s.epochs - start_epoch),
                      enabled=show_progress, unit="epoch")
    for epoch in epochs:
        t0 = time.time()
        losses = []
        for _ in range(s.steps_per_epoch):
            stop_if_asked()
            losses.append(train_step(model, opt, *sampler.batch(rng, s.batch, s.augment), s.device))
        val = val_slices(model, val_windows, vslices, cfg, s.device)
        seconds += time.time() - t0
        record = {"epoch": epoch + 1, "loss": round(float(np.mean(losses)), 4),
                  **{f"val_{k}": v for k, v in val.items()}, "seconds": round(seconds, 1)}
        history.append(record)
        epochs.set_postfix(loss=f"{record['loss']:.3f}", val_acc=f"{val.get('slice_accuracy', float('nan')):.3f}")
        score = (val.get("slice_accuracy", 0.0), -val.get("loss", record["loss"]))
        payload = {"head": head, "config": cfg.to_dict(), "model": model.state_dict(),
                   "train": {**asdict(s), **train_info, "history": history, "seconds": seconds},
                   "epoch": epoch + 1}
        saved.save_epoch(payload, score, val, {"optimizer": opt.state_dict()})
    if not out.exists():
        raise CheckpointError("nothing trained: the resume file has already reached the asked epochs", resume)

    # The operating threshold and the val figures, with the best weights.
    final = load_checkpoint(out, expect_head=head)
    model.load_state_dict(final["model"])
    model.eval()
    t0 = time.time()
    threshold, val_figures = cfg.score_threshold, {}
    if s.choose_threshold and val_set:
        probs = {smp.image: predict_strip(model, smp.pixels, cfg, s.device) for smp in
                 progress(val_set, "val strips", enabled=show_progress, unit="strip")}
        threshold, val_figures = choose_window_threshold(probs, val_set, truth_table(val_set, data_dir), cfg)
    val_acc = val_slices(model, val_windows, vslices, cfg, s.device).get("slice_accuracy", float("nan"))
    seconds += time.time() - t0
    final["score_threshold"] = threshold
    final["slice_accuracy_val"] = val_acc
    final["train"].update({"seconds": seconds, "history": history, "threshold_val": val_figures,
                           "libraries": library_versions()})
    save_checkpoint(out, final)
    write_run_record(out, {**asdict(s), **{k: v for k, v in cfg.to_dict().items() if k != "classes"}, "head": head,
                           "data": str(data_dir), "resume": str(resume or ""), "score_threshold": threshold},
                     history, title=f"{head}: {out.name}")
    return {"best": saved.best, "seconds": seconds, "parameters": count_parameters(model),
            "trainable_parameters": train_info["trainable_parameters"], "history": history, "out": str(out),
            "last": str(saved.last), "score_threshold": threshold, "slice_accuracy_val": val_acc,
            "val": val_figures, "source": source}


__all__ = ["augment_batch", "WindowSampler", "train_step", "val_slices", "choose_window_threshold", "train"]
