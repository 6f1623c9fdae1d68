"""meltloc review through its API (FastAPI's test client): decisions, export, path checks, bad requests.

A tiny synthetic core (2 sections at 20 px/cm) and a detections CSV written
by hand from its truth: no model runs here.
"""

from __future__ import annotations

import csv
import os
import threading
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli

DETECT_COLUMNS = ["image", "depth_from_m", "depth_to_m", "thickness_mm", "type", "score", "row_from", "row_to"]


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    from meltloc.synth import SynthConfig, write_core

    out = tmp_path_factory.mktemp("review_core")
    write_core(out, n_sections=2, seed=3, config=SynthConfig(px_per_cm=20))
    return out


def write_detections(core: Path, path: Path) -> pd.DataFrame:
    """Detections made from the truth: every melt layer and lens, plus one false layer; an extra column kept."""
    truth = pd.read_csv(core / "truth.csv")
    truth = truth[truth["type"].isin(["melt_layer", "melt_lens"])].reset_index(drop=True)
    rows = []
    for i, r in truth.iterrows():
        rows.append({"image": r.image, "depth_from_m": f"{r.depth_from_m:.6f}", "depth_to_m": f"{r.depth_to_m:.6f}",
                     "thickness_mm": f"{(r.depth_to_m - r.depth_from_m) * 1000:.6f}", "type": r.type,
                     "score": f"{0.95 - 0.1 * i:.6f}", "row_from": f"{r.row_from:.2f}", "row_to": f"{r.row_to:.2f}",
                     "section": r.image.split(".")[0]})
    rows.append({"image": "230.png", "depth_from_m": "127.300000", "depth_to_m": "127.302000",
                 "thickness_mm": "2.000000", "type": "melt_layer", "score": "0.310000", "row_from": "", "row_to": "",
                 "section": "230"})
    table = pd.DataFrame(rows)
    table.to_csv(path, index=False)
    return table


@pytest.fixture()
def review(core, tmp_path):
    """A session, its app and a test client; the tile cache in tmp_path."""
    from fastapi.testclient import TestClient

    from meltloc.review.app import create_app
    from meltloc.review.session import ReviewSession

    det = tmp_path / "det.csv"
    table = write_detections(core, det)

    def make(**kw):
        session = ReviewSession(det, [core / "images"], core / "sections.tab", cache_dir=tmp_path / "cache", **kw)
        client = TestClient(create_app(session, prefetch=False), base_url="http://127.0.0.1")
        return session, client

    session, client = make()
    return {"det": det, "table": table, "session": session, "client": client, "make": make, "tmp": tmp_path}


