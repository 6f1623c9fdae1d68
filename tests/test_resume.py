"""Long runs: `meltloc detect` stopped in the middle of a folder (killed, Ctrl-C, SIGTERM, a full disk) and
resumed loses and repeats nothing."""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import invoke_cli, run_cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folder_run(tiny_core, tmp_path_factory):
    """24 images, the detect arguments, and the CSV of an uninterrupted run over them (the shipped weights: real
    layers, a few rows per image)."""
    weights = REPO / "weights" / "regression.pt"
    work = tmp_path_factory.mktemp("resume")
    folder = work / "images"
    folder.mkdir()
    for i in range(24):  # enough images that the stop lands in the middle
        src = tiny_core / "images" / ["227.png", "230.png", "233.png"][i % 3]
        shutil.copy(src, folder / f"{1000 + i}.png")
    args = ["detect", folder, "--weights", weights, "--quiet", "--workers", 1]
    whole = work / "whole.csv"
    result = run_cli(*args, "--out", whole)
    assert result.returncode == 0, result.stderr
    table = pd.read_csv(whole)
    assert len(table) >= 48 and table["image"].nunique() == 24  # rows from every image, to lose or repeat
    return args, table, whole.stat().st_size


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> None:
    key = ["image", "row_from"]
    pd.testing.assert_frame_equal(a.sort_values(key).reset_index(drop=True), b.sort_values(key).reset_index(drop=True))


def resume_and_check(args, whole: pd.DataFrame, out: Path) -> None:
    done = out.with_name(out.name + ".done")
    finished_before = set(done.read_text().split())
    result = run_cli(*args, "--out", out, "--resume")
    assert result.returncode == 0, result.stderr
    assert f"{len(finished_before)} already done" in result.stderr
    same_rows(whole, pd.read_csv(out))
    assert not done.exists()


@pytest.mark.parametrize("sig, code", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 143),
                                       (signal.SIGINT, 130)], ids=["SIGKILL", "SIGTERM", "SIGINT"])
def test_stopped_detect_resumes_to_the_same_csv_as_an_uninterrupted_run(folder_run, tmp_path, sig, code):
    args, whole, _ = folder_run
    out = tmp_path / "resumed.csv"
    done = tmp_path / "resumed.csv.done"
    # Ctrl-C as at a terminal, even when the test run itself ignores it (started in the background with '&')
    proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), *map(str, args), "--out", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if done.exists() and len(done.read_text().split()) >= 3:
            os.kill(proc.pid, sig)
            break
        time.sleep(0.02)
    stderr = proc.communicate()[1]
    assert proc.returncode == code, f"the run ended before it could be stopped: {stderr}"
    assert 3 <= len(set(done.read_text().split())) < 24
    assert not out.exists()  # nothing half-written under the final name
    if sig != signal.SIGKILL:  # a handled stop says how to go on, in words
        assert "Traceback" not in stderr
        assert "--resume" in stderr and "resumed.csv.partial" in stderr
    resume_and_check(args, whole, out)


def test_a_ctrl_c_swallowed_on_its_way_still_stops_detect(folder_run, tmp_path, monkeypatch, ctrl_c_at_a_terminal):
    """Ctrl-C pressed inside a library's catch-all (here: while the third image is processed) stops the run before
    the next image, with what was finished kept, as a Ctrl-C that arrived anywhere else does."""
    import meltloc.detect as detect

    args, whole, _ = folder_run
    calls = []

    def process(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            try:
                signal.raise_signal(signal.SIGINT)
            except KeyboardInterrupt:  # swallowed, as Python does for one raised in a __del__
                pass
        return real(*a, **k)

    real = detect._process
    monkeypatch.setattr(detect, "_process", process)
    out = tmp_path / "swallowed.csv"
    result = invoke_cli(*args, "--out", out)
    assert result.returncode == 130, result.stderr
    assert len(calls) == 3
    assert len(set(out.with_name(out.name + ".done").read_text().split())) == 3
    assert "--resume" in result.stderr and "swallowed.csv.partial" in result.stderr
    monkeypatch.setattr(detect, "_process", real)
    resume_and_check(args, whole, out)


def test_a_full_disk_stops_detect_with_one_line_and_keeps_what_was_finished(folder_run, tmp_path):
    """A file-size limit makes writes fail as on a full disk (EFBIG instead of ENOSPC, the same OSError path)."""
    args, whole, size = folder_run
    out = tmp_path / "full.csv"

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (size // 2, size // 2))

    proc = subprocess.run([sys.executable, str(REPO / "cli.py"), *map(str, args), "--out", str(out)],
                          capture_output=True, text=True, preexec_fn=limit_file_size, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "full.csv.partial" in errors[0] and "--resume" in errors[0], proc.stderr
    assert not out.exists()
    resume_and_check(args, whole, out)
