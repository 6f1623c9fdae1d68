"""Memory of `meltloc detect` over a whole folder (run by hand; results go in the README).

    python benchmarks/detect_memory.py IMAGES_DIR SECTIONS_FILE [--weights weights/regression.pt] [--out DIR]
        [--names 100]

``--names N`` first hard-links the images under N new names in DIR/images
(cycling through them) with a matching manifest, so that a few synthetic
sections make a long folder (detect skips a file it has already seen, not a
name).

Runs the real command (``python cli.py detect IMAGES_DIR --sections ... --quiet``)
as a child process and samples its resident memory (VmRSS, /proc) every
50 ms. Each sample is tied to the number of images finished at that moment
(the lines of ``<out>.done``), which gives the memory after each image. It
prints the peak (VmHWM), the memory after the first, 10th, middle and last
image, and the least-squares slope in MB per image over every image after
the 10th: a slope near zero means no growth per image.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def status_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM of a process in MB ({} once it is gone)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return {}
    out = {}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) / 1024
    return out


def finished(done: Path) -> int:
    try:
        return len(done.read_text().split())
    except FileNotFoundError:
        return 0


def long_folder(images: Path, sections: Path, n: int, out: Path) -> tuple[Path, Path]:
    """``n`` hard links to the manifest's images (cycling) in ``out/images`` and their manifest."""
    import os

    sys.path.insert(0, str(REPO))
    import pandas as pd

    from meltloc.manifest import read_manifest

    table = read_manifest(sections).table
    table = table[[(images / name).is_file() for name in table["image"]]].reset_index(drop=True)
    folder = out / "images"
    if folder.exists():
        for old in folder.iterdir():
            old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        rec = table.iloc[i % len(table)]
        name = f"{5000 + i}_{rec['image']}"
        os.link(images / rec["image"], folder / name)
        rows.append((name, rec["top_m"], rec["bottom_m"]))
    manifest = out / "sections.csv"
    pd.DataFrame(rows, columns=["image", "top_m", "bottom_m"]).to_csv(manifest, index=False)
    return folder, manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", type=Path)
    ap.add_argument("sections", type=Path)
    ap.add_argument("--weights", type=Path, default=REPO / "weights" / "regression.pt")
    ap.add_argument("--out", type=Path, default=Path("/tmp/meltloc-memory"), help="folder for the CSV and results")
    ap.add_argument("--names", type=int, default=0, help="hard-link the images under this many names first")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.names:
        args.images, args.sections = long_folder(args.images, args.sections, args.names, args.out)
    csv = args.out / "detections.csv"
    done = csv.with_name(csv.name + ".done")
    for stale in (csv, done, csv.with_name(csv.name + ".partial")):
        stale.unlink(missing_ok=True)
    cmd = [sys.executable, str(REPO / "cli.py"), "detect", str(args.images), "--sections", str(args.sections),
           "--weights", str(args.weights), "--out", str(csv), "--quiet"]
    t0 = time.time()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    samples, peak = [], 0.0  # (images finished, RSS MB)
    while proc.poll() is None:
        mem = status_mb(proc.pid)
        if mem:
            peak = max(peak, mem.get("VmHWM", 0.0))
            samples.append((finished(done), mem["VmRSS"]))
        time.sleep(0.05)
    stderr = proc.stderr.read()
    wall = time.time() - t0
    if proc.returncode != 0:
        raise SystemExit(f"detect failed ({proc.returncode}): {stderr.strip()}")
    import re

    found = re.search(r"(\d+) image\(s\) in", stderr)
    n = int(found.group(1)) if found else max((k for k, _ in samples), default=0)
    # Memory after image k: the last sample taken while k images were finished (before the next one was);
    # the .done file is gone once the run ends, so the last sample stands for the last image.
    after = {}
    for k, rss in samples:
        if k >= 1:
            after[k] = rss
    if samples:
        after.setdefault(n, samples[-1][1])
    ks = np.array(sorted(after))
    rss = np.array([after[k] for k in ks])
    tail = ks > 10
    slope = float(np.polyfit(ks[tail], rss[tail], 1)[0]) if tail.sum() >= 3 else float("nan")

    def at(k: int) -> float:
        i = int(np.searchsorted(ks, k))
        return float(rss[min(i, len(rss) - 1)])

    result = {"images": n, "wall_s": wall, "seconds_per_image": wall / max(n, 1), "peak_rss_mb": peak,
              "rss_after_first_mb": at(1), "rss_after_10_mb": at(10), "rss_after_middle_mb": at(max(1, n // 2)),
              "rss_after_last_mb": at(n), "max_rss_after_10_mb": float(rss[tail].max()) if tail.any() else None,
              "slope_mb_per_image_after_10": slope, "command": " ".join(cmd)}
    (args.out / "memory.json").write_text(json.dumps(result, indent=2))
    print(f"{n} images in {wall:.0f} s ({wall / max(n, 1):.2f} s per image), peak RSS {peak:.0f} MB")
    print(f"RSS after image 1 / 10 / {max(1, n // 2)} / {n}: {at(1):.0f} / {at(10):.0f} / "
          f"{at(max(1, n // 2)):.0f} / {at(n):.0f} MB; slope after image 10: {slope:+.3f} MB per image")
    print(f"wrote {args.out / 'memory.json'}")


if __name__ == "__main__":
    main()