def read_decisions(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def test_decisions_file_starts_as_the_detections_with_review_columns(review):
    path = review["det"].with_name("det.review.csv")
    assert review["session"].store.path == path
    with open(path, encoding="utf-8") as f:
        header = next(csv.reader(f))
    assert header == DETECT_COLUMNS + ["section", "status", "note", "reviewed_at"]
    rows = read_decisions(path)
    assert len(rows) == len(review["table"])
    assert {r["status"] for r in rows} == {"unreviewed"}
    assert [r["depth_from_m"] for r in rows] == list(review["table"]["depth_from_m"])  # text kept as written


def test_every_decision_is_in_the_file_at_once_and_a_restart_continues(review):
    client, path = review["client"], review["det"].with_name("det.review.csv")
    sec = client.get("/api/sections/227.png").json()
    first, second = sec["detections"][0], sec["detections"][1]
    r = client.post(f"/api/decisions/{first['id']}", json={"status": "accepted"})
    assert r.status_code == 200 and r.json()["counts"]["accepted"] == 1
    assert read_decisions(path)[first["id"]]["status"] == "accepted"
    assert read_decisions(path)[first["id"]]["reviewed_at"].endswith("Z")
    client.post(f"/api/decisions/{second['id']}", json={"status": "rejected", "note": "a crack"})
    new_to = round(first["depth_to_m"] + 0.0003, 6)
    r = client.post(f"/api/decisions/{first['id']}", json={"depth_to_m": new_to})
    edited = read_decisions(path)[first["id"]]
    assert edited["status"] == "edited" and float(edited["depth_to_m"]) == pytest.approx(new_to)
    assert float(edited["thickness_mm"]) == pytest.approx((new_to - first["depth_from_m"]) * 1000, abs=1e-4)
    assert float(edited["row_to"]) > first["row_to"]  # rows follow the new depth through the section's scale
    r = client.post("/api/decisions", json={"image": "227.png", "depth_from_m": 124.5, "depth_to_m": 124.5021})
    assert r.status_code == 200
    added = read_decisions(path)[-1]
    assert added["status"] == "added" and added["image"] == "227.png" and added["type"] == "melt_layer"
    assert float(added["thickness_mm"]) == pytest.approx(2.1, abs=1e-3) and added["row_from"] != ""

    # A new server on the same file (after a kill) continues where the last one stopped.
    _, client2 = review["make"]()
    statuses = {d["id"]: d["status"] for d in client2.get("/api/sections/227.png").json()["detections"]}
    assert statuses[first["id"]] == "edited" and statuses[second["id"]] == "rejected"
    assert "added" in statuses.values()
    counts = {c["image"]: c for c in client2.get("/api/sections").json()["sections"]}
    assert counts["227.png"]["added"] == 1 and counts["227.png"]["rejected"] == 1


def test_undo_puts_a_row_back_as_it_was(review):
    client, path = review["client"], review["det"].with_name("det.review.csv")
    before = read_decisions(path)[0]
    d = client.get("/api/sections/227.png").json()["detections"][0]
    client.post(f"/api/decisions/{d['id']}", json={"depth_from_m": d["depth_from_m"] - 0.0001})
    client.post(f"/api/decisions/{d['id']}", json={"type": "melt_lens"})
    # The page's undo sends the row's earlier state.
    client.post(f"/api/decisions/{d['id']}", json={"status": "unreviewed", "type": d["type"], "note": "",
                                                   "depth_from_m": d["depth_from_m"], "depth_to_m": d["depth_to_m"]})
    after = read_decisions(path)[0]
    assert after["status"] == "unreviewed" and after["reviewed_at"] == ""
    assert float(after["depth_from_m"]) == pytest.approx(float(before["depth_from_m"]), abs=1e-7)
    assert after["type"] == before["type"]


def test_two_tabs_at_once_do_not_corrupt_the_file(review):
    client, path, n = review["client"], review["det"].with_name("det.review.csv"), len(review["table"])
    errors = []

    def tab(k):
        try:
            for i in range(n):
                status = "accepted" if (i + k) % 2 else "rejected"
                assert client.post(f"/api/decisions/{i}", json={"status": status}).status_code == 200
            assert client.post("/api/decisions", json={"image": "230.png", "depth_from_m": 126.3 + k / 100,
                                                       "depth_to_m": 126.302 + k / 100}).status_code == 200
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=tab, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    rows = read_decisions(path)
    assert len(rows) == n + 4
    assert all(r["status"] in ("accepted", "rejected") for r in rows[:n])
    assert sorted(float(r["depth_from_m"]) for r in rows[n:]) == pytest.approx([126.3, 126.31, 126.32, 126.33])
    assert not list(path.parent.glob(".det.review.*.tmp*"))  # no temporary file left


def test_two_servers_on_one_file_keep_each_others_decisions(review):
    from meltloc.review.store import DecisionStore

    path = review["det"].with_name("det.review.csv")
    a = DecisionStore(review["det"], path)
    b = DecisionStore(review["det"], path)
    a.update(0, status="accepted")
    b.update(1, status="rejected")
    a.add("227.png", 124.6, 124.601)
    b.add("230.png", 126.6, 126.601)
    a.update(2, status="accepted")
    rows = read_decisions(path)
    assert [r["status"] for r in rows[:3]] == ["accepted", "rejected", "accepted"]
    assert [r["status"] for r in rows[-2:]] == ["added", "added"]


def test_a_decisions_file_from_other_detections_is_refused(review, tmp_path):
    from meltloc.review.store import DecisionStore, ReviewError

    other = tmp_path / "other.csv"
    review["table"].iloc[:2].to_csv(other, index=False)
    with pytest.raises(ReviewError, match="other detections"):
        DecisionStore(other, review["det"].with_name("det.review.csv"))
    with pytest.raises(ReviewError, match="missing"):
        bad = tmp_path / "bad.csv"
        bad.write_text("image,score\n227.png,0.5\n")
        DecisionStore(bad)


def test_export_keeps_accepted_edited_and_added_features_in_the_log_format(review, core):
    from meltloc.labels import read_labels

    client, tmp = review["client"], review["tmp"]
    dets = client.get("/api/sections/227.png").json()["detections"]
    layer = next(d for d in dets if d["type"] == "melt_layer")
    lens = next(d for d in dets if d["type"] == "melt_lens")
    rejected = next(d for d in dets if d["type"] == "melt_layer" and d["id"] != layer["id"])
    client.post(f"/api/decisions/{layer['id']}", json={"status": "accepted"})
    client.post(f"/api/decisions/{lens['id']}", json={"status": "accepted"})
    client.post(f"/api/decisions/{rejected['id']}", json={"status": "rejected"})
    client.post("/api/decisions", json={"image": "230.png", "depth_from_m": 127.5, "depth_to_m": 127.503})
    r = client.get("/api/export.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    (tmp / "web.csv").write_bytes(r.content)
    log = pd.read_csv(tmp / "web.csv")
    assert list(log.columns) == ["bag", "depth from", "depth to", "age (b2k)", "age (CE)", "type of feature"]
    assert list(log["type of feature"]) == ["meltLayer", "meltLens", "meltLayer"] or \
        sorted(log["type of feature"]) == ["meltLayer", "meltLayer", "meltLens"]
    lens_row = log[log["type of feature"] == "meltLens"].iloc[0]
    assert lens_row["depth from"] == lens_row["depth to"]  # a lens is a point, as in the real log
    assert lens_row["depth from"] == pytest.approx((lens["depth_from_m"] + lens["depth_to_m"]) / 2, abs=1e-4)
    assert rejected["depth_from_m"] not in list(log["depth from"])
    added = log[log["depth from"] == 127.5].iloc[0]
    assert added["bag"] == 232  # section 230 spans bags 230-232: 127.5 m is in the third
    xlsx = client.get("/api/export.xlsx")
    assert xlsx.status_code == 200 and xlsx.content[:2] == b"PK"
    (tmp / "web.xlsx").write_bytes(xlsx.content)
    back = read_labels(tmp / "web.xlsx")
    assert not back.problems and len(back.table) == 3

    # The same through the command line, then convert reads the log back.
    out = tmp / "log.xlsx"
    r = run_cli("review", review["det"], "--sections", core / "sections.tab", "--labels", core / "features.csv",
                "--export", out)
    assert r.returncode == 0, r.stderr
    assert "2 melt layer(s) and 1 lens(es)" in r.stderr
    ages = pd.read_excel(out)["age (b2k)"]
    assert ages.notna().all()  # interpolated from the hand log's depth/age pairs
    r = run_cli("review", review["det"], "--export", out)
    assert r.returncode == 2 and "--overwrite" in r.stderr
    r = run_cli("review", review["det"], "--export", review["det"])
    assert r.returncode == 2 and "one of the inputs" in r.stderr
    fresh = tmp / "fresh.csv"
    review["table"].to_csv(fresh, index=False)
    r = run_cli("review", fresh, "--export", tmp / "none.csv")
    assert r.returncode == 2 and "review the detections first" in r.stderr and not (tmp / "none.csv").exists()
    assert not (tmp / "fresh.review.csv").exists()
    r = run_cli("convert", "--images", core / "images", "--sections", core / "sections.tab", "--labels", out,
                "--out", tmp / "conv", "--px-per-mm", 4, "--quiet")
    assert r.returncode == 0, r.stderr
    intervals = pd.read_csv(tmp / "conv" / "intervals.csv")
    assert sorted(intervals["type"]) == ["melt_layer", "melt_layer", "melt_lens"]


def test_hand_log_is_aligned_like_convert_and_truth_is_drawn(core, tmp_path):
    from fastapi.testclient import TestClient

    from meltloc.review.app import create_app
    from meltloc.review.session import ReviewSession

    det = tmp_path / "det.csv"
    write_detections(core, det)
    session = ReviewSession(det, [core / "images"], core / "sections.tab", labels=core / "features.csv",
                            truth=core / "truth.csv", cache_dir=tmp_path / "cache")
    sec = TestClient(create_app(session, prefetch=False), base_url="http://127.0.0.1").get(
        "/api/sections/230.png").json()
    truth = pd.read_csv(core / "truth.csv")
    true_layers = truth[(truth["image"] == "230.png") & (truth["type"] == "melt_layer")]
    # (layers within the search range of the section's ends may belong to the next one, as in convert)
    logged = [f for f in sec["labels"] if f["type"] == "melt_layer" and f["depth_from_m"] > sec["top_m"] + 0.015]
    assert sec["alignment"]["confidence"] > 0.5 and logged
    for f in logged:  # every aligned log layer lands on a true layer (the log is misaligned by ~10 mm)
        assert (abs(true_layers["depth_from_m"] - f["depth_from_m"]) < 0.0005).any()
    shown = truth[(truth["image"] == "230.png") & truth["type"].isin(["melt_layer", "melt_lens", "uncertain", "bubble_free"])]
    assert len(sec["truth"]) == len(shown) > 0


def test_tiles_are_crops_cached_on_disk(review, monkeypatch):
    import cv2
    import numpy as np

    client, tmp = review["client"], review["tmp"]
    sec = client.get("/api/sections/227.png").json()
    meta = sec["meta"]
    assert meta["levels"][0]["cols"] == meta["col1"] - meta["col0"] < meta["width"]  # the core's columns only
    r = client.get("/api/tiles/227.png/0/1.jpg")
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    tile = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert tile.shape == (meta["tile_rows"], meta["levels"][0]["cols"])
    assert list((tmp / "cache").glob("*/meta.json")) and list((tmp / "cache").glob("*/z0/0.jpg"))
    # A new server serves the cached section without decoding the image again.
    import meltloc.review.tiles as tiles

    monkeypatch.setattr(tiles, "read_image", lambda path: pytest.fail("decoded again"))
    _, client2 = review["make"]()
    assert client2.get("/api/sections/227.png").status_code == 200
    assert client2.get(f"/api/tiles/227.png/{len(meta['levels']) - 1}/0.jpg").status_code == 200


def test_no_file_outside_the_image_folders_can_be_read(review, core, tmp_path):
    client = review["client"]
    for url in ["/api/tiles/..%2F..%2Fetc%2Fpasswd/0/0.jpg", "/api/tiles/%2Fetc%2Fpasswd/0/0.jpg",
                "/api/sections/..%2Fsections.tab", "/api/sections/%2Fetc%2Fpasswd", "/static/..%2F..%2Fcli.py",
                "/static/../store.py", "/api/tiles/227.png/0/999.jpg", "/api/tiles/227.png/-1/0.jpg",
                "/api/tiles/nosuch.png/0/0.jpg"]:
        r = client.get(url)
        assert r.status_code in (400, 404), url
        assert "passwd" not in r.text and "def " not in r.text
    # A link inside an image folder that points out of it is refused.
    from meltloc.review.session import ReviewSession

    images = tmp_path / "images"
    images.mkdir()
    secret = tmp_path / "outside" / "230.png"
    secret.parent.mkdir()
    secret.write_bytes((core / "images" / "230.png").read_bytes())
    os.symlink(secret, images / "230.png")
    session = ReviewSession(review["det"], [images], core / "sections.tab", cache_dir=tmp_path / "c2",
                            decisions=tmp_path / "d.csv")
    from fastapi.testclient import TestClient

    from meltloc.review.app import create_app

    c = TestClient(create_app(session, prefetch=False), base_url="http://127.0.0.1")
    r = c.get("/api/sections/230.png")
    assert r.status_code == 404 and "outside the image folders" in r.json()["detail"]
    assert c.get("/api/tiles/230.png/0/0.jpg").status_code == 404


def test_bad_requests_get_a_4xx_and_never_a_traceback(review):
    client = review["client"]
    n = len(review["table"])
    cases = [
        ("post", f"/api/decisions/{n + 50}", {"status": "accepted"}, 400),
        ("post", "/api/decisions/0", {"status": "maybe"}, 422),
        ("post", "/api/decisions/0", {"type": "crack"}, 422),
        ("post", "/api/decisions/0", {"depth_from_m": "deep"}, 422),
        ("post", "/api/decisions/0", {"unknown": 1}, 422),
        ("post", "/api/decisions/0", {"status": "added"}, 400),
        ("post", "/api/decisions/x", {"status": "accepted"}, 422),
        ("post", "/api/decisions", {"image": "227.png", "depth_from_m": 124.6, "depth_to_m": 124.5}, 400),
        ("post", "/api/decisions", {"image": "227.png", "depth_from_m": 10.0, "depth_to_m": 10.1}, 400),
        ("post", "/api/decisions", {"image": "nosuch.png", "depth_from_m": 124.5, "depth_to_m": 124.6}, 404),
        ("post", "/api/decisions", {"image": "227.png"}, 422),
        ("get", "/api/export.pdf", None, 404),
        ("get", "/api/tiles/227.png/a/0.jpg", None, 422),
        ("get", "/api/nothing", None, 404),
    ]
    for method, url, body, code in cases:
        r = client.post(url, json=body) if method == "post" else client.get(url)
        assert r.status_code == code, (url, body, r.status_code, r.text)
        assert "detail" in r.json() and "Traceback" not in r.text
    r = client.post("/api/decisions/0", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "Traceback" not in r.text
    r = client.post("/api/decisions/0", content=b"status=accepted",
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 422  # a form posted from another web page is not a decision
    r = client.post("/api/decisions/0", content=b'{"depth_from_m": NaN}', headers={"content-type": "application/json"})
    assert r.status_code == 422
    assert client.get("/api/sections", headers={"host": "evil.example"}).status_code == 400  # DNS rebinding
    assert {r["status"] for r in read_decisions(review["det"].with_name("det.review.csv"))} == {"unreviewed"}


def test_the_server_listens_on_loopback_only_unless_asked(review, core):
    import socket

    from meltloc.review.server import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    r = run_cli("review", "--help")
    assert r.returncode == 0 and "127.0.0.1" in r.stdout
    # Another address is an explicit choice with a warning; a port in use is one line, not a traceback.
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = run_cli("review", review["det"], "--images", core / "images", "--sections", core / "sections.tab",
                    "--host", "0.0.0.0", "--port", port, "--no-browser", "--cache", review["tmp"] / "c")
    assert r.returncode == 2
    assert "anyone who can reach this machine" in r.stderr and "in use" in r.stderr
    assert "Traceback" not in r.stderr


def test_review_alone_serves_the_shipped_sample_without_writing_into_it(tmp_path):
    import json
    import socket
    import subprocess
    import sys
    import time
    import urllib.request

    sample = Path(__file__).resolve().parents[1] / "datasets" / "sample"
    before = {p: p.stat().st_mtime_ns for p in sample.rglob("*")}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve().parents[1] / "cli.py"), "review",
                             "--no-browser", "--port", str(port), "--cache", str(tmp_path / "cache")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        end, listing = time.time() + 120, None
        while time.time() < end and listing is None:
            assert proc.poll() is None, proc.stdout.read()
            try:
                listing = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/sections", timeout=5).read())
            except OSError:
                time.sleep(0.2)
        assert listing is not None, "the server did not answer"
        assert [s["image"] for s in listing["sections"]] == ["227.png", "230.png", "233.png"]
        assert listing["rows"] > 0 and listing["has_labels"] and listing["has_truth"]
        assert Path(listing["decisions"]).is_relative_to(tmp_path / "cache")  # not in datasets/sample
        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
        assert "/static/review.js" in page and "http" not in page.replace("http-equiv", "")  # nothing from the network
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    assert {p: p.stat().st_mtime_ns for p in sample.rglob("*")} == before


def test_a_dim_16_bit_scan_is_shown_brightened_as_its_strips_are(tmp_path):
    # The sample scan written dim into a 16-bit file (3 of 65,535 per 8-bit level, a bright scratch across it): the
    # review page's tiles show its ice, not a black picture (about 1 level of 255 before).
    import cv2
    import numpy as np

    from meltloc.geometry import find_core
    from meltloc.review.tiles import build_pyramid

    sample = Path(__file__).resolve().parents[1] / "datasets" / "sample" / "images" / "227.png"
    original = cv2.imread(str(sample), cv2.IMREAD_UNCHANGED)
    dim = original.astype(np.uint16) * 3
    dim[dim.shape[0] // 2] = 65_535
    bounds = find_core(dim)
    build_pyramid(dim, bounds, tmp_path / "dim")
    tile = cv2.imread(str(tmp_path / "dim" / "z0" / "1.jpg"), cv2.IMREAD_GRAYSCALE)
    assert np.median(tile) >= 10
