"""Training the YOLO head: ultralytics on the tiles of a convert output, offline, with run files meltloc can
resume safely, then the checkpoint with the operating score threshold chosen on the val sections.

**Training** (``meltloc train --head yolo``) runs ultralytics on the YOLO
dataset of a ``meltloc convert`` output (``DIR/yolo/``: each section's strip
cut along depth into ``tile_rows`` x ``width`` tiles, every interval a
full-width box), from a model YAML (random weights) or a local ``.pt``,
offline (:mod:`meltloc.heads.yolo.env`). The trainer's own run folder
(weights, ``results.csv``, ``args.yaml``) goes to ``--runs`` (default
``<out>.runs/``), never into the repository. The checkpoint written to
``out`` holds the trained network as plain data (its model YAML and state
dict, :func:`~meltloc.heads.yolo.network.network_payload`; rebuilt offline by
:func:`~meltloc.heads.yolo.network.build_network`, so loading it runs no code)
with meltloc's metadata (working scale, tiling, input size, classes, training
settings, seconds) and the operating score threshold: the one with the best
melt-layer F1 at IoU 0.5 on the val sections, scored with
:func:`meltloc.metrics.evaluate_intervals`. A foreign
ultralytics ``.pt`` (a pickle) as ``--model``, an old checkpoint holding one,
or a ``--resume`` run file this machine's meltloc did not write is refused
unless ``--trust-checkpoint`` is given.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from meltloc.checkpoint import library_versions, save_checkpoint
from meltloc.errors import CheckpointError, DatasetError, MeltlocError
from meltloc.heads.yolo.config import DEFAULT_THRESHOLD, HEAD, YoloSettings, train_overrides
from meltloc.heads.yolo.data import dataset_config, smallest_box_rows, split_has_tiles, write_run_data_yaml
from meltloc.heads.yolo.infer import predict_samples
from meltloc.heads.yolo.network import build_network, network_payload, unpickle_ultralytics
from meltloc.heads.training import THRESHOLD_GRID, choose_threshold
from meltloc.interrupt import stop_if_asked


def choose_score_threshold(pred: pd.DataFrame, truth: pd.DataFrame, lowest: float = 0.05) -> tuple[float, dict]:
    """The operating threshold by the one rule of :func:`meltloc.heads.training.choose_threshold` (no lower
    than ``lowest``, the score the validation detections were kept at), and the figures there."""
    grid = [t for t in THRESHOLD_GRID if t >= lowest - 1e-9]
    return choose_threshold(lambda thr: pred[pred["score"] >= thr], truth, grid)


def _resolve_model(model: str) -> str:
    """A model YAML name, or a local ``.pt`` (meltloc never downloads weights)."""
    if str(model).endswith(".pt"):
        path = Path(model).expanduser()
        if not path.is_file():
            raise CheckpointError("starting weights not found (meltloc never downloads weights; pass a local .pt "
                                  "or a model YAML such as yolov8n.yaml)", path)
        return str(path.resolve())
    if not str(model).endswith((".yaml", ".yml")):
        raise MeltlocError(f"model '{model}' is neither a model YAML (e.g. yolov8n.yaml, yolo11s.yaml) nor a local .pt")
    return str(model)


def start_model(model_src: str, run_dir: Path):
    """The ultralytics ``YOLO`` training starts from: a model YAML (random weights), a meltloc YOLO checkpoint
    (rebuilt from its YAML and state dict; no code runs), or, only with ``--trust-checkpoint``, a foreign
    ultralytics ``.pt`` (a pickle).

    Raises:
        CheckpointError: a ``.pt`` that is neither a meltloc YOLO checkpoint nor trusted.
    """
    import yaml

    from meltloc.checkpoint import is_safe_file, load_checkpoint, trust_enabled
    from ultralytics import YOLO

    if not str(model_src).endswith(".pt"):
        return YOLO(model_src)
    path = Path(model_src)
    if trust_enabled() and not is_safe_file(path):
        return YOLO(str(path))  # trusted by the user: ultralytics unpickles it
    ck = load_checkpoint(path, expect_head=HEAD)
    network = ck["model"]
    if isinstance(network, (bytes, bytearray)):  # an old meltloc checkpoint: trusted, or refused inside
        network = network_payload(unpickle_ultralytics(bytes(network)))
    if not isinstance(network, dict) or "yaml" not in network:
        raise CheckpointError("this yolo checkpoint holds no YOLO network", path)
    start = build_network(network, fuse=False).train()  # refuses a broken file in one line
    run_dir.mkdir(parents=True, exist_ok=True)
    # ultralytics guesses the model scale from the YAML's file name: keep the original one (e.g. yolov8n.yaml)
    spec = run_dir / Path(str(network["yaml"].get("yaml_file") or "start_model.yaml")).name
    spec.write_text(yaml.safe_dump({k: v for k, v in network["yaml"].items() if k != "yaml_file"}),
                    encoding="utf-8")
    yolo = YOLO(str(spec))
    start.args = yolo.model.args
    yolo.model = start  # the trainer builds from start.yaml (a dict, with its scale) and copies these weights
    yolo.ckpt = {"meltloc_start": str(path)}  # makes ultralytics start from these weights
    return yolo


def _own_files() -> Path:
    from meltloc.heads.yolo.env import private_config_dir

    return private_config_dir() / "own-yolo-run-files.txt"


def _register_run_weights(trainer) -> None:
    """Record the hashes of the run files this meltloc just wrote, so that resuming them needs no trust."""
    from meltloc.checkpoint import file_sha256

    wdir = Path(getattr(trainer, "wdir", "") or "")
    hashes = [file_sha256(p) for p in (wdir / "last.pt", wdir / "best.pt") if p.is_file()]
    if hashes:
        with open(_own_files(), "a", encoding="utf-8") as f:
            f.write("".join(h + "\n" for h in hashes))


def _stop_if_asked(trainer) -> None:
    """A Ctrl-C that something swallowed on its way stops training at the next batch all the same."""
    stop_if_asked()


def _register_callbacks(yolo) -> None:
    for event in ("on_model_save", "on_train_end"):
        yolo.add_callback(event, _register_run_weights)
    yolo.add_callback("on_train_batch_start", _stop_if_asked)


def check_resumable(last: Path) -> None:
    """ultralytics resumes from its own ``last.pt``, a pickle: allowed when this machine's meltloc wrote that
    very file (its hash is recorded) or with ``--trust-checkpoint``.

    Raises:
        CheckpointError: a foreign run file without trust.
    """
    from meltloc.checkpoint import file_sha256, trust_enabled

    if trust_enabled():
        return
    own = _own_files()
    known = set(own.read_text(encoding="utf-8").split()) if own.is_file() else set()
    if file_sha256(last) not in known:
        raise CheckpointError("not a run file this meltloc wrote: ultralytics' last.pt is a pickle, which could "
                              "run code when loaded: refused; pass --trust-checkpoint only for a file you trust",
                              last)


RUN_FILE = "meltloc_run.json"  # a run's own augmentation and list settings, for --resume


def _trainer(rows_per_mm: float = 10.0, share: float = 0.0, seed: int = 0, layers: float = 0.0, breaks: float = 0.0,
             px_per_mm: float = 10.0, min_box_rows: float = 6.0, start_epoch: int = 0, **_):
    """The ultralytics trainer class of a run: ultralytics' own, or one with our augmentation (``start_epoch``: the
    epoch a resumed run starts at, so that it does not draw its first epochs' augmentation again)."""
    if share <= 0 and layers <= 0 and breaks <= 0:
        return None
    from meltloc.heads.yolo.look import trainer_with_look

    return trainer_with_look(rows_per_mm, share, seed, layers, breaks, px_per_mm, min_box_rows, start_epoch)


