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
    result = invoke_cli("convert", "--images", tiny_core / "images", "--sections", tiny_core / "sections.tab",
                        "--labels", tiny_core / "features.csv", "--out", conv, "--px-per-mm", 4, "--quiet")
    assert result.returncode == 0, result.stderr
    weights = work / "w.pt"
    result = invoke_cli("train", "--head", "regression", "--data", conv, "--out", weights, "--epochs", 2,
                        "--steps-per-epoch", 2, "--batch", 2, "--seed", 1)
    assert result.returncode == 0, result.stderr
    return conv, weights


@pytest.fixture
def ctrl_c_at_a_terminal():
    """SIGINT raises KeyboardInterrupt in this process, as at a terminal, even when the test run ignores it
    (started in the background with '&'); put back afterwards."""
    import signal

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def invoke_cli(*args, cwd=None):
    """Run ``meltloc ARGS`` in this process, through the console script's own entry point (one-line errors, exit
    codes), without the seconds a new interpreter takes to import torch; for tests where a separate process is not
    the point. Returns a CompletedProcess like :func:`run_cli`: an exception that escapes becomes a traceback on
    stderr and exit code 1, as in a new process."""
    import contextlib
    import io
    import os
    import signal
    import subprocess
    import sys
    import traceback

    from meltloc.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    argv, here = sys.argv, os.getcwd()
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    code = 0
    try:
        sys.argv = ["meltloc", *map(str, args)]
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main()
            except SystemExit as exc:
                if isinstance(exc.code, str):
                    print(exc.code, file=sys.stderr)
                code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
            except Exception:  # noqa: BLE001  (what an uncaught exception does to a process)
                traceback.print_exc()
                code = 1
    finally:
        sys.argv = argv
        for s, handler in handlers.items():
            signal.signal(s, handler)
        os.chdir(here)
    return subprocess.CompletedProcess(["meltloc", *map(str, args)], code, out.getvalue(), err.getvalue())
