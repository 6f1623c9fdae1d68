"""Shared fixtures: tiny synthetic cores made once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_core(tmp_path_factory):
    """Three synthetic sections at 20 px/cm (about 3,300 x 180 px each), seed 3, the classic look."""
    from meltloc.synth import SynthConfig, write_core

    out = tmp_path_factory.mktemp("core")
    write_core(out, n_sections=3, seed=3, config=SynthConfig(px_per_cm=20, style="classic"))
    return out


def run_cli(*args, cwd=None, timeout=600):
    """Run ``python cli.py ARGS`` as a user would; returns the CompletedProcess."""
    import subprocess
    import sys
    from pathlib import Path

    cli = Path(__file__).resolve().parents[1] / "cli.py"
    return subprocess.run([sys.executable, str(cli), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


@pytest.fixture(scope="session")
def tiny_trained(tiny_core, tmp_path_factory):
    """The tiny core converted (strips at 4 px/mm) and a regression checkpoint trained for a few steps."""
    work = tmp_path_factory.mktemp("regression")
    conv = work / "conv"
    result = run_cli("convert", "--images", tiny_core / "images", "--sections", tiny_core / "sections.tab",
                     "--labels", tiny_core / "features.csv", "--out", conv, "--px-per-mm", 4, "--quiet")
    assert result.returncode == 0, result.stderr
    weights = work / "w.pt"
    result = run_cli("train", "--head", "regression", "--data", conv, "--out", weights, "--epochs", 2,
                     "--steps-per-epoch", 2, "--batch", 2, "--seed", 1)
    assert result.returncode == 0, result.stderr
    return conv, weights