def _read_run_file(run_dir: Path) -> dict:
    path = run_dir / RUN_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def default_runs(out: Path) -> Path:
    """Where ultralytics' run files go when the user does not say: ``<out>.runs/`` beside the checkpoint, unless
    that is inside meltloc's own source tree (e.g. ``--out weights/yolo.pt``): then the private cache folder."""
    out = Path(out).resolve()
    source = Path(__file__).resolve().parents[3]  # meltloc/heads/yolo/train.py
    if (source / "pyproject.toml").is_file() and out.is_relative_to(source):
        from meltloc.heads.yolo.env import private_config_dir

        return private_config_dir() / "runs" / (out.name + ".runs")
    return out.with_name(out.name + ".runs")


def _history(run_dir: Path) -> list[dict]:
    path = run_dir / "results.csv"
    if not path.is_file():
        return []
    table = pd.read_csv(path)
    table.columns = [c.strip() for c in table.columns]
    return [{k: (round(float(v), 5) if isinstance(v, (float, np.floating)) else v) for k, v in rec.items()}
            for rec in table.to_dict("records")]


def train(data_dir: str | Path, out: str | Path, settings: YoloSettings | None = None,
          resume: str | Path | None = None) -> dict:
    """Train the YOLO head on a convert output and write the checkpoint to ``out``.

    Args:
        data_dir: a ``meltloc convert`` output (with ``yolo/``).
        out: checkpoint file to write.
        settings: training settings.
        resume: an interrupted run to continue: its ``weights/last.pt`` or its run folder.

    Returns:
        Summary: out, run folder, seconds, epochs, val figures, score threshold, parameters.

    Raises:
        DatasetError: not a convert output, no training tile or box, imgsz too small for the thinnest box.
        CheckpointError: starting weights or resume file not found, or a pickle that is not trusted.
    """
    from meltloc.heads.yolo.env import import_ultralytics
    from meltloc.strip_dataset import load_strips

    s = settings or YoloSettings()
    data_dir, out = Path(data_dir), Path(out)
    cfg = dataset_config(data_dir, s.imgsz)
    cfg.model = str(s.model)
    if not split_has_tiles(data_dir, "train"):
        raise DatasetError("the YOLO dataset has no training tile (yolo/images/train is empty)", data_dir)
    if smallest_box_rows(data_dir / "yolo" / "labels" / "train", cfg.tile_rows) is None:
        raise DatasetError("the YOLO training tiles hold no melt layer or lens", data_dir)
    run_dir = (Path(s.runs).expanduser() if s.runs else default_runs(out)).resolve() / "train"
    if s.threads:
        torch.set_num_threads(s.threads)
    validate = split_has_tiles(data_dir, "val")
    model_src = _resolve_model(s.model) if resume is None else None

    import_ultralytics()
    from ultralytics import YOLO

    t0 = time.time()
    if resume is not None:
        last = Path(resume)
        last = last / "weights" / "last.pt" if last.is_dir() else last
        if not last.is_file():
            raise CheckpointError("nothing to resume: pass the run's weights/last.pt or its run folder", last)
        check_resumable(last)
        run_dir = last.resolve().parent.parent
        yolo = YOLO(str(last))
        if not (yolo.ckpt and yolo.ckpt.get("epoch", -1) >= 0 and yolo.ckpt.get("optimizer") is not None):
            raise CheckpointError("this run finished (ultralytics keeps no optimizer state at the end): nothing to "
                                  "resume; train again with more --epochs", last)
        _register_callbacks(yolo)
        run = _read_run_file(run_dir)  # the run's own augmentation, whatever the settings passed now say
        def share(key):  # as the run used it: a share outside 0-1 drew like 0 or 1
            return min(1.0, max(0.0, float(run.get(key, 0.0))))

        s = replace(s, look=share("share"), insert_layers=share("layers"), insert_breaks=share("breaks"),
                    positive_repeats=max(1, int(run.get("positive_repeats", s.positive_repeats))))
        # the tiles again through fresh links (a run from before them, or a moved convert output)
        write_run_data_yaml(data_dir, run_dir, s.positive_repeats)
        yolo.train(resume=True, trainer=_trainer(**run, start_epoch=int(yolo.ckpt["epoch"]) + 1))
    else:
        if run_dir.exists():
            shutil.rmtree(run_dir / "weights", ignore_errors=True)  # no stale best.pt from an earlier run
        data_yaml = write_run_data_yaml(data_dir, run_dir, s.positive_repeats)
        yolo = start_model(model_src, run_dir)
        _register_callbacks(yolo)
        run = {"rows_per_mm": cfg.px_per_mm * cfg.tile_scale, "share": s.look, "seed": s.seed,
               "layers": s.insert_layers, "breaks": s.insert_breaks, "px_per_mm": cfg.px_per_mm,
               "min_box_rows": cfg.min_box_rows, "positive_repeats": s.positive_repeats}
        (run_dir / RUN_FILE).write_text(json.dumps(run), encoding="utf-8")
        yolo.train(trainer=_trainer(**run), **train_overrides(s, cfg, data_yaml, run_dir, validate))
    train_seconds = time.time() - t0

    weights = run_dir / "weights" / ("best.pt" if (run_dir / "weights" / "best.pt").is_file() else "last.pt")
    if not weights.is_file() or not isinstance(getattr(yolo, "model", None), torch.nn.Module):
        raise CheckpointError("ultralytics wrote no weights", run_dir / "weights")
    network = network_payload(yolo.model)  # ultralytics reloaded its own best.pt into it after training
    model = build_network(network, s.device)
    n_params = sum(p.numel() for p in model.parameters())

    # The operating threshold: the F1-best on the val sections.
    val_set = load_strips(data_dir, cfg.classes, ("val",))
    threshold, val = DEFAULT_THRESHOLD, {}
    if val_set:
        intervals = pd.read_csv(data_dir / "intervals.csv")
        truth = intervals[intervals["image"].isin([v.image for v in val_set])].reset_index(drop=True)
        pred = predict_samples(model, val_set, cfg, s.val_min_score, s.device)
        threshold, val = choose_score_threshold(pred, truth, s.val_min_score)
    seconds = time.time() - t0
    history = _history(run_dir)
    settings_dict = asdict(s)
    settings_dict["runs"] = str(run_dir.parent)
    payload = {
        "head": HEAD, "config": cfg.to_dict(), "model": network, "score_threshold": threshold,
        "train": {**settings_dict, "data": str(data_dir.resolve()), "run": str(run_dir), "weights": weights.name,
                  "ultralytics_args": train_overrides(s, cfg, run_dir / "data.yaml", run_dir, validate),
                  "history": history, "seconds": seconds, "train_seconds": train_seconds, "parameters": n_params,
                  "n_train_tiles": len(list((data_dir / "yolo" / "images" / "train").glob("*"))),
                  "n_val_sections": len(val_set), "threshold_val_f1": val.get("f1", float("nan")),
                  "val": {k: val[k] for k in ("f1", "precision", "recall", "map", "boundary_mm") if k in val}},
        "epoch": len(history), "best": {"weights": weights.name},
    }
    payload["train"]["libraries"] = library_versions(ultralytics=True)
    save_checkpoint(out, payload)
    return {"out": str(out), "run": str(run_dir), "seconds": seconds, "epochs": len(history), "val": val,
            "score_threshold": threshold, "parameters": n_params, "history": history}
