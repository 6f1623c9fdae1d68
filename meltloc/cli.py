"""The ``meltloc`` command line: parses arguments and calls the library, nothing more.

Library errors (:class:`~meltloc.errors.MeltlocError`) become one line on
stderr and exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from meltloc import __version__
from meltloc import heads as _heads  # the registry: names, help texts and options (imports no torch)
from meltloc.atomic import check_output, ensure_writable, output_folder
from meltloc.errors import MeltlocError
from meltloc.interrupt import Terminated, handling_signals
from meltloc.shipped import (DEFAULT_WEIGHTS, END_REFINER_WEIGHTS, SAMPLE_AGE_SCALE, SAMPLE_IMAGES, SAMPLE_LOG,
                             SAMPLE_SECTIONS, SAMPLE_TRUTH, YOLO_WEIGHTS, end_refiner_file)

app = typer.Typer(
    name="meltloc",
    help="Find melt layers in ice-core line-scan images and report them as depth intervals in meters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True, soft_wrap=True)  # log lines are never wrapped (paths stay whole)
_state = {"debug": False}


def fail(message: str, code: int = 2) -> None:
    """Print one error line and exit."""
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _not_yet(command: str, issue: int) -> None:
    fail(f"'meltloc {command}' is not available yet: it is planned in issue #{issue}.", code=3)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"meltloc {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    debug: bool = typer.Option(False, "--debug", help="Show full tracebacks instead of one-line errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    _state["debug"] = debug


@app.command()
def synth(
    out: Path = typer.Argument(..., help="Output folder (created): images/, sections.tab, sections.csv, features.csv, truth.csv."),
    sections: int = typer.Option(3, "--sections", "-n", min=1, help="Number of consecutive 1.65 m sections."),
    px_per_cm: float = typer.Option(186.0, "--px-per-cm", min=2.0, help="Scan resolution; the EastGRIP scanner has 186 px/cm."),
    seed: int = typer.Option(0, "--seed", help="Random seed; the same seed gives the same bytes."),
    first_bag: int = typer.Option(227, "--first-bag", min=26, help="Bag number of the first section (bag = 26 + 3k; 227 is at 124.30 m)."),
    image_format: str = typer.Option("png", "--format", help="Image format: png, bmp or tif."),
    max_offset_mm: float = typer.Option(10.0, "--max-offset-mm", min=0.0, help="Largest label misalignment per section, in mm."),
    style: str = typer.Option("wide", "--style", help="Look of the sections: wide (varied: faint to black, sharp to diffuse, tilted layers, varied cameras), hard (the hard end of every range; our hard test set) or classic (the first round's single look)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier synth output in OUT (a folder with other files is always refused)."),
) -> None:
    """Write a synthetic EastGRIP-like core: images, manifest, misaligned label table and the truth."""
    from meltloc.synth import SynthConfig, write_core

    cfg = SynthConfig(px_per_cm=px_per_cm, first_bag=first_bag, image_format=image_format, max_offset_mm=max_offset_mm,
                      style=style)
    with output_folder(out, "synth", settings={"sections": sections, "seed": seed, "config": repr(cfg)},
                       overwrite=overwrite):
        summary = write_core(out, n_sections=sections, seed=seed, config=cfg, show_progress=True)
    console.print(summary, highlight=False)


@app.command()
def convert(
    images: Path = typer.Option(..., "--images", help="Folder of section images."),
    sections: Path = typer.Option(..., "--sections", help="Section manifest: PANGAEA .tab or CSV image,top_m,bottom_m."),
    labels: Path = typer.Option(..., "--labels", help="Label table (CSV, TSV or XLSX) in the published melt-log format."),
    out: Path = typer.Option(..., "--out", help="Output folder for alignment, intervals and datasets."),
    exposure: Optional[List[str]] = typer.Option(None, "--exposure", help="Only images of this exposure (dark, bright, additional-2, ...); repeat for several. Default: every image."),
    search_mm: float = typer.Option(15.0, "--search-mm", min=0.5, help="Label shifts tried: +/- this many mm."),
    val: float = typer.Option(0.15, "--val", min=0.0, max=0.9, help="Fraction of the sections in the val split."),
    test: float = typer.Option(0.15, "--test", min=0.0, max=0.9, help="Fraction of the sections in the test split."),
    seed: int = typer.Option(0, "--seed", help="Split seed."),
    splits: Optional[Path] = typer.Option(None, "--splits", help="CSV with columns image (or section) and split; fixes the splits."),
    px_per_mm: float = typer.Option(10.0, "--px-per-mm", min=1.0, help="Strip rows per mm of core (the working scale)."),
    strip_width: int = typer.Option(64, "--strip-width", min=8, help="Strip columns."),
    tile_rows: int = typer.Option(640, "--tile-rows", min=64, help="YOLO tile height in strip rows."),
    tile_overlap: float = typer.Option(0.25, "--tile-overlap", min=0.0, max=0.9, help="Fraction of a YOLO tile shared with the next."),
    min_box_rows: float = typer.Option(6.0, "--min-box-rows", min=1.0, help="Smallest YOLO box height in strip rows."),
    lens_half_mm: float = typer.Option(1.0, "--lens-half-mm", min=0.0, help="Half-height given to a lens logged as a point."),
    ignore_half_mm: float = typer.Option(5.0, "--ignore-half-mm", min=0.0, help="Half-height given to an uncertain/bubble-free entry logged as a point."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier convert output in --out (a folder with other files is always refused)."),
) -> None:
    """Align the label table to the images and write interval tables and YOLO/COCO datasets.

    Writes alignment.csv, intervals.csv, strips/ + strips.csv, yolo/ (data.yaml),
    coco/{train,val,test}.json and warnings.csv into --out.
    """
    from meltloc.alignment import AlignConfig
    from meltloc.convert import ConvertConfig, convert as run_convert
    from meltloc.formats_yolo import TileConfig

    if val + test >= 1:
        fail(f"--val {val} and --test {test} leave no section for training: keep their sum below 1")
    config = ConvertConfig(px_per_mm=px_per_mm, strip_width=strip_width, val=val, test=test, seed=seed,
                           splits_file=splits, exposures=list(exposure) if exposure else None,
                           lens_half_mm=lens_half_mm, ignore_half_mm=ignore_half_mm,
                           align=AlignConfig(search_mm=search_mm),
                           tiles=TileConfig(rows=tile_rows, overlap=tile_overlap, min_box_rows=min_box_rows))
    from meltloc.checkpoint import plain

    with output_folder(out, "convert", inputs=(images, sections, labels, splits), overwrite=overwrite,
                       settings=plain({"images": str(images.resolve()), "sections": str(sections.resolve()),
                                       "labels": str(labels.resolve()), "config": config})):
        result = run_convert(images, sections, labels, out, config, show_progress=not quiet)
    for line in result.summary():
        console.print(line, highlight=False, soft_wrap=True)
    warn(result.warning_lines())


TRUST_HELP = ("Load a checkpoint that holds pickled Python objects (an old meltloc file, an ultralytics .pt): "
              "such a file can run code, so only for files you trust.")


HEADS_HELP = _heads.names_text()


def _option_help(option: str) -> str:
    """Help of a ``meltloc train`` option: what it is, which heads take it and what it means for each."""
    from meltloc.heads.base import TRAIN_OPTIONS

    classes = list(dict.fromkeys(_heads.registered().values()))  # one entry per head class
    taking = [c for c in classes if option in c.train_options]
    special = [f"{'/'.join(c.names)}: {c.option_help[option]}" for c in taking if option in c.option_help]
    names = ", ".join(n for c in taking for n in c.names)
    return f"{TRAIN_OPTIONS[option]} Heads: {names}." + (" " + "; ".join(special) + "." if special else "")


@app.command()
def train(
    head: str = typer.Option(..., "--head", help=f"Which model: {HEADS_HELP}."),
    data: Path = typer.Option(..., "--data", help="A 'meltloc convert' output folder."),
    out: Path = typer.Option(..., "--out", help="Checkpoint file to write (the best epoch on the val split)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Training epochs (default: the head's own)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    device: str = typer.Option("auto", "--device", help="torch device: auto (CUDA when present, else CPU), cpu, cuda or cuda:N."),
    steps_per_epoch: Optional[int] = typer.Option(None, "--steps-per-epoch", min=1, help=_option_help("steps_per_epoch")),
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help=_option_help("batch")),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue from a checkpoint written by an earlier run (<out>.last.pt, or the last.pt in the trainer's own run files)."),
    model: Optional[str] = typer.Option(None, "--model", help=_option_help("model")),
    imgsz: Optional[int] = typer.Option(None, "--imgsz", min=32, help=_option_help("imgsz")),
    runs: Optional[Path] = typer.Option(None, "--runs", help=_option_help("runs")),
    members: Optional[int] = typer.Option(None, "--members", min=1, help=_option_help("members")),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out checkpoint (e.g. the shipped weights)."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help=TRUST_HELP),
) -> None:
    """Train a localizer or a slice-classifier baseline on a convert output."""
    try:
        head_cls = _heads.head_class(head)
    except MeltlocError as exc:
        fail(exc.message)
    options = {k: v for k, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch), ("batch", batch),
                                 ("model", model), ("imgsz", imgsz), ("runs", runs), ("members", members))
               if v is not None}
    try:
        head_cls.check_options(head, options)
    except MeltlocError as exc:
        fail(exc.message)
    from meltloc.device import resolve_device

    device = resolve_device(device)
    check_output(out, inputs=(data, resume, model), overwrite=overwrite, resume=resume is not None,
                 whole_folders=True)
    last = out.with_suffix(".last.pt")
    if last.exists() and resume is None and not overwrite:
        fail(f"{last}: an earlier run of this --out left its last epoch here: continue it with --resume {last}, "
             "or pass --overwrite to start again")
    trust = _trust(trust_checkpoint)
    try:
        with trust:
            result = head_cls.train(data, out, head=head, seed=seed, device=device, resume=resume, **options)
    except (KeyboardInterrupt, Terminated):
        kept = f"the last finished epoch is kept in {last}: continue with --resume {last}" if last.exists() \
            else "no epoch had finished"
        warn([f"training stopped; {kept}"])
        raise
    console.print(result["message"], highlight=False)


def _trust(enabled: bool):
    """``--trust-checkpoint``: a context allowing pickled checkpoints, with a warning printed once."""
    from meltloc.checkpoint import trusting

    if enabled:
        warn(["--trust-checkpoint: checkpoints holding pickled Python objects will be loaded; such a file can run "
              "any code on this machine, so use it only for files you trust"])
    return trusting(enabled)


@app.command()
def detect(
    inputs: Optional[List[Path]] = typer.Argument(None, help="Images or folders (default: the shipped sample)."),
    sections: Optional[Path] = typer.Option(None, "--sections", help="Section manifest giving each image's depths (PANGAEA .tab or CSV)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help=f"Checkpoint of any head (default: the shipped regression weights, {DEFAULT_WEIGHTS}; the shipped YOLO detector: {YOLO_WEIGHTS})."),
    out: Path = typer.Option(Path("detections.csv"), "--out", help="Detected intervals: .csv, or .xlsx (a workbook). Beside it <stem>.status.csv: the status of every image."),
    overlays: Optional[Path] = typer.Option(None, "--overlays", help="Folder for one PNG per image with the detections drawn."),
    exposure: Optional[List[str]] = typer.Option(None, "--exposure", help="Only images of this exposure (dark, bright, additional-2, ...); repeat for several, or 'all'. Default: one image per section, the dark one when present, else the next by the manifest's Integration (bright, additional-2, ...)."),
    recursive: bool = typer.Option(False, "--recursive", "-r", help="Look for images in the subfolders of folders too."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run into the same --out, skipping finished images."),
    min_score: Optional[float] = typer.Option(None, "--min-score", min=0.0, max=1.0, help="Keep detections scoring at least this (default: the threshold chosen on validation)."),
    device: str = typer.Option("auto", "--device", help="torch device: auto (CUDA when present, else CPU), cpu, cuda or cuda:N."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", min=1, help="Images processed in parallel, one process and one model each (default: every core for a folder of full-scale images, one process for a few small ones)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch threads (default: all cores but one, which decodes the next image; 1 per worker with --workers)."),
    table: bool = typer.Option(False, "--table", help="Print every detection (by default only when there are at most 30)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No table of detections and no progress bar."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out (and an unfinished run's files, or earlier overlays)."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help=TRUST_HELP),
    refine_ends: bool = typer.Option(False, "--refine-ends", help="After the head, move each melt layer's two ends onto the layer's with a small 2-D network (the shipped end refiner; README, 'End refinement'): lower boundary error on our hard synthetic cores; scores are kept. Off by default."),
    end_refiner: Optional[Path] = typer.Option(None, "--end-refiner", help=f"The end refiner's weights for --refine-ends (given alone, it implies --refine-ends; default: {END_REFINER_WEIGHTS})."),
) -> None:
    """Detect melt layers and lenses; write depth intervals in meters, and the status of every image.

    With no arguments it runs on the shipped sample (datasets/sample) with the
    shipped regression weights.
    """
    from meltloc.detect import check_outputs, detect_images
    from meltloc.heads import load_detector
    from meltloc.heads.ends import load_end_refiner
    from meltloc.device import resolve_device
    from meltloc.manifest import read_manifest

    if not inputs:
        inputs = [SAMPLE_IMAGES]
        sections = sections or SAMPLE_SECTIONS
    for item in inputs:
        if str(item).lower() in ("true", "false", "yes", "no", "1", "0") and not item.exists():
            fail(f"'{item}' is no image or folder: options such as --resume and --overwrite are flags and take no "
                 "value (write --resume, not --resume true)")
    weights = weights or DEFAULT_WEIGHTS
    end_refiner = end_refiner_file(refine_ends, end_refiner)
    given = (*inputs, sections, weights, end_refiner)
    check_outputs(out, inputs=given, overwrite=overwrite, resume=resume)
    device = resolve_device(device)
    import contextlib

    drawn = contextlib.nullcontext() if overlays is None else output_folder(
        overlays, "detect --overlays", inputs=(*given, out), overwrite=overwrite, resume=resume, option="--overlays")
    try:
        with drawn:
            with _trust(trust_checkpoint):
                detector = load_detector(weights, device)
                refiner = load_end_refiner(end_refiner) if end_refiner is not None else None
                manifest = read_manifest(sections) if sections is not None else None
                summary = detect_images(list(inputs), detector, out, manifest, overlays, resume, min_score,
                                        show_progress=not quiet, threads=threads, weights=weights,
                                        overwrite=overwrite, exposures=list(exposure) if exposure else None,
                                        recursive=recursive, workers=workers, device=device, end_refiner=refiner)
    except (KeyboardInterrupt, Terminated):
        warn([f"the images finished so far are kept in {out}.partial: rerun the same command with --resume"])
        raise
    if summary.table is not None and (table or (not quiet and len(summary.table) <= 30)):
        _print_detections(summary.table)
    _print_problems(summary.problems, first=20)  # each skipped image matters: name them
    console.print(f"{summary.images} image(s) processed in {summary.seconds:.1f} s"
                  + (f" ({summary.workers} workers)" if summary.workers > 1 else "")
                  + (f", {summary.resumed} already done" if summary.resumed else "")
                  + (f", {summary.skipped} skipped" if summary.skipped else "")
                  + (f", {summary.failed} failed (could not be read or had no core)" if summary.failed else "")
                  + f": {summary.detections} detection(s) written to {out}"
                  + (" (the table: --table)" if summary.table is not None and len(summary.table) > 30
                     and not table else "")
                  + f"; the status of every image in {summary.status}"
                  + (f"; overlays in {overlays}" if overlays else ""), highlight=False, soft_wrap=True)


def _print_detections(table) -> None:
    from rich.table import Table

    shown = Table(title="melt features", show_lines=False)
    for col in ("image", "type", "depth_from_m", "depth_to_m", "thickness_mm", "score"):
        shown.add_column(col, justify="left" if col in ("image", "type") else "right")
    for rec in table.itertuples():
        cells = [rec.image, rec.type]
        for v, fmt in ((rec.depth_from_m, "{:.4f}"), (rec.depth_to_m, "{:.4f}"), (rec.thickness_mm, "{:.2f}"), (rec.score, "{:.2f}")):
            cells.append("" if v != v else fmt.format(v))
        shown.add_row(*cells)
    Console().print(shown)


def warn(lines) -> None:
    """Print warning lines on stderr, each once (never wrapped: paths stay whole in logs)."""
    seen = set()
    for line in lines:
        line = str(line)
        if line in seen:
            continue
        seen.add(line)
        console.print(f"[yellow]warning:[/] {escape(line)}", highlight=False, soft_wrap=True)


def _print_problems(problems, first: int = 1) -> None:
    """One line per problem, up to ``first`` of each kind, then how many more."""
    from meltloc.errors import problem_lines

    warn(problem_lines(problems, first=first))


@app.command()
def evaluate(
    pred: Path = typer.Option(..., "--pred", help="Detections CSV from 'meltloc detect'."),
    truth: Path = typer.Option(..., "--truth", help="intervals.csv from convert, truth.csv from synth, or a label table (CSV, TSV, XLSX)."),
    sections: Optional[Path] = typer.Option(None, "--sections", help="Section manifest placing label-table rows in images; without it a label table is one image 'all', matched by depth."),
    alignment: Optional[Path] = typer.Option(None, "--alignment", help="alignment.csv from convert: shifts label-table rows per image (needs --sections)."),
    split: Optional[str] = typer.Option(None, "--split", help="Only this split of an intervals.csv, e.g. test."),
    images: Optional[List[str]] = typer.Option(None, "--images", help="Only these images (comma-separated or repeated); with a label table also images without detections."),
    iou: float = typer.Option(0.5, "--iou", min=0.0, max=1.0, help="IoU threshold of tp/fp/fn, precision, recall, F1 and boundary errors."),
    lens_tol_mm: float = typer.Option(5.0, "--lens-tol-mm", min=0.0, help="Largest distance in mm between a predicted and a true lens for a hit."),
    ap_points: str = typer.Option("all", "--ap-points", help="AP interpolation: all (every recall step) or 101 (COCO)."),
    ignore_pad_mm: float = typer.Option(5.0, "--ignore-pad-mm", min=0.0, help="Pad in mm each side of a point-like uncertain/bubble_free region."),
    json_out: Optional[Path] = typer.Option(None, "--json", help="Write settings, overall and per-image figures and warnings as JSON."),
    csv_out: Optional[Path] = typer.Option(None, "--csv", help="Write the figures as CSV: an overall row, then one row per image."),
    per_image: bool = typer.Option(True, "--per-image/--no-per-image", help="Print the per-image table."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json or --csv file."),
) -> None:
    """Score detections against the truth: interval IoU, F1, AP, boundary error, lens hits.

    Matching is within an image, greedy by descending score, on the 1-D IoU of depth_from_m..depth_to_m.
    melt_layer and melt_lens rows are scored apart; uncertain and bubble_free truth rows are ignore regions.
    Figures, one line each (the keys of --json and --csv):

    n_truth, n_pred      true / predicted melt layers (n_pred = tp + fp + n_ignored)
    tp                   predictions matched one-to-one to a true layer at IoU >= --iou
    fp                   predictions matching no true layer and touching no ignore region
    fn                   true layers no prediction matched
    n_ignored            unmatched predictions on an ignore region: counted neither way
    precision            tp / (tp + fp)
    recall               tp / n_truth
    f1                   2 tp / (2 tp + fp + fn)
    ap@0.3 ... ap@0.7    average precision at that IoU, all images' predictions ranked by score
    map                  mean of the five APs (--ap-points all or 101)
    boundary_mm          mean |start error| and |end error| in mm over matched layers
    boundary_mm_<bin>    the same for true layers <1, 1-3, 3-10, >10 mm thick (lt1mm ... gt10mm)
    recall_<bin>         recall of the true layers in each thickness bin
    n_truth_<bin>        true layers in each thickness bin
    recall_<faint|medium|dark>   recall by darkness (fraction a layer darkens the ice: <0.4, 0.4-0.75, >=0.75), when the truth has a darkness column (synth's truth.csv)
    n_truth_<faint|medium|dark>  true layers in each darkness bin
    n_lens_truth         true melt lenses (points: interval midpoints)
    n_lens_pred          predicted melt lenses (their midpoints)
    lens_hits            predicted lenses within --lens-tol-mm of a free true lens, greedy by score
    lens_hit_rate        lens_hits / n_lens_truth
    lens_precision       lens_hits / predicted lenses not on an ignore region
    """
    from meltloc.errors import problem_lines
    from meltloc.evaluate import evaluate_files, render, save_csv, save_json

    for path, option in ((json_out, "--json"), (csv_out, "--csv")):
        if path is not None:
            check_output(path, inputs=(pred, truth, sections, alignment), overwrite=overwrite, option=option)
    result = evaluate_files(pred, truth, sections=sections, alignment=alignment, split=split, images=images,
                            iou=iou, lens_tol_mm=lens_tol_mm, ap_points=ap_points, ignore_pad_mm=ignore_pad_mm)
    warn(problem_lines(result.problems))
    out = Console()
    for table in render(result, per_image=per_image):
        out.print(table)
    if json_out is not None:
        save_json(result, json_out)
        console.print(f"wrote {json_out}", highlight=False)
    if csv_out is not None:
        save_csv(result, csv_out)
        console.print(f"wrote {csv_out}", highlight=False)


@app.command()
def compare(
    more_weights: Optional[List[Path]] = typer.Argument(None, metavar="WEIGHTS", help="More checkpoints (so that '--weights A.pt B.pt' works)."),
    data: Path = typer.Option(..., "--data", help="A 'meltloc convert' output folder: its test split is used."),
    weights: Optional[List[Path]] = typer.Option(None, "--weights", help="Checkpoints to compare, any heads: --weights A.pt B.pt ... (or repeat --weights)."),
    out: Path = typer.Option(Path("compare"), "--out", help="Report folder: compare.csv, compare.md, detections/ and PNG figures."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of the original section images (the one given to 'meltloc convert --images'); default: the paths convert recorded, if it did."),
    sections: Optional[Path] = typer.Option(None, "--sections", help="Section manifest (PANGAEA .tab or CSV); default: the depths convert recorded in strips.csv."),
    truth: Optional[Path] = typer.Option(None, "--truth", help="Interval table to score against, e.g. a synth truth.csv; default: DATA/intervals.csv (test rows)."),
    ap_min_score: float = typer.Option(0.05, "--ap-min-score", min=0.001, max=0.99, help="Score threshold of the second run that mean AP is computed from."),
    figure_image: Optional[str] = typer.Option(None, "--figure-image", help="Test image drawn in the strip figure (default: the one with most true layers)."),
    device: str = typer.Option("cpu", "--device", help="torch device of every model."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier compare report in --out (a folder with other files is always refused)."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help=TRUST_HELP),
    refine_ends: bool = typer.Option(False, "--refine-ends", help="Also score every model with its melt layers' ends moved by the end refiner (as 'meltloc detect --refine-ends'): one more row each, '<model> + ends'."),
    end_refiner: Optional[Path] = typer.Option(None, "--end-refiner", help=f"The end refiner's weights for --refine-ends (given alone, it implies --refine-ends; default: {END_REFINER_WEIGHTS})."),
) -> None:
    """Run every given model on the same test sections and write one comparison table.

    Each test section is decoded once and given to every model. F1 (IoU 0.5), boundary error, recall of layers under 1 mm and lens hit rate are taken at each model's own operating threshold (as 'meltloc detect' writes); mean AP (IoU 0.3-0.7) from a second run at --ap-min-score. Seconds per section time the detection alone (decoding is reported apart).

    Writes compare.csv, compare.md, detections/<head>.csv and three PNG figures (a test section with the truth and every model's intervals, F1 against seconds per section, recall against layer thickness).
    """
    from meltloc.compare import render_table, run_compare
    from meltloc.errors import problem_lines

    all_weights = [*(weights or []), *(more_weights or [])]
    end_refiner = end_refiner_file(refine_ends, end_refiner)
    with output_folder(out, "compare", inputs=(data, images, sections, truth, *all_weights, end_refiner),
                       overwrite=overwrite), _trust(trust_checkpoint):
        from meltloc.heads.ends import load_end_refiner

        refiner = load_end_refiner(end_refiner) if end_refiner is not None else None
        result = run_compare(data, all_weights, out, images=images, sections=sections, truth=truth,
                             ap_min_score=ap_min_score, device=device, figure_image=figure_image,
                             show_progress=not quiet, end_refiner=refiner)
    warn(problem_lines(result.problems))
    Console(width=None if sys.stdout.isatty() else 120).print(render_table(result))
    figures = [result.files[k].name for k in ("section", "speed", "thickness") if k in result.files]
    console.print(f"wrote {result.files['csv']} and {result.files['markdown'].name}"
                  + (f"; figures in {out}: {', '.join(figures)}" if figures else ""), highlight=False,
                  soft_wrap=True)


@app.command()
def demo(
    out: Path = typer.Option(Path("meltloc-demo"), "--out", help="Demo folder: core/, conv/, weights/, detections.csv, overlays/, report/."),
    sections: int = typer.Option(10, "--sections", "-n", min=4, help="Synthetic sections (1.65 m each)."),
    px_per_cm: float = typer.Option(50.0, "--px-per-cm", min=20.0, help="Their scan resolution (EastGRIP: 186; lower is faster)."),
    seed: int = typer.Option(7, "--seed", help="Seed of the core, the splits and the training."),
    head: Optional[List[str]] = typer.Option(None, "--head", help=f"Only these heads (repeat): {HEADS_HELP}. Default: every head this version has."),
    device: str = typer.Option("cpu", "--device", help="torch device."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
) -> None:
    """Run synth, convert, training of every head (short CPU settings), detect and compare on a small core.

    Finishes in minutes on a CPU and prints the comparison table; a head whose training fails is reported and left out. The figures show that everything runs end to end, not what full training reaches.
    """
    from meltloc.compare import render_table
    from meltloc.demo import DemoSettings, run_demo
    from meltloc.errors import problem_lines

    heads = tuple(head) if head else _heads.head_names()
    unknown = [h for h in heads if h not in _heads.registered()]
    if unknown:
        fail(f"unknown head '{unknown[0]}': choose {HEADS_HELP}")
    ensure_writable(out, folder=True)
    settings = DemoSettings(sections=sections, px_per_cm=px_per_cm, seed=seed, heads=heads, device=device)
    result = run_demo(out, settings, log=lambda line: console.print(line, highlight=False, soft_wrap=True),
                      show_progress=not quiet)
    report = result.compare
    warn(problem_lines(report.problems))
    Console(width=None if sys.stdout.isatty() else 120).print(render_table(report))
    figures = [str(report.files[k]) for k in ("section", "speed", "thickness") if k in report.files]
    steps = ", ".join(f"{k} {v / 60:.1f}" for k, v in result.seconds.items())
    console.print(f"demo done in {result.total_seconds / 60:.1f} min ({steps} min)", highlight=False, soft_wrap=True)
    if result.skipped:
        console.print("not compared: " + "; ".join(f"{h} ({w})" for h, w in result.skipped.items()),
                      highlight=False, soft_wrap=True)
    console.print(f"table: {report.files['csv']} and {report.files['markdown']}", highlight=False, soft_wrap=True)
    console.print("figures: " + ", ".join(figures), highlight=False, soft_wrap=True)




@app.command()
def record(
    input_path: Optional[Path] = typer.Argument(None, metavar="INPUT", help="Detections CSV, review decisions file, or melt log (CSV, TSV, XLSX). Default: the shipped sample's detections, compared with its log."),
    sections: Optional[Path] = typer.Option(None, "--sections", help="Section manifest (PANGAEA .tab or CSV): which core was imaged."),
    out: Path = typer.Option(Path("record"), "--out", help="Output folder: features.csv, record.csv, record_depth/_age.png and .svg, compare.csv, agreement.csv, compare.png."),
    age_scale: Optional[str] = typer.Option(None, "--age-scale", help="Depth-age scale (CSV, TSV, XLSX: depth in m, age in years b2k), or 'from-labels' to use a melt log's own depth/age pairs."),
    depth_column: Optional[str] = typer.Option(None, "--depth-column", help="Depth column of the age scale (default: a header like depth_m or 'Depth (m)')."),
    age_column: Optional[str] = typer.Option(None, "--age-column", help="Age column of the age scale (default: a header like age_b2k or 'GICC05 age (b2k)')."),
    bin_m: float = typer.Option(1.0, "--bin-m", min=0.0001, help="Depth bin size in m."),
    bin_years: Optional[float] = typer.Option(None, "--bin-years", min=0.001, help="Age bin size in years instead of depth bins (needs --age-scale)."),
    thinning: Optional[Path] = typer.Option(None, "--thinning", help="Thinning table (depth in m, fraction of original thickness kept): adds thickness_corrected_mm and melt_corrected_mm."),
    compare_with: Optional[Path] = typer.Option(None, "--compare", help="A second input (e.g. the hand log) built into the same bins and compared: compare.csv, agreement.csv, compare.png."),
    images: Optional[Path] = typer.Option(None, "--images", help="Folder of the section images: only those present with a core found count as imaged (default: every manifest image)."),
    alignment: Optional[Path] = typer.Option(None, "--alignment", help="alignment.csv from convert: shifts a melt-log INPUT per image as convert does."),
    compare_alignment: Optional[Path] = typer.Option(None, "--compare-alignment", help="alignment.csv for a melt log given to --compare."),
    xlsx: bool = typer.Option(False, "--xlsx", help="Also write record.xlsx (record, features, compare and agreement sheets)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an earlier record in --out."),
) -> None:
    """Turn melt intervals into a melt record: ages, melt per depth or age bin, imaged coverage, plots, agreement.

    Per bin: bin_top_m, bin_bot_m, age_top_b2k, age_bot_b2k, imaged_m, n_layers, n_lenses, melt_mm,
    melt_percent = melt_mm / (imaged_m * 1000) * 100, layers_per_m = n_layers / imaged_m; counts and
    rates are empty where nothing was imaged. With no INPUT it runs the shipped weights on the shipped
    sample and compares that record with the sample's log, on a made-up depth-age scale.
    """
    from meltloc.atomic import claim_folder
    from meltloc.errors import problem_lines
    from meltloc.record import make_record, sample_detections

    claimed = False
    if input_path is None:
        if sections is not None or compare_with is not None or alignment is not None:
            fail("without INPUT, record runs on the shipped sample: give INPUT to use --sections, --compare or --alignment")
        claim_folder(out, "record", inputs=(SAMPLE_IMAGES, SAMPLE_SECTIONS, SAMPLE_LOG, DEFAULT_WEIGHTS),
                     overwrite=overwrite, settings={"input": "sample"})
        claimed = True
        console.print("no INPUT: detecting on the shipped sample (datasets/sample) with weights/regression.pt; "
                      "the depth-age scale is made up", highlight=False, soft_wrap=True)
        input_path = sample_detections(out / "detections.csv", SAMPLE_IMAGES, SAMPLE_SECTIONS, DEFAULT_WEIGHTS)
        sections, compare_with, images = SAMPLE_SECTIONS, SAMPLE_LOG, images or SAMPLE_IMAGES
        age_scale = age_scale or str(SAMPLE_AGE_SCALE)
    elif sections is None:
        fail("--sections is needed: the manifest says which core was imaged (a gap is 'not observed', not 'no melt')")
    result = make_record(input_path, sections, out, age_scale=age_scale, bin_m=bin_m, bin_years=bin_years,
                         thinning=thinning, compare=compare_with, images=images, alignment=alignment,
                         compare_alignment=compare_alignment, depth_column=depth_column, age_column=age_column,
                         xlsx=xlsx, overwrite=overwrite, claimed=claimed)
    warn(problem_lines(result.problems))
    _print_record(result)


def _print_record(result) -> None:
    import pandas as pd
    from rich.table import Table

    rec = result.record
    t = rec.table
    shown = Table(title=f"melt record of {rec.name}", show_lines=False)
    cols = ["bin_top_m", "bin_bot_m", "age_top_b2k", "age_bot_b2k", "imaged_m", "n_layers", "n_lenses", "melt_mm",
            "melt_percent", "layers_per_m"]
    for col in cols:
        shown.add_column(col, justify="right")
    for row in t[cols].itertuples(index=False):
        shown.add_row(*("" if pd.isna(v) else f"{v:g}" for v in row))
    Console(width=None if sys.stdout.isatty() else 140).print(shown)
    imaged = float(t["imaged_m"].sum())
    melt = float(t["melt_mm"].astype(float).sum())
    console.print(f"{len(rec.features)} feature(s); {melt:.1f} mm of melt in {imaged:.3f} m imaged "
                  f"({melt / (imaged * 1000) * 100:.3f} %)" if imaged else "nothing imaged", highlight=False)
    if result.agreement is not None:
        fig = result.agreement.figures
        na, nb = result.agreement.names
        r = lambda v: "undefined" if v != v else f"{v:.3f}"  # noqa: E731
        console.print(f"agreement over {fig['bins']} imaged bin(s): r(melt_mm) = {r(fig['r_melt_mm'])}, "
                      f"r(n_layers) = {r(fig['r_n_layers'])}; total melt {na} {fig[f'total_melt_mm_{na}']:.1f} mm, "
                      f"{nb} {fig[f'total_melt_mm_{nb}']:.1f} mm; layers {fig[f'n_layers_{na}']} vs {fig[f'n_layers_{nb}']}",
                      highlight=False, soft_wrap=True)
    console.print("wrote " + ", ".join(sorted(p.name for p in result.files.values())) + f" in {result.files['record'].parent}",
                  highlight=False, soft_wrap=True)


@app.command("upgrade-checkpoint")
def upgrade_checkpoint(
    old: Path = typer.Argument(..., help="An old meltloc checkpoint (it holds pickled Python objects)."),
    out: Path = typer.Option(..., "--out", help="The new checkpoint (plain data: loads with weights_only=True)."),
    trust_checkpoint: bool = typer.Option(False, "--trust-checkpoint", help="Required: reading the old file unpickles it, which can run code; only for files you trust."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
) -> None:
    """Rewrite an old meltloc checkpoint once in the safe format (YOLO: model YAML and state dict)."""
    from meltloc.checkpoint import is_safe_file, upgrade_checkpoint as upgrade

    check_output(out, inputs=(old,), overwrite=overwrite)
    if old.is_file() and is_safe_file(old):
        fail(f"{old}: already in the safe format (it loads without pickled objects); nothing to upgrade")
    if not trust_checkpoint:
        fail(f"{old}: upgrading reads the old file by unpickling it, which can run code: pass --trust-checkpoint "
             "if you trust where it came from, or retrain with 'meltloc train'")
    with _trust(True):
        data = upgrade(old, out)
    console.print(f"wrote {out} ({data['head']} checkpoint in the safe format; it loads with weights_only=True)",
                  highlight=False)




@app.command()
def review(
    inputs: Optional[List[Path]] = typer.Argument(None, metavar="DETECTIONS", help="Detections CSV from 'meltloc detect' (default: the shipped sample's, detected with the shipped weights at start-up into the cache). Folders given here are more --images."),
    images: Optional[List[Path]] = typer.Option(None, "--images", help="Folder(s) of the section images: --images A B or --images A --images B."),
    sections: Optional[Path] = typer.Option(None, "--sections", help="Section manifest (PANGAEA .tab or CSV): depths of each image."),
    labels: Optional[Path] = typer.Option(None, "--labels", help="Hand log (label table) drawn beside the detections, aligned per section like 'convert' does."),
    truth: Optional[Path] = typer.Option(None, "--truth", help="A synth truth.csv: the true intervals, drawn too."),
    decisions: Optional[Path] = typer.Option(None, "--decisions", help="Decisions file (default <DETECTIONS stem>.review.csv): written at every decision; continued when it exists."),
    export: Optional[Path] = typer.Option(None, "--export", help="Write the accepted, edited and added features as a melt log (.xlsx or .csv) that 'convert --labels' reads, and exit."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --export file."),
    port: int = typer.Option(8765, "--port", min=1, max=65535, help="Port of the local web page."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. Anything but 127.0.0.1/localhost lets other machines read the images and change the decisions: only on a trusted network."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Do not open the page in the browser."),
    low_score: float = typer.Option(0.5, "--low-score", min=0.0, max=1.0, help="Detections under this score are 'low score' (a filter)."),
    cache: Optional[Path] = typer.Option(None, "--cache", help="Folder for image tiles and the sample's detections (default $MELTLOC_CACHE or ~/.cache/meltloc)."),
    cache_gb: float = typer.Option(20.0, "--cache-gb", min=0.1, help="Largest size of the tile cache; the least recently opened sections are removed beyond it."),
) -> None:
    """Check every detection by eye in the browser: accept, reject, move boundaries, add missed features; export the melt log.

    Opens a local web page (127.0.0.1) with the section list, the core at full resolution with a depth ruler, the detections and their scores, the hand log (--labels) and the truth (--truth). Every decision is written at once to the decisions file; stop and start again to continue. With no DETECTIONS it opens the shipped sample with the shipped weights' detections.
    """
    from meltloc.review.server import is_loopback, sample_detections, serve

    given = list(inputs or [])
    dirs = [p for p in given if p.is_dir()]
    files = [p for p in given if not p.is_dir()]
    if len(files) > 1:
        fail(f"one DETECTIONS file, please (got {', '.join(map(str, files))}); more image folders go after --images")
    images = [*(images or []), *dirs]
    cache_root = cache
    if not files:
        if images or sections is not None:
            fail("without DETECTIONS, review opens the shipped sample: give DETECTIONS to use --images or --sections")
        from meltloc.review.tiles import default_cache_root

        cache_root = cache or default_cache_root()
        ensure_writable(cache_root, folder=True)
        console.print("no DETECTIONS: the shipped sample (datasets/sample) with the detections of weights/regression.pt",
                      highlight=False, soft_wrap=True)
        detections = sample_detections(SAMPLE_IMAGES, SAMPLE_SECTIONS, DEFAULT_WEIGHTS, cache_root)
        images, sections = [SAMPLE_IMAGES], SAMPLE_SECTIONS
        labels = labels or SAMPLE_LOG
        truth = truth or SAMPLE_TRUTH
    else:
        detections = files[0]
    from meltloc.review.store import default_decisions_path

    decisions = decisions or default_decisions_path(detections)
    ensure_writable(decisions)
    if export is not None:
        from meltloc.manifest import read_manifest
        from meltloc.review.export import age_model, export_log
        from meltloc.review.store import DecisionStore

        protected = [p for p in (detections, decisions, labels, sections, truth) if p is not None]
        if any(export.resolve() == Path(p).resolve() for p in protected):
            fail(f"--export {export} is one of the inputs: choose another file")
        if export.exists() and not overwrite:
            fail(f"{export} exists: give --overwrite to replace it, or another --export file")
        if not decisions.is_file():
            fail(f"no decisions file {decisions}: review the detections first (or give --decisions)")
        ensure_writable(export)
        manifest = read_manifest(sections) if sections is not None else None

        def span(image):
            rec = None if manifest is None else manifest.find(image)
            return None if rec is None else (float(rec["top_m"]), float(rec["bottom_m"]))

        ages = None
        if labels is not None:
            from meltloc.labels import read_labels

            t = read_labels(labels).table
            ages = age_model(t["depth_from_m"], t["age_b2k"]) if not t.empty else None
        store = DecisionStore(detections, decisions)
        result = export_log(store.snapshot(), export, span, ages)
        if manifest is None:
            warn(["no --sections: the bag column is left empty (NaN)"])
        if result.skipped:
            warn([f"{result.skipped} kept feature(s) without depths (images not in the manifest) are not in the log"])
        console.print(f"wrote {export}: {result.layers} melt layer(s) and {result.lenses} lens(es) from {decisions}",
                      highlight=False, soft_wrap=True)
        return
    if not images:
        fail("--images is needed: the folder(s) holding the section images")
    if sections is None:
        warn(["no --sections: depths are unknown, so boundaries cannot be moved and features cannot be added"])
    if not is_loopback(host):
        warn([f"listening on {host}: anyone who can reach this machine on port {port} can see the images and "
              "change the decisions (there is no password)"])
    from meltloc.errors import problem_lines
    from meltloc.review.app import create_app
    from meltloc.review.session import ReviewSession

    session = ReviewSession(detections, images, sections, labels=labels, truth=truth, decisions=decisions,
                            cache_dir=(cache_root / "tiles") if cache_root else None, low_score=low_score,
                            cache_bytes=int(cache_gb * 1024 ** 3))
    warn(problem_lines(session.problems))
    hosts = ["127.0.0.1", "localhost", "[::1]"] if is_loopback(host) else ["*"]
    app_ = create_app(session, allowed_hosts=hosts)
    n = len(session.store)
    console.print(f"{len(session.sections)} section(s), {n} row(s); decisions in {decisions}", highlight=False,
                  soft_wrap=True)
    serve(app_, host=host, port=port, open_browser=not no_browser,
          on_ready=lambda url: console.print(f"review at {url} (Ctrl-C stops; every decision is already saved)",
                                             highlight=False, soft_wrap=True))
    console.print(f"stopped; the decisions are in {decisions}", highlight=False, soft_wrap=True)


def command():
    """The click command of :data:`app`, with every on/off option shown as a flag in ``--help`` (no ``<bool>``)."""
    import typer.main

    root = typer.main.get_command(app)
    stack = [root]
    while stack:
        cmd = stack.pop()
        stack.extend(getattr(cmd, "commands", {}).values())
        for param in cmd.params:
            if getattr(param, "is_flag", False):
                param.metavar = ""
        cmd.get_help_option = _flag_help(cmd.get_help_option)
    return root


def _flag_help(get_help_option):
    """click builds ``--help`` on each call; show it as a flag too."""

    def wrapped(ctx):
        option = get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    return wrapped


def main() -> None:
    """Console-script entry point: run the app, turning library errors into one line.

    SIGTERM is handled like Ctrl-C (files closed, finished work kept) and exits with 143; Ctrl-C with 130. A
    stop that a library swallowed on its way is raised again at the next step of training or detection
    (:mod:`meltloc.interrupt`).
    """
    try:
        with handling_signals():
            command()(prog_name="meltloc")
    except MeltlocError as exc:
        if _state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {escape(' '.join(str(exc).split()))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except OSError as exc:
        if _state["debug"]:
            raise
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        console.print(f"[bold red]error:[/] {escape(where + (exc.strerror or str(exc)))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except Terminated:
        console.print("stopped by SIGTERM", highlight=False)
        sys.exit(143)
    except KeyboardInterrupt:
        console.print("interrupted", highlight=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
