"""Whole-archive detect speed: seconds per full-scale section with 1 and N worker processes, against decoding alone.

    meltloc synth /tmp/bench/png --sections 4 --px-per-cm 186 --style classic
    meltloc synth /tmp/bench/bmp --sections 4 --px-per-cm 186 --style classic --format bmp
    python benchmarks/archive_speed.py /tmp/bench/png /tmp/bench/bmp [--workers 2] [--names 4 16]

For each synth folder (``images/`` and ``sections.tab``) it

1. hard-links the images under ``--names`` section names (a longer run from a few files; detect sees every name
   as its own section) with a matching manifest, once for each of the two counts,
2. times reading and decoding every file in this process (``read_image``: the physical limit of one core),
3. runs the real command, ``python cli.py detect ... --workers 1`` and ``--workers N``, in a fresh process each
   time, on both counts, and takes the wall time of each whole process. The difference between the two counts,
   divided by the difference in sections, is the time each further section costs (start-up cancels out); the
   rest is the start-up (Python, torch, the model, and with N workers N processes doing the same).

It prints seconds per section, each as a ratio to the decode time measured in the same run (so that figures taken
on a shared machine stay comparable), the start-up, the minutes a 1,280-section core would take, and whether the
CSVs of 1 and N workers are the same bytes.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from meltloc.imageio import list_images, read_image  # noqa: E402
from meltloc.manifest import read_manifest, write_manifest  # noqa: E402


def prepare(core: Path, work: Path, names: int) -> tuple[Path, Path]:
    """``names`` hard links to the core's images, as consecutive sections, and their manifest."""
    images = list_images(core / "images")
    manifest = read_manifest(core / "sections.tab")
    folder = work / "images"
    folder.mkdir(parents=True)
    rows = []
    top = float(manifest.table["top_m"].min())
    for i in range(names):
        src = images[i % len(images)]
        name = f"{1000 + 3 * i}{src.suffix}"
        try:
            os.link(src, folder / name)
        except OSError:
            shutil.copy(src, folder / name)
        rec = manifest.find(src.name)
        length = float(rec["bottom_m"] - rec["top_m"])
        rows.append((name, top, top + length))
        top += length
    tab = work / "sections.tab"
    write_manifest(pd.DataFrame(rows, columns=["image", "top_m", "bottom_m"]), tab_path=tab)
    return folder, tab


def decode_seconds(folder: Path) -> float:
    times = []
    for path in list_images(folder):
        t0 = time.perf_counter()
        image = read_image(path)
        times.append(time.perf_counter() - t0)
        del image
    return sum(times) / len(times)


def run_detect(folder: Path, tab: Path, out: Path, workers: int, weights: Path) -> float:
    """Wall seconds of one whole ``meltloc detect`` process."""
    cmd = [sys.executable, str(REPO / "cli.py"), "detect", str(folder), "--sections", str(tab), "--weights",
           str(weights), "--out", str(out), "-q", "--overwrite", "--workers", str(workers), "--device", "cpu"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not re.search(r"\d+ image\(s\) processed", proc.stderr):
        raise SystemExit(proc.stderr)
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cores", type=Path, nargs="+", help="meltloc synth output folders (images/, sections.tab)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--names", type=int, nargs=2, default=[4, 16], help="the two run lengths, in sections")
    ap.add_argument("--weights", type=Path, default=REPO / "weights" / "regression.pt")
    args = ap.parse_args()
    small, large = sorted(args.names)
    print(f"{os.cpu_count()} cores; load average before: {os.getloadavg()[0]:.1f}")
    rows = []
    for core in args.cores:
        with tempfile.TemporaryDirectory() as tmp:
            runs = {n: prepare(core, Path(tmp) / str(n), n) for n in (small, large)}
            folder = runs[large][0]
            kind = list_images(folder)[0].suffix.lstrip(".").upper()
            shape = read_image(list_images(folder)[0]).shape
            decode = decode_seconds(folder)
            for workers in (1, args.workers):
                wall = {n: run_detect(f, t, Path(tmp) / f"d{workers}_{n}.csv", workers, args.weights)
                        for n, (f, t) in runs.items()}
                per = (wall[large] - wall[small]) / (large - small)
                rows.append({"format": kind, "size": f"{shape[0]:,} x {shape[1]:,}", "workers": workers,
                             "decode_s": decode, "detect_s": per, "x_decode": per / decode,
                             "start_up_s": wall[small] - small * per, "core_1280_min": (1280 * per) / 60,
                             "wall_per_section": wall[large] / large,  # start-up included: an upper bound
                             # the largest resident memory of any one process run so far (main or worker)
                             "max_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024})
            same = (Path(tmp) / f"d1_{large}.csv").read_bytes() == (Path(tmp) / f"d{args.workers}_{large}.csv").read_bytes()
            print(f"{kind}: the CSV with --workers {args.workers} is {'the same as' if same else 'NOT the same as'} "
                  "with --workers 1")
    table = pd.DataFrame(rows)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
