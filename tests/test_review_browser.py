"""meltloc review in a real browser: Debian's chromium driven by selenium, nothing downloaded.

The page is loaded on a tiny synthetic core served by ``meltloc review`` (a
real server process); one detection is accepted and one rejected with the
keyboard, a boundary is nudged and undone, a boundary is dragged, a missed
layer is added by dragging over the core; the decisions file and the
exported log are checked, and ``convert --labels`` reads the export.
"""

from __future__ import annotations

import csv
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
CHROMEDRIVER = shutil.which("chromedriver") or ("/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").exists() else None)

pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="Debian's chromium and chromium-driver are not installed "
                                       "(apt-get install chromium chromium-driver; .ci/run does it)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_decisions(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _stale():
    try:
        from selenium.common.exceptions import StaleElementReferenceException
    except ImportError:  # the test is skipped without selenium
        return ()
    return (StaleElementReferenceException,)


def wait_for(check, timeout=15.0, what="condition"):
    """``check()`` until it gives something true; an element re-drawn under the check (stale) is "not yet"."""
    end = time.time() + timeout
    last = None
    while time.time() < end:
        try:
            last = check()
            if last:
                return last
        except (OSError, KeyError, IndexError, ValueError, *_stale()):
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def make_driver(tmp_path: Path, width=1400, height=900):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download anything
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'chromium-profile'}", f"--window-size={width},{height}"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)


