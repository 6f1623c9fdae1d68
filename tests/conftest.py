"""Shared fixtures: tiny synthetic cores made once per test session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")


@pytest.fixture(scope="session")
def tiny_core(tmp_path_factory):
    """Three synthetic sections at 20 px/cm (about 3,300 x 180 px each), seed 3."""
    from meltloc.synth import SynthConfig, write_core

    out = tmp_path_factory.mktemp("core")
    write_core(out, n_sections=3, seed=3, config=SynthConfig(px_per_cm=20))
    return out
