"""One contract, one registry: callers get head names, help and options from it, and a new head needs only its
module and its registration."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from meltloc import heads
from meltloc.checkpoint import save_checkpoint
from meltloc.cli import app
from meltloc.detections import Detection
from meltloc.heads.base import _REGISTRY, Head, register

REPO = Path(__file__).resolve().parents[1]
HEAD_NAMES = ("regression", "yolo", "threshold", "simple-cnn", "enhanced-cnn", "resnet34", "vgg16")


def test_every_head_is_registered_once_in_order():
    assert heads.head_names() == HEAD_NAMES
    for name in HEAD_NAMES:
        cls = heads.head_class(name)
        assert issubclass(cls, Head) and name in cls.names and cls.summary


def test_no_head_name_outside_the_heads_package():
    """Callers never ask which head they hold: no head name in a string outside meltloc/heads/ (the CONTRACT's
    YOLO dataset folder and format are not the head)."""
    pattern = re.compile(r"""["'](%s)["']""" % "|".join(map(re.escape, HEAD_NAMES)))
    found = []
    for path in sorted((REPO / "meltloc").rglob("*.py")):
        if "heads" in path.relative_to(REPO / "meltloc").parts:
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(line) and 'out / "yolo"' not in line:
                found.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not found, "\n".join(found)


def test_train_help_and_errors_come_from_the_registry(tmp_path):
    runner = CliRunner()
    shown = runner.invoke(app, ["train", "--help"], terminal_width=200)
    assert shown.exit_code == 0
    text = " ".join(shown.output.split())
    for name in HEAD_NAMES:
        assert name in text
    unknown = runner.invoke(app, ["train", "--head", "nope", "--data", str(tmp_path), "--out", str(tmp_path / "x.pt")])
    assert unknown.exit_code != 0
    assert "unknown head 'nope': choose regression, yolo, threshold" in " ".join(unknown.output.split())
    wrong = runner.invoke(app, ["train", "--head", "regression", "--data", str(tmp_path), "--out",
                                str(tmp_path / "x.pt"), "--imgsz", "64"])
    assert wrong.exit_code != 0 and "no option --imgsz" in " ".join(wrong.output.split())
    assert "Traceback" not in wrong.output


class _Stripe(Head):
    """A test head: reports one layer at a fixed depth fraction of the core, scored 0.8."""

    summary = "a stub head for the registry test"
    train_options = ("epochs",)

    def __init__(self, checkpoint, device="cpu"):
        super().__init__(checkpoint, device)
        self.classes = ("melt_layer",)
        self.score_threshold = float(checkpoint.get("score_threshold", 0.5))
        self.fraction = float(checkpoint["config"]["fraction"])

    def predict(self, section):
        b = section.bounds
        mid = b.top_row + self.fraction * (b.bottom_row - b.top_row)
        return [Detection("melt_layer", 0.8, mid - 10, mid + 10)]

    def decode(self, prediction, score_threshold):
        return [d for d in prediction if d.score >= score_threshold]

    @classmethod
    def train(cls, data, out, *, head="stripe", seed=0, device="cpu", resume=None, **options):
        save_checkpoint(out, {"head": head, "config": {"fraction": 0.5}, "model": {}, "score_threshold": 0.5,
                              "train": {"seconds": 0.0, "parameters": 0}})
        return {"message": f"wrote {out}"}


@pytest.fixture
def stripe_registered():
    register("stripe")(_Stripe)
    yield _Stripe
    _REGISTRY.pop("stripe", None)


def test_a_new_head_is_its_class_plus_its_registration(stripe_registered, tiny_core, tmp_path):
    """Registered in the test alone, the head trains, loads, detects through the CLI and is compared."""
    runner = CliRunner()
    weights = tmp_path / "stripe.pt"
    trained = runner.invoke(app, ["train", "--head", "stripe", "--data", str(tmp_path), "--out", str(weights)])
    assert trained.exit_code == 0, trained.output
    detector = heads.load_detector(weights)
    assert isinstance(detector, _Stripe) and detector.head == "stripe"
    out = tmp_path / "d.csv"
    result = runner.invoke(app, ["detect", str(tiny_core / "images"), "--sections", str(tiny_core / "sections.tab"),
                                 "--weights", str(weights), "--out", str(out), "--workers", "1"])
    assert result.exit_code == 0, result.output
    rows = pd.read_csv(out)
    assert len(rows) == 3 and set(rows["score"]) == {0.8}
    manifest = pd.read_csv(tiny_core / "sections.csv")
    for _, r in rows.iterrows():  # the stub's layer sits mid-core: about mid-section in meters
        m = manifest[manifest["image"] == r["image"]].iloc[0]
        assert abs((r["depth_from_m"] + r["depth_to_m"]) / 2 - (m["top_m"] + m["bottom_m"]) / 2) < 0.01


def test_training_writes_a_run_record_beside_the_checkpoint(tiny_trained):
    conv, weights = tiny_trained
    run = weights.with_name(weights.name + ".runs")
    args = json.loads((run / "args.json").read_text())
    assert args["head"] == "regression" and args["epochs"] == 2 and args["steps_per_epoch"] == 2
    results = pd.read_csv(run / "results.csv")
    assert list(results["epoch"]) == [1, 2]
    assert {"loss_total", "val_f1", "val_map"} <= set(results.columns)
    assert (run / "results.png").stat().st_size > 1000


def test_demo_trains_the_heads_it_is_given_and_compares_them(tmp_path):
    """The demo takes its heads and their short training from the registry (threshold: seconds)."""
    from conftest import invoke_cli

    out = tmp_path / "demo"
    result = invoke_cli("demo", "--out", out, "--head", "threshold", "--sections", 4, "--px-per-cm", 20, "--quiet")
    assert result.returncode == 0, result.stderr
    assert (out / "weights" / "threshold.pt").is_file() and (out / "weights" / "threshold.pt.runs" / "args.json").is_file()
    table = pd.read_csv(out / "report" / "compare.csv")
    assert list(table["head"]) == ["threshold"] and table.loc[0, "f1"] > 0
    assert len(pd.read_csv(out / "detections.csv")) > 0
    unknown = invoke_cli("demo", "--out", tmp_path / "d2", "--head", "nope")
    assert unknown.returncode != 0 and "unknown head 'nope'" in unknown.stderr


def test_the_cli_lists_heads_without_loading_numerical_libraries():
    """`meltloc --help` and a one-line error stay instant: the registry imports no torch, numpy, pandas or cv2."""
    import subprocess
    import sys

    code = ("import sys, meltloc.cli, meltloc.heads as h; assert h.head_names(); "
            "print(sorted(m for m in ('torch', 'numpy', 'pandas', 'cv2', 'ultralytics') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_head_configs_read_back_what_checkpoints_store():
    """Checkpoints keep tuples as lists and may hold keys of another version: from_dict gives the config back."""
    from dataclasses import dataclass

    from meltloc.heads.base import PlainConfig
    from meltloc.heads.classifiers.config import default_config
    from meltloc.heads.regression.net import RegressionConfig
    from meltloc.heads.threshold import ThresholdConfig
    from meltloc.heads.yolo.config import YoloConfig

    for config in (RegressionConfig(), YoloConfig(), default_config("enhanced-cnn"), ThresholdConfig()):
        stored = {k: list(v) if isinstance(v, tuple) else v for k, v in config.to_dict().items()}
        assert type(config).from_dict({**stored, "from_a_later_version": 1}) == config

    @dataclass
    class Maybe(PlainConfig):
        sizes: tuple[int, ...] | None = None
        names: list | None = None

    assert Maybe.from_dict({"sizes": [1, 2], "names": ["a"]}) == Maybe((1, 2), ["a"])
    # a checkpoint of the first round has no 'normalisation': it divided by the strip's median
    old = RegressionConfig().to_dict()
    del old["normalisation"]
    assert RegressionConfig.from_dict(old).normalisation == "median"
