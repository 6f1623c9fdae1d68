"""What every head's training shares: the one rule choosing the operating threshold, and the run record.

* :class:`Checkpoints`: the best epoch in ``out``, the last one (with the
  optimizer, to resume from) in ``<out>.last.pt``, and resuming from it.
* :func:`choose_threshold`: the operating score threshold by melt-layer F1
  at IoU 0.5 on the validation sections, over one grid (0.05-0.95, step
  0.05): of the thresholds within one layer's worth of F1 of the best, the
  one nearest 0.5. Every head's trainer calls
  it; what "detections at a threshold" means is the head's own business (a
  callable).
* :func:`write_run_record`: beside the checkpoint, in ``<out>.runs/``, the
  way ``yolo train`` keeps its run: ``args.json`` (the settings),
  ``results.csv`` (one row per epoch: losses and validation figures) and
  ``results.png`` (a plot of them).
* :func:`detections_table` and :func:`truth_table`: detections on convert
  strips as a table with depths, and the true intervals of the same strips
  (the convert output's ``intervals.csv``), for validation.
* Ensembles of any head (``--members``): :func:`read_members` (two or more
  single networks, never overwritten), :func:`ensemble_record` (what the
  checkpoint says of its members), :func:`train_members` (train them from
  successive seeds into ``<out>.runs/``, then the head's ``combine``) and
  :func:`train_ensemble` (the CLI's path, refusing ``--resume``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd

from meltloc.atomic import atomic_path, write_csv, write_text

class Checkpoints:
    """The best and the last epoch of a training run on disk, and resuming from the last.

    Args:
        out: the checkpoint the run writes (the best epoch by the head's own score).
        head: the head's registered name (a resume file of another head is refused).

    Attributes:
        last: ``out`` with suffix ``.last.pt``: every epoch, with the optimizer (and scheduler) state.
        best: the best epoch's record so far (``score``, ``epoch`` and the head's validation figures) or None.
    """

    def __init__(self, out: str | Path, head: str):
        self.out = Path(out)
        self.head = head
        self.last = self.out.with_suffix(".last.pt")
        self.best: dict | None = None

    def resume(self, path: str | Path, needs: tuple[str, ...] = ("optimizer",)) -> dict:
        """The last epoch's checkpoint to continue from (its ``epoch``, ``model``, ``optimizer``, ``train``).

        Raises:
            CheckpointError: not a checkpoint of this head, or one without the training state (a best-epoch
                file instead of the ``.last.pt``).
        """
        from meltloc.checkpoint import load_checkpoint
        from meltloc.errors import CheckpointError

        ck = load_checkpoint(path, expect_head=self.head)
        if any(k not in ck for k in needs):
            raise CheckpointError(f"holds no optimizer state; resume from {Path(path).with_suffix('.last.pt').name}",
                                  path)
        self.best = ck.get("best")
        return ck

    def save_epoch(self, payload: dict, score, figures: dict, training_state: dict) -> bool:
        """Write one finished epoch: always as the last (with ``training_state``: optimizer, scheduler), and as
        the best when ``score`` (a number or a tuple, higher is better) is at least the best so far, or when
        ``out`` does not exist yet. Returns whether it was the best."""
        from meltloc.checkpoint import save_checkpoint

        def key(value):
            return tuple(value) if isinstance(value, (list, tuple)) else (value,)

        improved = self.best is None or not self.out.exists() or key(score) >= key(self.best["score"])
        if improved:
            self.best = {"score": list(score) if isinstance(score, tuple) else score, "epoch": payload["epoch"],
                         **figures}
        payload = {**payload, "best": self.best}
        if improved:
            save_checkpoint(self.out, payload)
        save_checkpoint(self.last, {**payload, **training_state})
        return improved


THRESHOLD_GRID = tuple(float(t) for t in np.round(np.arange(0.05, 0.951, 0.05), 2))
"""The operating thresholds tried on the validation sections, by every head."""
PREFERRED_THRESHOLD = 0.5
"""Among thresholds whose validation F1 is as good as the best (within one layer's worth), the one nearest this."""

DETECTION_TABLE_COLUMNS = ["image", "type", "score", "row_from", "row_to", "depth_from_m", "depth_to_m"]


def choose_threshold(detections_at: Callable[[float], pd.DataFrame], truth: pd.DataFrame,
                     grid: Iterable[float] = THRESHOLD_GRID) -> tuple[float, dict]:
    """The operating threshold: by melt-layer F1 at IoU 0.5 on the validation truth, and the figures there.

    A few validation sections hold tens of layers, so F1 moves by about
    1 / (number of layers) when one layer is found or lost: differences
    smaller than that are noise. Every threshold of the grid whose F1 is
    within that of the best counts as equally good, and of those the one
    nearest :data:`PREFERRED_THRESHOLD` is taken. (The plain F1-best chose
    0.35-0.75 on flat curves; over eight training runs the thresholds this
    rule takes scored higher on our three test sets on average: README,
    "Sixth round: the operating threshold".)

    Args:
        detections_at: threshold -> detections table (:data:`DETECTION_TABLE_COLUMNS`) at that threshold.
        truth: the validation sections' true intervals.

    Returns:
        (threshold, overall figures of :func:`meltloc.metrics.evaluate_intervals` at it; ``f1`` -1 when no
        threshold gave a finite F1).
    """
    from meltloc import MELT_LAYER
    from meltloc.metrics import evaluate_intervals

    grid = [float(t) for t in grid]
    figures = {}
    for thr in grid:
        overall = evaluate_intervals(detections_at(thr), truth).overall
        figures[thr] = {**overall, "f1": float(overall["f1"]) if np.isfinite(overall["f1"]) else -1.0}
    best_f1 = max(f["f1"] for f in figures.values())
    if best_f1 < 0:
        return min(grid, key=lambda t: abs(t - PREFERRED_THRESHOLD)), {"f1": -1.0}
    n_layers = int((truth["type"] == MELT_LAYER).sum()) if "type" in truth else 0
    noise = 1.0 / n_layers if n_layers else 0.0
    good = [t for t in grid if figures[t]["f1"] >= best_f1 - noise - 1e-9]
    chosen = min(good, key=lambda t: (abs(t - PREFERRED_THRESHOLD), -figures[t]["f1"]))
    return chosen, figures[chosen]


def detections_table(samples, found_per_sample: Callable) -> pd.DataFrame:
    """Detections on convert strips as a table with depths.

    Args:
        samples: :class:`meltloc.strip_dataset.StripSample` of a split.
        found_per_sample: sample -> ``(type, score, strip row a, strip row b)`` tuples.
    """
    rows = []
    for smp in samples:
        for name, score, a, b in found_per_sample(smp):
            r0, r1 = smp.to_image_rows([a, b])
            d0, d1 = smp.scale.row_to_depth([r0, r1])
            rows.append({"image": smp.image, "type": name, "score": float(score), "row_from": r0, "row_to": r1,
                         "depth_from_m": d0, "depth_to_m": d1})
    return pd.DataFrame(rows, columns=DETECTION_TABLE_COLUMNS)


def truth_table(samples, data_dir: str | Path) -> pd.DataFrame:
    """The true intervals of the given strips (a split's), from the convert output's ``intervals.csv``."""
    intervals = pd.read_csv(Path(data_dir) / "intervals.csv")
    return intervals[intervals["image"].isin([s.image for s in samples])].reset_index(drop=True)


def run_folder(out: str | Path) -> Path:
    """Where a checkpoint's run record goes: ``<out>.runs/`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".runs")


def train_ensemble(out: str | Path, members: int, resume, train: Callable[[], dict], how: str) -> dict:
    """``train()`` (a head's ``train_members``) unless ``resume`` is asked for, with the summary line the CLI
    prints; ``how`` says how the networks answer as one ("averaged", "fused").

    Raises:
        MeltlocError: ``resume`` is given (it continues one network, never an ensemble).
    """
    from meltloc.errors import MeltlocError

    if resume is not None:
        raise MeltlocError("--resume continues one network, not an ensemble: train the ensemble again "
                           f"(the members of an earlier run are in {run_folder(out)})")
    result = train()
    result["message"] = (f"wrote {out} ({members} networks {how}, threshold {result['score_threshold']:.2f} "
                         f"chosen on the val split: F1 {result['threshold_val_f1']:.3f}; "
                         f"{result['seconds'] / 60:.1f} min; members and their run records in {run_folder(out)})")
    return result


def read_members(members, out: str | Path, head: str) -> tuple[list[Path], list[dict]]:
    """The paths and checkpoints of an ensemble's members.

    Raises:
        MeltlocError: fewer than two, or ``out`` is one of them (an ensemble never overwrites its member).
        CheckpointError: a member is not a ``head`` checkpoint, or is an ensemble already.
    """
    from meltloc.checkpoint import load_checkpoint
    from meltloc.errors import CheckpointError, MeltlocError

    paths, out = [Path(m) for m in members], Path(out)
    if len(paths) < 2:
        raise MeltlocError("an ensemble needs two or more checkpoints")
    if any(p.resolve() == out.resolve() for p in paths if p.exists()):
        raise MeltlocError(f"the ensemble would overwrite its member {out}; write it to another file")
    checkpoints = [load_checkpoint(p, expect_head=head) for p in paths]
    for p, ck in zip(paths, checkpoints):
        if ck.get("members"):
            raise CheckpointError("is an ensemble already; combine single networks", p)
    return paths, checkpoints


def ensemble_record(paths: list[Path], checkpoints: list[dict]) -> dict:
    """What an ensemble checkpoint's ``train`` record says of its members: file, seed, seconds and threshold of
    each, and the seconds and parameters of all."""
    def train(ck):
        return ck.get("train", {})

    return {"ensemble": [{"file": p.name, "seed": train(ck).get("seed"), "seconds": train(ck).get("seconds"),
                          "score_threshold": ck.get("score_threshold")} for p, ck in zip(paths, checkpoints)],
            "seconds": sum(float(train(ck).get("seconds") or 0.0) for ck in checkpoints),
            "parameters": sum(int(train(ck).get("parameters") or 0) for ck in checkpoints)}


def train_members(data_dir: str | Path, out: str | Path, members: int, train_one: Callable[[Path, int], dict],
                  combine: Callable[[list[Path], str | Path, str | Path], dict]) -> dict:
    """Train ``members`` networks (``train_one(path, i)`` writes the ``i``-th, from 0, to ``path``: its own seed)
    into ``<out>.runs/member<i>.pt`` and ``combine`` them into the ensemble ``out``.

    Returns:
        ``combine``'s summary, with ``seconds`` (all training) and ``parameters`` (all networks).

    Raises:
        DatasetError: ``data_dir`` has no validation sections (checked before any training: the ensemble's
            threshold is chosen there).
    """
    from meltloc.errors import DatasetError
    from meltloc.strip_dataset import read_strip_table

    table = read_strip_table(data_dir)
    if not (table["split"] == "val").any():  # before hours of training, not after
        raise DatasetError("no validation sections to choose the ensemble's threshold on: convert with --val",
                           data_dir)
    folder = run_folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    paths, seconds, parameters = [], 0.0, 0
    for i in range(members):
        path = folder / f"member{i + 1}.pt"
        result = train_one(path, i)
        paths.append(path)
        seconds += float(result["seconds"])
        parameters += int(result["parameters"])
    return {**combine(paths, data_dir, out), "seconds": seconds, "parameters": parameters}


def write_run_record(out: str | Path, args: dict, history: list[dict], title: str = "") -> Path:
    """Write ``args.json``, ``results.csv`` and ``results.png`` into :func:`run_folder` of ``out``.

    Args:
        out: the checkpoint the run wrote.
        args: the settings of the run (JSON-able values; others are written as text).
        history: one dict per epoch (``epoch``, losses ``loss_*``, validation figures ``val_*``, ...).
        title: the plot's title (e.g. the head).

    Returns:
        The run folder.
    """
    folder = run_folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / "args.json", json.dumps(args, indent=2, default=str, sort_keys=True) + "\n")
    table = pd.DataFrame(history)
    write_csv(table, folder / "results.csv")
    if len(table) and "epoch" in table.columns:
        _plot(table, folder / "results.png", title)
    return folder


def _plot(table: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = [c for c in table.columns if c.startswith("loss")]
    figures = [c for c in table.columns if c.startswith("val_") and pd.api.types.is_numeric_dtype(table[c])]
    panels = [p for p in (losses, figures) if p]
    fig, axes = plt.subplots(1, max(1, len(panels)), figsize=(5 * max(1, len(panels)), 3.5), squeeze=False)
    for ax, columns, label in zip(axes[0], panels, ("training loss", "validation")):
        for c in columns:
            ax.plot(table["epoch"], table[c], marker=".", label=c)
        ax.set_xlabel("epoch")
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
