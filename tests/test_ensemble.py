"""Ensembles of the regression head: several networks answering as one checkpoint (README, "Ninth round")."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
import torch

from conftest import invoke_cli
from meltloc.checkpoint import load_checkpoint, save_checkpoint
from meltloc.errors import CheckpointError, MeltlocError
from meltloc.heads import load_detector
from meltloc.heads.regression.ensemble import combine
from meltloc.imageio import list_images, read_image
from meltloc.manifest import read_manifest
from meltloc.section import load_section


@pytest.fixture(scope="module")
def two_networks(tiny_trained, tmp_path_factory):
    """The tiny regression checkpoint and a second one trained from another seed on the same data."""
    conv, first = tiny_trained
    second = tmp_path_factory.mktemp("second") / "w2.pt"
    result = invoke_cli("train", "--head", "regression", "--data", conv, "--out", second, "--epochs", 2,
                        "--steps-per-epoch", 2, "--batch", 2, "--seed", 7)
    assert result.returncode == 0, result.stderr
    return conv, first, second


def _sections(tiny_core):
    manifest = read_manifest(tiny_core / "sections.tab")
    return [load_section(p, manifest, image=read_image(p)) for p in list_images(tiny_core / "images")]


def test_an_ensemble_answers_with_the_mean_of_its_networks(two_networks, tiny_core, tmp_path):
    conv, first, second = two_networks
    out = tmp_path / "ensemble.pt"
    summary = combine([first, second], conv, out)
    assert summary["members"] == 2 and 0.0 < summary["score_threshold"] < 1.0
    ensemble, a, b = load_detector(out), load_detector(first), load_detector(second)
    assert ensemble.parameters() == a.parameters() + b.parameters()
    for section in _sections(tiny_core):
        (_, (probs, boxes)), (_, (pa, ba)), (_, (pb, bb)) = (d.predict(section) for d in (ensemble, a, b))
        assert not torch.allclose(pa, pb)  # two seeds: two different answers
        torch.testing.assert_close(probs, (pa + pb) / 2)
        torch.testing.assert_close(boxes, (ba + bb) / 2)
    ck = load_checkpoint(out, expect_head="regression")
    assert [m["seed"] for m in ck["train"]["ensemble"]] == [1, 7]


def test_networks_that_normalise_differently_each_see_their_own_normalisation():
    """An ensemble normalises a strip once per kind of normalisation its networks use, never one for all."""
    import numpy as np

    from meltloc.heads.regression.net import (RegressionConfig, RegressionNet, normalise_for, predict_strip,
                                              predict_strip_mean)

    torch.manual_seed(0)
    nets = [RegressionNet(RegressionConfig(normalisation=kind)).eval() for kind in ("local", "median", "local")]
    rng = np.random.default_rng(0)
    pixels = rng.integers(40, 200, size=(640, 64)).astype(np.uint8)
    pixels[: 200] //= 3  # a dark stretch, where the local and the whole-strip levels differ
    probs, boxes = predict_strip_mean(nets, pixels)
    alone = [predict_strip(n, pixels) for n in nets]
    torch.testing.assert_close(probs, torch.stack([a[0] for a in alone]).mean(dim=0), rtol=0, atol=0)
    torch.testing.assert_close(boxes, torch.stack([a[1] for a in alone]).mean(dim=0), rtol=0, atol=0)
    # the two normalisations differ on this strip, so one shared by every network would change the answer
    assert not torch.allclose(normalise_for(nets[0].cfg, pixels), normalise_for(nets[1].cfg, pixels))


def test_an_ensemble_of_one_network_twice_detects_what_the_network_does(two_networks, tiny_core, tmp_path):
    conv, first, _ = two_networks
    twin = tmp_path / "twin.pt"
    shutil.copy(first, twin)
    combine([first, twin], conv, tmp_path / "e.pt")
    ensemble, alone = load_detector(tmp_path / "e.pt"), load_detector(first)
    for section in _sections(tiny_core):
        together = [(d.type, round(d.score, 5), round(d.row_from, 3)) for d in ensemble.detect(section, 0.05)]
        single = [(d.type, round(d.score, 5), round(d.row_from, 3)) for d in alone.detect(section, 0.05)]
        assert together == single


def test_an_ensemble_refuses_members_of_another_strip_and_never_overwrites_one(two_networks, tmp_path):
    conv, first, second = two_networks
    other = load_checkpoint(second)
    other["config"] = {**other["config"], "px_per_mm": 10.0}
    save_checkpoint(tmp_path / "other.pt", other)
    with pytest.raises(CheckpointError, match="another strip"):
        combine([first, tmp_path / "other.pt"], conv, tmp_path / "e.pt")
    before = first.read_bytes()
    with pytest.raises(MeltlocError, match="overwrite its member"):
        combine([first, second], conv, first)
    assert first.read_bytes() == before
    with pytest.raises(MeltlocError, match="two or more"):
        combine([first], conv, tmp_path / "e.pt")
    assert not (tmp_path / "e.pt").exists()
    damaged = load_checkpoint(first)
    damaged["members"] = [{"config": damaged["config"]}]  # a member without its weights
    save_checkpoint(tmp_path / "damaged.pt", damaged)
    with pytest.raises(CheckpointError, match="member 2 lacks"):
        load_detector(tmp_path / "damaged.pt")


def test_train_members_writes_one_checkpoint_that_detect_runs(tiny_trained, tiny_core, tmp_path):
    conv, _ = tiny_trained
    out = tmp_path / "ens.pt"
    result = invoke_cli("train", "--head", "regression", "--data", conv, "--out", out, "--epochs", 1,
                        "--steps-per-epoch", 2, "--batch", 2, "--members", 2, "--seed", 3)
    assert result.returncode == 0, result.stderr
    assert "2 networks averaged" in result.stdout + result.stderr
    ck = load_checkpoint(out, expect_head="regression")
    assert len(ck["members"]) == 1 and [m["seed"] for m in ck["train"]["ensemble"]] == [3, 4]
    assert sorted(p.name for p in (tmp_path / "ens.pt.runs").glob("member*.pt")) == [
        "member1.last.pt", "member1.pt", "member2.last.pt", "member2.pt"]
    found = tmp_path / "found.csv"
    result = invoke_cli("detect", tiny_core / "images", "--sections", tiny_core / "sections.tab", "--weights", out,
                        "--out", found, "--workers", 1)
    assert result.returncode == 0, result.stderr
    assert list(pd.read_csv(found).columns[:8]) == ["image", "depth_from_m", "depth_to_m", "thickness_mm", "type",
                                                    "score", "row_from", "row_to"]


def test_members_is_not_an_option_of_the_threshold_head_and_an_ensemble_does_not_resume(tiny_trained, tmp_path):
    conv, weights = tiny_trained
    result = invoke_cli("train", "--head", "threshold", "--data", conv, "--out", tmp_path / "t.pt", "--members", 2)
    assert result.returncode == 2 and "has no option --members" in result.stderr
    result = invoke_cli("train", "--head", "regression", "--data", conv, "--out", tmp_path / "r.pt", "--members", 2,
                        "--resume", weights.with_name(weights.stem + ".last.pt"))
    assert result.returncode != 0 and "not an ensemble" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "r.pt").exists()


def test_a_teacher_shapes_what_a_network_learns_and_must_read_the_same_strips(two_networks, tmp_path):
    # Distillation (TrainSettings.teacher): the classification targets lean towards the teacher's probabilities.
    # Weight 0 learns exactly what no teacher does; weight 0.5 learns something else.
    from meltloc.errors import DatasetError
    from meltloc.heads.regression.train import TrainSettings, train

    conv, first, second = two_networks
    combine([first, second], conv, tmp_path / "teacher.pt")

    def bias_after(name: str, **teacher) -> torch.Tensor:
        out = tmp_path / name
        train(conv, out, TrainSettings(epochs=1, steps_per_epoch=2, batch=2, crop_rows=256, **teacher),
              show_progress=False)
        return load_checkpoint(out.with_name(out.stem + ".last.pt"), expect_head="regression")["model"][
            "cls_head.2.bias"]

    plain = bias_after("plain.pt")
    assert torch.equal(plain, bias_after("w0.pt", teacher=str(tmp_path / "teacher.pt"), teacher_weight=0.0))
    assert not torch.equal(plain, bias_after("w5.pt", teacher=str(tmp_path / "teacher.pt"), teacher_weight=0.5))
    other = load_checkpoint(first)
    other["config"] = {**other["config"], "width": 32}
    save_checkpoint(tmp_path / "other.pt", other)
    with pytest.raises(DatasetError, match="teacher works on another strip"):
        train(conv, tmp_path / "x.pt", TrainSettings(epochs=1, steps_per_epoch=1, batch=2, crop_rows=256,
                                                      teacher=str(tmp_path / "other.pt")), show_progress=False)


def test_an_ensemble_needs_validation_sections_before_it_trains_and_a_teacher_is_never_overwritten(
        tiny_trained, tmp_path):
    from meltloc.errors import DatasetError
    from meltloc.heads.regression.train import TrainSettings, train

    conv, weights = tiny_trained
    no_val = tmp_path / "no_val"
    shutil.copytree(conv, no_val)
    table = pd.read_csv(no_val / "strips.csv")
    table["split"] = table["split"].replace("val", "train")
    table.to_csv(no_val / "strips.csv", index=False)
    result = invoke_cli("train", "--head", "regression", "--data", no_val, "--out", tmp_path / "e.pt", "--epochs", 1,
                        "--steps-per-epoch", 1, "--batch", 2, "--members", 2)
    assert result.returncode != 0 and "no validation sections" in result.stderr
    assert not list(tmp_path.glob("e.pt*"))  # refused before any member was trained
    teacher = tmp_path / "t.pt"
    shutil.copy(weights, teacher)
    before = teacher.read_bytes()
    with pytest.raises(DatasetError, match="teacher is the checkpoint this training writes"):
        train(conv, teacher, TrainSettings(epochs=1, steps_per_epoch=1, batch=2, crop_rows=256, teacher=str(teacher)),
              show_progress=False)
    assert teacher.read_bytes() == before
