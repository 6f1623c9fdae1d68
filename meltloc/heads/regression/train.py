"""Training of the start/stop regression head on a convert output.

Seeded; a progress bar shows the loss and, each epoch, the validation
interval metrics (F1 at IoU 0.5 and mean AP 0.3-0.7 of melt layers, on the
val split: sections never seen in training). The checkpoint with the best
validation mean AP is kept in ``out``; the last epoch's state (to resume
from) in ``out`` with suffix ``.last.pt``.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from meltloc import MELT_LAYER, MELT_LENS
from meltloc.checkpoint import library_versions, load_checkpoint, save_checkpoint
from meltloc.errors import DatasetError
from meltloc.heads.regression.net import (RegressionConfig, RegressionNet, count_parameters, decode_strip,
                                          detect_strip, label_positions, losses, normalise_for, predict_strip_mean)
from meltloc.heads.training import (PREFERRED_THRESHOLD, Checkpoints, choose_threshold, detections_table, truth_table,
                                    write_run_record)
from meltloc.interrupt import stop_if_asked
from meltloc.progress import progress
from meltloc.strip_dataset import StripSample, apply_working_scale, load_strips, random_crop, read_strip_table

HEAD = "regression"


@dataclass
class TrainSettings:
    """Training settings of the regression head (stored in the checkpoint)."""

    epochs: int = 50
    steps_per_epoch: int = 50
    batch: int = 8
    crop_rows: int = 2048
    lr: float = 2e-3
    weight_decay: float = 1e-4
    seed: int = 0
    device: str = "cpu"
    threads: int = 0
    insert_layers: float = 0.8
    insert_lens_share: float = 0.0
    insert_breaks: float = 0.0
    focal_alpha: float = 0.25
    teacher: str = ""
    teacher_weight: float = 0.5


def _batch(samples: list[StripSample], rng: np.random.Generator, model: RegressionNet, s: TrainSettings):
    crops = [random_crop(samples[rng.integers(len(samples))], rng, s.crop_rows, rows_per_mm=model.cfg.px_per_mm,
                         layer_class=model.cfg.classes.index(MELT_LAYER), insert=s.insert_layers,
                         lens_class=model.cfg.classes.index(MELT_LENS) if MELT_LENS in model.cfg.classes else None,
                         lens_share=s.insert_lens_share, breaks=s.insert_breaks)
             for _ in range(s.batch)]
    x = torch.stack([normalise_for(model.cfg, c.pixels) for c in crops])[:, None]
    n = s.crop_rows // model.cfg.stride
    centers = model.centers(n)
    targets = [label_positions(centers, torch.from_numpy(c.intervals), torch.from_numpy(c.classes),
                               torch.from_numpy(c.ignore), model.cfg.stride) for c in crops]
    return x, targets


def predict_samples(model: RegressionNet, samples: list[StripSample], score_threshold: float | None = None
                    ) -> pd.DataFrame:
    """Detections on whole strips, as a detections table (depths from each strip's section scale)."""
    return detections_table(samples, lambda smp: detect_strip(model, smp.pixels, score_threshold))


def validate(model: RegressionNet, samples: list[StripSample], truth: pd.DataFrame) -> dict:
    """Melt-layer metrics on the given strips: mean AP over all detections, F1 and boundary error at score 0.5."""
    from meltloc.metrics import evaluate_intervals

    pred = predict_samples(model, samples)
    ranked = evaluate_intervals(pred, truth).overall                       # AP: every detection, by score
    operating = evaluate_intervals(pred[pred["score"] >= PREFERRED_THRESHOLD], truth).overall
    return {"f1": operating["f1"], "map": ranked["map"], "boundary_mm": operating["boundary_mm"]}


def train(data_dir: str | Path, out: str | Path, settings: TrainSettings | None = None,
          config: RegressionConfig | None = None, resume: str | Path | None = None, show_progress: bool = True,
          label: str = "train regression") -> dict:
    """Train the regression head and write the best checkpoint to ``out``.

    Args:
        data_dir: a ``meltloc convert`` output.
        out: checkpoint file to write.
        settings: training settings (defaults reach the README's figures).
        config: architecture; its working scale is taken from the strips.
        resume: a checkpoint (``.last.pt``) to continue from.
        label: the progress bar's title.

    Returns:
        Summary: best epoch, validation figures, seconds, parameters.

    Raises:
        DatasetError: no training strips or no positive interval.
    """
    s = settings or TrainSettings()
    data_dir, out = Path(data_dir), Path(out)
    if s.threads:
        torch.set_num_threads(s.threads)
    table = read_strip_table(data_dir)
    cfg = config or RegressionConfig()
    apply_working_scale(table, cfg)
    train_set = load_strips(data_dir, cfg.classes, ("train",))
    val_set = load_strips(data_dir, cfg.classes, ("val",))
    if not train_set:
        raise DatasetError("no strip in the train split", data_dir)
    if sum(len(t.intervals) for t in train_set) == 0:
        raise DatasetError("the train split holds no melt layer or lens", data_dir)
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    model = RegressionNet(cfg).to(s.device)
    opt = torch.optim.AdamW(model.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    total_steps = s.epochs * s.steps_per_epoch
    if total_steps >= 20:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=total_steps, pct_start=0.1)
    else:  # too few steps for a warm-up and a decay
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    start_epoch, history, seconds = 0, [], 0.0
    saved = Checkpoints(out, HEAD)
    if resume is not None:
        ck = saved.resume(resume, needs=("optimizer", "scheduler"))
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        # The schedule follows the (possibly longer) run asked for now.
        if isinstance(sched, torch.optim.lr_scheduler.OneCycleLR) and "total_steps" in ck["scheduler"]:
            sched.load_state_dict({**ck["scheduler"], "total_steps": total_steps})
        start_epoch, history = ck["epoch"], ck["train"].get("history", [])
        seconds = ck["train"].get("seconds", 0.0)
        rng = np.random.default_rng([s.seed, start_epoch])
    teachers = _teachers(s, cfg, out)
    truth = truth_table(val_set, data_dir)
    epochs = progress(range(start_epoch, s.epochs), label, total=s.epochs - start_epoch,
                      enabled=show_progress, unit="epoch")
    for epoch in epochs:
        t0 = time.time()
        model.train()
        running = []
        for _ in range(s.steps_per_epoch):
            stop_if_asked()
            x, targets = _batch(train_set, rng, model, s)
            x = x.to(s.device)
            soft = None
            if teachers:
                with torch.no_grad():
                    soft = torch.stack([torch.sigmoid(t(x)[0]) for t in teachers]).mean(dim=0)
            logits, distances = model(x)
            loss = losses(model, logits, distances, targets, focal_alpha=s.focal_alpha, soft=soft,
                          soft_weight=s.teacher_weight)
            opt.zero_grad(set_to_none=True)
            loss["total"].backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            opt.step()
            sched.step()
            running.append({k: float(v.detach()) for k, v in loss.items()})
        mean_loss = {k: float(np.mean([r[k] for r in running])) for k in running[0]}
        val = validate(model, val_set, truth) if val_set else {}
        seconds += time.time() - t0
        record = {"epoch": epoch + 1, **{f"loss_{k}": round(v, 4) for k, v in mean_loss.items()},
                  **{f"val_{k}": v for k, v in val.items()}, "seconds": round(seconds, 1)}
        history.append(record)
        epochs.set_postfix(loss=f"{mean_loss['total']:.3f}", f1=f"{val.get('f1', float('nan')):.3f}",
                           mAP=f"{val.get('map', float('nan')):.3f}")
        # Selection: mean AP saturates on a few validation sections, so boundary error (mm) breaks ties.
        score = val.get("map", float("nan")) - val.get("boundary_mm", float("nan")) if val else float("nan")
        if not np.isfinite(score):
            score = -mean_loss["total"]
        payload = {
            "head": HEAD, "config": cfg.to_dict(), "model": model.state_dict(),
            "train": {**asdict(s), "data": str(data_dir), "history": history, "seconds": seconds,
                      "parameters": count_parameters(model), "n_train_sections": len(train_set),
                      "n_val_sections": len(val_set)},
            "epoch": epoch + 1,
        }
        saved.save_epoch(payload, score, val, {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()})
    # The operating threshold: the F1-best on the validation sections, with the best weights.
    final = load_checkpoint(out, expect_head=HEAD)
    model.load_state_dict(final["model"])
    threshold, f1 = (choose_operating_threshold(model, val_set, truth) if val_set
                     else (PREFERRED_THRESHOLD, float("nan")))
    final["score_threshold"] = threshold
    final["train"]["threshold_val_f1"] = f1
    final["train"]["seconds"] = seconds
    final["train"]["history"] = history
    final["train"]["libraries"] = library_versions()
    save_checkpoint(out, final)
    write_run_record(out, {**asdict(s), "head": HEAD, "data": str(data_dir), "resume": str(resume or ""),
                           "score_threshold": threshold}, history, title=f"regression: {out.name}")
    return {"best": saved.best, "seconds": seconds, "parameters": count_parameters(model), "history": history,
            "out": str(out), "last": str(saved.last), "score_threshold": threshold}


def _teachers(s: TrainSettings, cfg: RegressionConfig, out: Path) -> list[RegressionNet]:
    """The networks of ``s.teacher`` (a regression checkpoint, an ensemble's every network), for distillation."""
    if not s.teacher:
        return []
    if Path(s.teacher).resolve() in (out.resolve(), out.with_name(out.stem + ".last.pt").resolve()):
        raise DatasetError("the teacher is the checkpoint this training writes; write to another file", s.teacher)
    from meltloc.heads.regression import RegressionHead, canvas_text, same_canvas

    head = RegressionHead(load_checkpoint(s.teacher, expect_head=HEAD), s.device)
    if not same_canvas(head.cfg, cfg) or head.cfg.normalisation != cfg.normalisation:
        raise DatasetError(f"the teacher works on another strip ({canvas_text(head.cfg)}, {head.cfg.normalisation} "
                           f"normalisation) than these strips ({canvas_text(cfg)}, {cfg.normalisation})", s.teacher)
    return [head.model, *head.members]


def choose_operating_threshold(model: RegressionNet | list[RegressionNet], samples: list[StripSample],
                               truth: pd.DataFrame) -> tuple[float, float]:
    """The operating threshold by the one rule of :func:`meltloc.heads.training.choose_threshold`, and its F1.

    ``model`` is one network or the networks of an ensemble (their answers averaged). The networks run once per
    strip; each threshold then decodes among the candidates above it.
    """
    models = list(model) if isinstance(model, (list, tuple)) else [model]
    predictions = [(smp, predict_strip_mean(models, smp.pixels)) for smp in samples]
    cfg = models[0].cfg

    def at(thr: float) -> pd.DataFrame:
        found = {id(smp): decode_strip(p, b, cfg.classes, thr, cfg.nms_iou) for smp, (p, b) in predictions}
        return detections_table(samples, lambda smp: found[id(smp)])

    threshold, figures = choose_threshold(at, truth)
    return threshold, float(figures["f1"])