@pytest.fixture()
def served(tmp_path):
    """A tiny core, hand-written detections and a running 'meltloc review' on a free port."""
    from meltloc.synth import SynthConfig, write_core

    core = tmp_path / "core"
    write_core(core, n_sections=2, seed=3, config=SynthConfig(px_per_cm=20))
    truth = pd.read_csv(core / "truth.csv")
    layers = truth[truth["type"] == "melt_layer"].reset_index(drop=True)
    det = tmp_path / "det.csv"
    rows = [{"image": r.image, "depth_from_m": round(r.depth_from_m, 6), "depth_to_m": round(r.depth_to_m, 6),
             "thickness_mm": round((r.depth_to_m - r.depth_from_m) * 1000, 6), "type": "melt_layer",
             "score": round(0.9 - 0.05 * i, 6), "row_from": r.row_from, "row_to": r.row_to}
            for i, r in layers.iterrows()]
    pd.DataFrame(rows).to_csv(det, index=False)
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve().parents[1] / "cli.py"), "review", str(det),
         "--images", str(core / "images"), "--sections", str(core / "sections.tab"),
         "--labels", str(core / "features.csv"), "--truth", str(core / "truth.csv"),
         "--port", str(port), "--no-browser", "--cache", str(tmp_path / "cache")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}/"

    def up():
        if proc.poll() is not None:
            raise AssertionError(f"the server stopped: {proc.stdout.read()}")
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(up, timeout=60, what="the review server")
        yield {"url": url, "core": core, "det": det, "decisions": tmp_path / "det.review.csv", "tmp": tmp_path,
               "rows": rows}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_review_in_chromium_with_the_keyboard_and_the_mouse(served, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    decisions = served["decisions"]
    driver = make_driver(tmp_path)
    try:
        driver.get(served["url"])
        wait_for(lambda: driver.execute_script("return document.body.dataset.state") == "ready", what="the page")
        wait_for(lambda: driver.execute_script("return window.__timings.length") >= 1, what="the first view")
        # The section list, the keys and the first detection with its score are shown.
        assert len(driver.find_elements(By.CSS_SELECTOR, "#sections .srow")) == 2
        assert "accept" in driver.find_element(By.ID, "keys").text
        first = driver.execute_script("return window.__review.selId")
        assert first == 0
        assert "layer 0.90" in driver.find_element(By.CSS_SELECTOR, ".det.sel").text
        assert driver.find_elements(By.CSS_SELECTOR, "#log-lane .f") and driver.find_elements(By.CSS_SELECTOR, "#truth-lane .f")
        body = driver.find_element(By.TAG_NAME, "body")

        body.send_keys("a")  # accept, then the next detection is selected
        wait_for(lambda: read_decisions(decisions)[0]["status"] == "accepted", what="the accept in the file")
        wait_for(lambda: driver.execute_script("return window.__review.selId") == 1, what="the next detection")
        body.send_keys("r")  # reject
        wait_for(lambda: read_decisions(decisions)[1]["status"] == "rejected", what="the reject in the file")
        wait_for(lambda: driver.execute_script("return window.__review.selId") == 2, what="the next detection")

        # Nudge the top boundary down by 0.1 mm, then undo it.
        before = float(read_decisions(decisions)[2]["depth_from_m"])
        body.send_keys("s")
        wait_for(lambda: abs(float(read_decisions(decisions)[2]["depth_from_m"]) - (before + 0.0001)) < 1e-7,
                 what="the nudge in the file")
        assert read_decisions(decisions)[2]["status"] == "edited"
        body.send_keys("u")
        wait_for(lambda: read_decisions(decisions)[2]["status"] == "unreviewed", what="the undo in the file")
        assert float(read_decisions(decisions)[2]["depth_from_m"]) == pytest.approx(before, abs=1e-7)

        # Drag the bottom boundary of the selected detection 12 px down.
        old_to = float(read_decisions(decisions)[2]["depth_to_m"])
        def drag():  # the list may be drawn again between finding the handle and dragging it: find it again
            handle = driver.find_element(By.CSS_SELECTOR, ".det.sel .h.bot")
            ActionChains(driver).move_to_element(handle).click_and_hold().move_by_offset(0, 6) \
                .move_by_offset(0, 6).release().perform()
            return True

        wait_for(drag, what="the boundary handle")
        wait_for(lambda: read_decisions(decisions)[2]["status"] == "edited", what="the dragged boundary in the file")
        zoom = driver.execute_script("return window.__review.zoom")
        px_per_m = driver.execute_script("return window.__review.sec.scale.px_per_m")
        new_to = float(read_decisions(decisions)[2]["depth_to_m"])
        assert new_to - old_to == pytest.approx(12 / zoom / px_per_m, abs=0.00025)

        # Add a missed layer: drag over a stretch of core with no box.
        x, y = driver.execute_script("""
            const st = window.__review, sc = document.getElementById('scroller');
            const rows = st.dets.map(d => [d.row_from, d.row_to]);
            let row = 0.35 * st.sec.meta.height;
            while (rows.some(([a, b]) => Math.abs(a - row) < 150 || Math.abs(b - row) < 150)) row += 97;
            sc.scrollTop = row * st.zoom - sc.clientHeight / 2;
            const r = document.getElementById('core').getBoundingClientRect();
            return [r.left + r.width / 2, r.top + row * st.zoom];""")
        time.sleep(0.2)
        n = len(read_decisions(decisions))
        from selenium.webdriver.common.actions.action_builder import ActionBuilder

        actions = ActionBuilder(driver)
        actions.pointer_action.move_to_location(int(x), int(y)).pointer_down()
        actions.pointer_action.move_to_location(int(x), int(y) + 10).move_to_location(int(x), int(y) + 20).pointer_up()
        actions.perform()
        wait_for(lambda: len(read_decisions(decisions)) == n + 1, what="the added layer in the file")
        added = read_decisions(decisions)[-1]
        assert added["status"] == "added" and added["type"] == "melt_layer"
        assert float(added["thickness_mm"]) == pytest.approx(20 / zoom / px_per_m * 1000, abs=0.25)
        body.send_keys("t")  # the new feature is selected: make it a lens
        wait_for(lambda: read_decisions(decisions)[-1]["type"] == "melt_lens", what="the type change")
        body.send_keys("t")
        wait_for(lambda: read_decisions(decisions)[-1]["type"] == "melt_layer", what="the type change back")
        assert read_decisions(decisions)[-1]["status"] == "added"
        counts = wait_for(lambda: driver.find_element(By.CSS_SELECTOR, "#sections .srow.open").text.split()[-3:] ==
                          ["2", "1", "1"], what="the section's counts")  # accepted or edited, rejected, added
        assert counts
        logs = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "favicon" not in e["message"]]
        assert not logs, logs
    finally:
        driver.quit()

    rows = read_decisions(decisions)
    assert [r["status"] for r in rows[:3]] == ["accepted", "rejected", "edited"]
    out = tmp_path / "reviewed.xlsx"
    r = run_cli("review", served["det"], "--sections", served["core"] / "sections.tab", "--export", out)
    assert r.returncode == 0, r.stderr
    log = pd.read_excel(out)
    assert len(log) == 3 and set(log["type of feature"]) == {"meltLayer"}
    assert float(rows[1]["depth_from_m"]) not in set(log["depth from"].round(6))
    assert log["depth from"].round(4).tolist() == sorted(
        round(float(r["depth_from_m"]), 4) for r in rows if r["status"] in ("accepted", "edited", "added"))
    r = run_cli("convert", "--images", served["core"] / "images", "--sections", served["core"] / "sections.tab",
                "--labels", out, "--out", tmp_path / "conv", "--px-per-mm", 4, "--quiet")
    assert r.returncode == 0, r.stderr
    assert len(pd.read_csv(tmp_path / "conv" / "intervals.csv")) == 3
