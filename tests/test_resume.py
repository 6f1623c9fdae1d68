"""Long runs: `meltloc detect` killed in the middle of a folder and resumed loses and repeats nothing."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from conftest import run_cli

REPO = Path(__file__).resolve().parents[1]


def test_killed_detect_resumes_to_the_same_csv_as_an_uninterrupted_run(tiny_core, tiny_trained, tmp_path):
    _, weights = tiny_trained
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(24):  # enough images that the kill lands in the middle
        src = tiny_core / "images" / ["227.png", "230.png", "233.png"][i % 3]
        shutil.copy(src, folder / f"{1000 + i}.png")
    args = ["detect", folder, "--weights", weights, "--min-score", 0.01, "--quiet"]

    whole = tmp_path / "whole.csv"
    assert run_cli(*args, "--out", whole).returncode == 0

    out = tmp_path / "resumed.csv"
    done = tmp_path / "resumed.csv.done"
    proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), *map(str, args), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if done.exists() and len(done.read_text().split()) >= 3:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    finished_before = set(done.read_text().split())
    assert 3 <= len(finished_before) < 24
    assert not out.exists()  # nothing half-written under the final name

    result = run_cli(*args, "--out", out, "--resume")
    assert result.returncode == 0, result.stderr
    assert f"{len(finished_before)} already done" in result.stderr
    a, b = pd.read_csv(whole), pd.read_csv(out)
    pd.testing.assert_frame_equal(a.sort_values(["image", "row_from"]).reset_index(drop=True),
                                  b.sort_values(["image", "row_from"]).reset_index(drop=True))
    assert not done.exists()
