"""How fast `meltloc review` is on a whole core: 1,280 full-scale sections and 5,000 detections (by hand).

Makes a core of N sections by hard-linking the full-scale images of a folder
under N names (like detect_memory.py), writes a manifest of consecutive 1.65 m
sections and a table of D random detections, starts the real server
(`python cli.py review ... --no-browser`) and drives Debian's chromium with
selenium:

* server start-up, ``GET /api/sections`` (time and size);
* making the tiles of a full-scale section the first time it is opened (decode, core, pyramid);
* the page: load to the list shown, a filter change (the list re-rendered);
* the first view of a full-scale section once its tiles are cached, from the
  click in the list to the visible tiles decoded in the page (``window.__timings``);
* a key press (next detection) to the new selection drawn; an accept to the decision in the file.

    python benchmarks/review_speed.py /tmp/rvfull/images --sections 1280 --detections 5000
    python benchmarks/review_speed.py --shots docs/review          # screenshots of the shipped sample
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def driver(profile: Path, width=1500, height=900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")
    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path="/usr/bin/chromedriver"), options=opts)


def start(args: list[str], port: int) -> tuple[subprocess.Popen, float]:
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "review", *args, "--port", str(port),
                             "--no-browser"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while True:
        if proc.poll() is not None:
            raise SystemExit(proc.stdout.read())
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/version", timeout=1)
            return proc, time.perf_counter() - t0
        except OSError:
            time.sleep(0.05)


def get(url: str) -> tuple[bytes, float]:
    t0 = time.perf_counter()
    data = urllib.request.urlopen(url, timeout=120).read()
    return data, time.perf_counter() - t0


def wait(check, timeout=30.0):
    end = time.time() + timeout
    while time.time() < end:
        value = check()
        if value:
            return value
        time.sleep(0.01)
    raise TimeoutError


def make_core(images: Path, n_sections: int, n_det: int, work: Path, seed: int = 0):
    """N names hard-linked to the given images, a CSV manifest and a random detection table."""
    sources = sorted(p for p in images.iterdir() if p.suffix.lower() in (".png", ".bmp", ".tif", ".tiff"))
    folder = work / "images"
    folder.mkdir(parents=True)
    rows, names = [], []
    for k in range(n_sections):
        bag = 26 + 3 * k
        name = f"{bag}.png"
        os.link(sources[k % len(sources)], folder / name)
        top = 13.75 + 1.65 * k
        rows.append((name, f"{top:.2f}", f"{top + 1.65:.2f}"))
        names.append((name, top))
    with open(work / "sections.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "top_m", "bottom_m"])
        w.writerows(rows)
    rng = np.random.default_rng(seed)
    with open(work / "det.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "depth_from_m", "depth_to_m", "thickness_mm", "type", "score", "row_from", "row_to"])
        for j in range(n_det):
            name, top = names[j % n_sections] if j < n_sections else names[int(rng.integers(n_sections))]
            d0 = top + 0.02 + rng.random() * 1.6
            t = 0.5 + rng.random() * 5
            px = 18600.0
            w.writerow([name, f"{d0:.6f}", f"{d0 + t / 1000:.6f}", f"{t:.6f}",
                        "melt_lens" if rng.random() < 0.1 else "melt_layer", f"{rng.random():.6f}",
                        f"{(d0 - top) * px:.2f}", f"{(d0 - top + t / 1000) * px:.2f}"])
    return folder


def speed(args) -> dict:
    work = Path(tempfile.mkdtemp(prefix="review-bench-"))
    out: dict = {"sections": args.sections, "detections": args.detections}
    try:
        images = make_core(Path(args.images), args.sections, args.detections, work)
        port = free_port()
        proc, startup = start(["--images", str(images), "--sections", str(work / "sections.csv"), str(work / "det.csv"),
                               "--cache", str(work / "cache")], port)
        base = f"http://127.0.0.1:{port}"
        out["server_start_s"] = round(startup, 2)
        data, t = get(f"{base}/api/sections")
        out["api_sections_ms"] = round(t * 1000, 1)
        out["api_sections_kb"] = round(len(data) / 1024, 1)
        listing = json.loads(data)["sections"]
        names = [s["image"] for s in listing]
        # First opening of full-scale sections: the tiles are made (decode, core, pyramid).
        prep = []
        for name in names[:args.prepare]:
            _, t = get(f"{base}/api/sections/{name}")
            prep.append(t)
        out["make_tiles_s"] = [round(t, 2) for t in prep]
        meta = json.loads(get(f"{base}/api/sections/{names[0]}")[0])["meta"]
        out["tile_cache_mb_per_section"] = round(meta["bytes"] / 1e6, 1)
        out["image"] = f"{meta['height']} x {meta['width']} px"
        d = driver(work / "profile")
        d.set_script_timeout(60)
        try:
            t0 = time.perf_counter()
            d.get(base + "/")
            wait(lambda: d.execute_script("return window.__timings.length") >= 1, 120)
            out["page_load_to_first_view_s"] = round(time.perf_counter() - t0, 2)
            nav = d.execute_script("const n = performance.getEntriesByType('navigation')[0]; return [n.responseEnd, n.domContentLoadedEventEnd];")
            first = d.execute_script("return window.__timings[0]")
            res = d.execute_script("return performance.getEntriesByType('resource').filter(e => e.name.includes('/api/sections'))"
                                   ".map(e => [e.name.split('/').pop(), Math.round(e.startTime), Math.round(e.responseEnd)])")
            out["page_breakdown_ms"] = {"html": round(nav[0]), "dom_ready": round(nav[1]), "api": res,
                                        "first_section_json": round(first["json_ms"]),
                                        "first_section_view": round(first["view_ms"])}
            if args.screenshot:
                d.save_screenshot(str(args.screenshot))
            out["list_render_ms"] = round(d.execute_script("return renderList()"), 1)
            out["filter_change_ms"] = round(d.execute_script(
                "const t = performance.now(); document.getElementById('f-low').click(); renderList();"
                "const n = document.querySelectorAll('#sections .srow').length;"
                "document.getElementById('f-low').click(); renderList(); return performance.now() - t;") / 2, 1)
            out["rows_in_list"] = d.execute_script("return document.querySelectorAll('#sections .srow').length")
            # First view of cached full-scale sections: click in the list, visible tiles decoded.
            views = []
            for name in names[1:args.prepare]:
                n = d.execute_script("return window.__timings.length")
                d.execute_script(f"window.__click0 = performance.now(); "
                                 f"document.querySelector('#sections .srow[data-image=\"{name}\"]').click();")
                wait(lambda: d.execute_script("return window.__timings.length") > n, 30)
                views.append(d.execute_script("return window.__timings[window.__timings.length - 1]"))
            out["first_view_cached_ms"] = [round(v["view_ms"]) for v in views]
            out["first_view_cached_json_ms"] = [round(v["json_ms"]) for v in views]
            out["first_view_tiles"] = [v["tiles"] for v in views]
            # Key press to the next detection drawn (measured in the page: no driver round trips).
            key_js = """
                const done = arguments[arguments.length - 1], st = window.__review, before = st.selId;
                const t0 = performance.now();
                document.dispatchEvent(new KeyboardEvent('keydown', {key: arguments[0], bubbles: true}));
                const check = () => st.selId !== before && document.body.dataset.state === 'ready'
                    ? requestAnimationFrame(() => done(performance.now() - t0)) : setTimeout(check, 0);
                check();"""
            keys = [d.execute_async_script(key_js, "j") for _ in range(20)]
            out["next_key_ms"] = {"median": round(statistics.median(keys), 1), "max": round(max(keys), 1)}
            # An accept: key press to the server's answer (the decisions file already rewritten and synced).
            acc_js = """
                const done = arguments[arguments.length - 1], st = window.__review, t0 = performance.now();
                document.dispatchEvent(new KeyboardEvent('keydown', {key: 'a', bubbles: true}));
                st.queue.then(() => requestAnimationFrame(() => done(performance.now() - t0)));"""
            dec = work / "det.review.csv"
            acc = []
            for _ in range(10):
                sel = d.execute_script("return window.__review.selId")
                acc.append(d.execute_async_script(acc_js))
                assert _status(dec, sel) == "accepted"
            out["accept_saved_ms"] = {"median": round(statistics.median(acc), 1), "max": round(max(acc), 1)}
            out["first_view_cached_tiles_loaded_ms"] = [round(v["tiles_loaded_ms"]) for v in views]
        finally:
            d.quit()
            proc.terminate()
            proc.wait(timeout=10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def _status(path: Path, index: int) -> str | None:
    try:
        with open(path, newline="") as f:
            for i, row in enumerate(csv.DictReader(f)):
                if i == index:
                    return row["status"]
    except OSError:
        return None
    return None


def shots(folder: Path) -> None:
    """Screenshots of the page on the shipped sample (with its hand log and truth)."""
    folder.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="review-shots-"))
    port = free_port()
    env_cache = ["--cache", str(work / "cache")]
    proc, _ = start(env_cache, port)
    d = driver(work / "profile", 1500, 860)
    try:
        d.get(f"http://127.0.0.1:{port}/")
        wait(lambda: d.execute_script("return window.__timings.length") >= 1, 120)
        body = d.find_element("tag name", "body")
        body.send_keys("a")
        time.sleep(0.5)
        body.send_keys("j")
        time.sleep(1.0)
        d.save_screenshot(str(folder / "section.png"))
        for _ in range(3):
            body.send_keys("-")
        time.sleep(1.0)
        d.save_screenshot(str(folder / "zoomed_out.png"))
    finally:
        d.quit()
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="?", help="folder of full-scale section images (hard-linked under many names)")
    ap.add_argument("--sections", type=int, default=1280)
    ap.add_argument("--detections", type=int, default=5000)
    ap.add_argument("--prepare", type=int, default=4, help="sections whose tiles are made and then viewed")
    ap.add_argument("--screenshot", type=Path, help="save the page with the whole core's list here")
    ap.add_argument("--shots", type=Path, help="write screenshots of the shipped sample here instead")
    args = ap.parse_args()
    if args.shots:
        shots(args.shots)
        return
    if not args.images:
        ap.error("give a folder of full-scale images (or --shots DIR)")
    print(json.dumps(speed(args), indent=1))


if __name__ == "__main__":
    main()
