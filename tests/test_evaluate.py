"""`meltloc evaluate`: files in, figures out (tables, JSON, CSV), one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
from typer.testing import CliRunner

from meltloc.cli import app
from meltloc.errors import EvaluationError
from meltloc.evaluate import evaluate_files
from meltloc.metrics import METRIC_DESCRIPTIONS, metric_keys

runner = CliRunner()

PRED_COLUMNS = ["image", "depth_from_m", "depth_to_m", "thickness_mm", "type", "score", "row_from", "row_to"]


def _pred(rows: list[tuple]) -> pd.DataFrame:
    """Detections from (image, type, from_m, to_m, score[, row_from, row_to])."""
    recs = []
    for r in rows:
        image, kind, a, b, score = r[:5]
        row_from, row_to = r[5:7] if len(r) > 5 else (1.0, 2.0)
        recs.append({"image": image, "depth_from_m": a, "depth_to_m": b,
                     "thickness_mm": None if a is None else (b - a) * 1000, "type": kind, "score": score,
                     "row_from": row_from, "row_to": row_to})
    return pd.DataFrame(recs, columns=PRED_COLUMNS)


def _intervals(rows: list[tuple]) -> pd.DataFrame:
    """intervals.csv from (image, type, from_m, to_m, split); rows at 100 px per mm from 124.3 m."""
    recs = [{"image": i, "type": t, "depth_from_m": a, "depth_to_m": b, "row_from": (a - 124.3) * 1e5,
             "row_to": (b - 124.3) * 1e5, "split": s} for i, t, a, b, s in rows]
    return pd.DataFrame(recs)


TRUTH_ROWS = [
    ("227.bmp", "melt_layer", 124.500, 124.506, "test"),
    ("227.bmp", "melt_layer", 125.100, 125.104, "test"),
    ("227.bmp", "melt_lens", 124.900, 124.900, "test"),
    ("227.bmp", "uncertain", 125.300, 125.300, "test"),
    ("230.bmp", "melt_layer", 126.100, 126.105, "train"),
]


@pytest.fixture
def files(tmp_path):
    """A truth intervals.csv and detections: one hit, one shifted hit, a lens, a stray, an ignored one."""
    truth = tmp_path / "intervals.csv"
    _intervals(TRUTH_ROWS).to_csv(truth, index=False)
    pred = tmp_path / "detections.csv"
    _pred([
        ("227.bmp", "melt_layer", 124.500, 124.506, 0.9),
        ("227.bmp", "melt_layer", 125.101, 125.105, 0.8),   # 1 mm low: IoU 0.6, boundary 1 mm
        ("227.bmp", "melt_lens", 124.902, 124.902, 0.7),
        ("227.bmp", "melt_layer", 125.302, 125.303, 0.6),   # on the uncertain point: ignored
        ("227.bmp", "melt_layer", 124.700, 124.702, 0.5),   # a false positive
        ("230.bmp", "melt_layer", 126.100, 126.105, 0.4),
    ]).to_csv(pred, index=False)
    return pred, truth


def test_cli_prints_and_writes_the_figures(files, tmp_path):
    pred, truth = files
    out_json, out_csv = tmp_path / "m.json", tmp_path / "m.csv"
    res = runner.invoke(app, ["evaluate", "--pred", str(pred), "--truth", str(truth),
                              "--json", str(out_json), "--csv", str(out_csv)])
    assert res.exit_code == 0, res.output
    assert "F1" in res.output and "227.bmp" in res.output and "230.bmp" in res.output
    figures = json.loads(out_json.read_text())
    o = figures["overall"]
    assert (o["n_truth"], o["n_pred"], o["tp"], o["fp"], o["fn"], o["n_ignored"]) == (3, 5, 3, 1, 0, 1)
    assert o["precision"] == pytest.approx(0.75) and o["recall"] == 1.0
    assert o["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1))
    assert o["boundary_mm"] == pytest.approx(1 / 3, abs=1e-6)
    assert o["lens_hit_rate"] == 1.0 and o["ap@0.7"] < o["ap@0.5"]
    assert [r["image"] for r in figures["per_image"]] == ["227.bmp", "230.bmp"]
    assert figures["settings"]["iou"] == 0.5
    table = pd.read_csv(out_csv)
    assert list(table["scope"]) == ["overall", "image", "image"]
    assert table.loc[0, "tp"] == 3 and table.loc[2, "f1"] == 1.0


def test_iou_and_lens_tolerance_options(files, tmp_path):
    pred, truth = files
    out = tmp_path / "m.json"
    res = runner.invoke(app, ["evaluate", "--pred", str(pred), "--truth", str(truth), "--iou", "0.7",
                              "--lens-tol-mm", "1", "--ap-points", "101", "--json", str(out)])
    assert res.exit_code == 0, res.output
    o = json.loads(out.read_text())["overall"]
    assert o["tp"] == 2 and o["fn"] == 1  # the 1 mm shifted layer (IoU 0.6) no longer matches
    assert o["lens_hit_rate"] == 0.0
    assert json.loads(out.read_text())["settings"]["ap_points"] == "101"


def test_split_restricts_to_one_split(files, tmp_path):
    pred, truth = files
    result = evaluate_files(pred, truth, split="train")
    assert list(result.per_image["image"]) == ["230.bmp"]
    assert result.overall["f1"] == 1.0
    with pytest.raises(EvaluationError, match="no row of split 'val'"):
        evaluate_files(pred, truth, split="val")


def test_split_knows_featureless_images_from_strips_csv(files, tmp_path):
    pred, truth = files
    extra = tmp_path / "extra.csv"
    pd.concat([pd.read_csv(pred), _pred([("233.bmp", "melt_layer", 127.7, 127.702, 0.3)])]).to_csv(extra, index=False)
    unknown = evaluate_files(extra, truth, split="test")
    assert list(unknown.per_image["image"]) == ["227.bmp"]
    assert any(p.kind == "eval_unknown_split" and "233.bmp" in p.message for p in unknown.problems)
    pd.DataFrame({"image": ["227.bmp", "230.bmp", "233.bmp"], "split": ["test", "train", "test"]}).to_csv(
        tmp_path / "strips.csv", index=False)
    known = evaluate_files(extra, truth, split="test")
    assert list(known.per_image["image"]) == ["227.bmp", "233.bmp"]
    assert known.overall["fp"] == unknown.overall["fp"] + 1


def test_images_option_restricts(files):
    pred, truth = files
    result = evaluate_files(pred, truth, images=["230"])
    assert list(result.per_image["image"]) == ["230.bmp"]


def test_image_names_match_by_stem_and_path(files, tmp_path):
    pred, truth = files
    table = pd.read_csv(pred)
    table["image"] = table["image"].str.replace("227.bmp", "scans/227.png")
    renamed = tmp_path / "renamed.csv"
    table.to_csv(renamed, index=False)
    result = evaluate_files(renamed, truth)
    assert list(result.per_image["image"]) == ["227.bmp", "230.bmp"] and result.overall["tp"] == 3


def test_missing_column_is_a_one_line_error_with_exit_code_2(files, tmp_path):
    pred, truth = files
    bad = tmp_path / "bad.csv"
    pd.read_csv(pred).drop(columns=["score", "type"]).to_csv(bad, index=False)
    proc = subprocess.run([sys.executable, "-m", "meltloc.cli", "evaluate", "--pred", str(bad), "--truth", str(truth)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "bad.csv" in lines[0] and "type" in lines[0] and "score" in lines[0]
    assert "Traceback" not in proc.stderr


def test_missing_truth_column_names_the_file(files, tmp_path):
    pred, _ = files
    bad = tmp_path / "truth_bad.csv"
    _intervals(TRUTH_ROWS).drop(columns=["depth_to_m"]).to_csv(bad, index=False)
    with pytest.raises(EvaluationError, match=r"truth_bad\.csv: column\(s\) depth_to_m missing"):
        evaluate_files(pred, bad)


def test_help_explains_every_figure():
    res = runner.invoke(app, ["evaluate", "--help"], terminal_width=200)
    assert res.exit_code == 0
    for key in METRIC_DESCRIPTIONS:
        assert key.split("@")[0] in res.output, key
    for key in metric_keys():
        family = key.replace("lt1mm", "<bin>").replace("1to3mm", "<bin>").replace("3to10mm", "<bin>")
        family = family.replace("gt10mm", "<bin>")
        assert family.startswith("ap@") or family in METRIC_DESCRIPTIONS, key
        assert family.split("@")[0] in res.output, key
    for option in ("--iou", "--lens-tol-mm", "--ap-points", "--json", "--csv", "--sections", "--alignment", "--split"):
        assert option in res.output


# --------------------------------------------------------------------------- rows instead of depths


def test_detections_without_depths_fall_back_to_rows(tmp_path):
    truth = tmp_path / "intervals.csv"
    _intervals(TRUTH_ROWS).to_csv(truth, index=False)
    pred = tmp_path / "rows.csv"
    # rows of 124.500-124.506 and 125.100-125.104 at 100 px/mm from 124.3 m
    _pred([("227.bmp", "melt_layer", None, None, 0.9, 20000.0, 20600.0),
           ("227.bmp", "melt_layer", None, None, 0.8, 80000.0, 80400.0),
           ("230.bmp", "melt_layer", 126.100, 126.105, 0.4)]).to_csv(pred, index=False)
    result = evaluate_files(pred, truth)
    assert result.overall["tp"] == 3 and result.overall["boundary_mm"] == pytest.approx(0.0, abs=1e-4)
    assert any(p.kind == "eval_rows_used" for p in result.problems)


def test_detections_without_depths_and_truth_without_rows_skip_the_image(tmp_path):
    truth = tmp_path / "intervals.csv"
    _intervals(TRUTH_ROWS).drop(columns=["row_from", "row_to"]).to_csv(truth, index=False)
    pred = tmp_path / "rows.csv"
    _pred([("227.bmp", "melt_layer", None, None, 0.9, 20000.0, 20600.0),
           ("230.bmp", "melt_layer", 126.100, 126.105, 0.4)]).to_csv(pred, index=False)
    result = evaluate_files(pred, truth)
    assert list(result.per_image["image"]) == ["230.bmp"]
    assert any(p.kind == "eval_image_skipped" and "227.bmp" in p.message for p in result.problems)


# --------------------------------------------------------------------------- label tables


LABELS = """bag,depth from,depth to,age (b2k),age (CE),type of feature
227,124.4950,124.5010,900.0,1100.0,meltLayer
229,125.0950,125.0990,901.0,1099.0,meltLayer
228,124.8950,124.8950,900.5,1099.5,meltLens
NaN,125.2950,NaN,901.5,1098.5,meltLayer uncertain
230,126.0980,126.1030,902.0,1098.0,meltLayer
300,140.0000,140.0030,950.0,1050.0,meltLayer
"""


@pytest.fixture
def label_files(tmp_path, files):
    """The same core as a label table, logged 5 mm high in 227.bmp and 2 mm high in 230.bmp."""
    pred, _ = files
    labels = tmp_path / "features.csv"
    labels.write_text(LABELS)
    sections = tmp_path / "sections.csv"
    sections.write_text("image,top_m,bottom_m\n227.bmp,124.30,125.95\n230.bmp,125.95,127.60\n")
    alignment = tmp_path / "alignment.csv"
    alignment.write_text("image,shift_px,shift_mm,confidence\n227.bmp,500,5.0,0.9\n230.bmp,200,2.0,0.8\n")
    return pred, labels, sections, alignment


def test_label_table_with_sections_and_alignment(label_files, tmp_path):
    pred, labels, sections, alignment = label_files
    out = tmp_path / "m.json"
    res = runner.invoke(app, ["evaluate", "--pred", str(pred), "--truth", str(labels), "--sections", str(sections),
                              "--alignment", str(alignment), "--json", str(out)])
    assert res.exit_code == 0, res.output
    aligned = json.loads(out.read_text())
    o = aligned["overall"]
    assert (o["tp"], o["fp"], o["fn"], o["n_ignored"]) == (3, 1, 0, 1)
    assert o["boundary_mm"] == pytest.approx(1 / 3, abs=1e-6)
    assert any("outside the scored images" in w for w in aligned["warnings"])  # the label at 140 m

    unaligned = evaluate_files(pred, labels, sections=sections).overall
    assert unaligned["tp"] < o["tp"]


def test_label_table_without_sections_is_one_image_matched_by_depth(label_files):
    pred, labels, _, _ = label_files
    result = evaluate_files(pred, labels)
    assert list(result.per_image["image"]) == ["all"]
    assert result.overall["n_truth"] == 4  # every logged layer counts, also the one at 140 m
    with pytest.raises(EvaluationError, match="--alignment needs --sections"):
        evaluate_files(pred, labels, alignment=label_files[3])


def test_label_table_images_option_counts_images_without_detections(label_files, tmp_path):
    pred, labels, sections, alignment = label_files
    only_227 = tmp_path / "only227.csv"
    table = pd.read_csv(pred)
    table[table["image"] == "227.bmp"].to_csv(only_227, index=False)
    default = evaluate_files(only_227, labels, sections=sections, alignment=alignment)
    assert list(default.per_image["image"]) == ["227.bmp"]
    both = evaluate_files(only_227, labels, sections=sections, alignment=alignment, images=["227.bmp,230.bmp"])
    assert list(both.per_image["image"]) == ["227.bmp", "230.bmp"] and both.overall["fn"] == 1


def test_synthetic_core_labels_aligned_by_the_true_offsets_score_well(tiny_core, tmp_path):
    """synth's truth.csv against itself is perfect; its misaligned label table scores better once aligned."""
    truth = pd.read_csv(tiny_core / "truth.csv")
    pred = truth[truth["type"].isin(["melt_layer", "melt_lens"])].assign(score=0.9)
    pred_path = tmp_path / "pred.csv"
    pred.to_csv(pred_path, index=False)
    self_score = evaluate_files(pred_path, tiny_core / "truth.csv").overall
    assert self_score["f1"] == 1.0 and self_score["map"] == 1.0 and self_score["boundary_mm"] == 0.0

    offsets = pd.read_csv(tiny_core / "truth_sections.csv")
    alignment = tmp_path / "alignment.csv"
    offsets.assign(shift_px=0, shift_mm=offsets["offset_mm"], confidence=1.0)[
        ["image", "shift_px", "shift_mm", "confidence"]].to_csv(alignment, index=False)
    labels, sections = tiny_core / "features.csv", tiny_core / "sections.tab"
    raw = evaluate_files(pred_path, labels, sections=sections).overall
    aligned = evaluate_files(pred_path, labels, sections=sections, alignment=alignment).overall
    assert aligned["f1"] >= raw["f1"] and aligned["boundary_mm"] < raw["boundary_mm"]
    assert aligned["recall"] >= 0.8
