"""The ``meltloc`` command line: parses arguments and calls the library, nothing more.

Library errors (:class:`~meltloc.errors.MeltlocError`) become one line on
stderr and exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.markup import escape

from meltloc import __version__
from meltloc.atomic import ensure_writable
from meltloc.errors import MeltlocError

app = typer.Typer(
    name="meltloc",
    help="Find melt layers in ice-core line-scan images and report them as depth intervals in meters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
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
) -> None:
    """Write a synthetic EastGRIP-like core: images, manifest, misaligned label table and the truth."""
    from meltloc.synth import SynthConfig, write_core

    cfg = SynthConfig(px_per_cm=px_per_cm, first_bag=first_bag, image_format=image_format, max_offset_mm=max_offset_mm)
    ensure_writable(out, folder=True)
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
    ensure_writable(out, folder=True)
    result = run_convert(images, sections, labels, out, config, show_progress=not quiet)
    for line in result.summary():
        console.print(line, highlight=False, soft_wrap=True)
    warn(result.warning_lines())


HEADS_HELP = "regression, yolo, simple-cnn, enhanced-cnn, resnet34 or vgg16"
_REPO = Path(__file__).resolve().parents[1]
SAMPLE_IMAGES = _REPO / "datasets" / "sample" / "images"
SAMPLE_SECTIONS = _REPO / "datasets" / "sample" / "sections.tab"
DEFAULT_WEIGHTS = _REPO / "weights" / "regression.pt"
# Head -> "module:function" training it; each takes (data, out, head=, seed=, device=, resume=, epochs=, ...)
# and returns a dict with a one-line "message".
TRAINERS = {
    "regression": "meltloc.train_regression:train_cli",
    "yolo": "meltloc.models.yolo:train_cli",
    "simple-cnn": "meltloc.models.classifiers:train_cli",
    "enhanced-cnn": "meltloc.models.classifiers:train_cli",
    "resnet34": "meltloc.models.classifiers:train_cli",
    "vgg16": "meltloc.models.classifiers:train_cli",
}


@app.command()
def train(
    head: str = typer.Option(..., "--head", help=f"Which model: {HEADS_HELP}."),
    data: Path = typer.Option(..., "--data", help="A 'meltloc convert' output folder."),
    out: Path = typer.Option(..., "--out", help="Checkpoint file to write (the best epoch on the val split)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help="Training epochs (default: the head's own)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda:0."),
    steps_per_epoch: Optional[int] = typer.Option(None, "--steps-per-epoch", min=1, help="Batches per epoch (regression)."),
    batch: Optional[int] = typer.Option(None, "--batch", min=1, help="Batch size."),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue from a checkpoint written by an earlier run (<out>.last.pt; yolo: the run's weights/last.pt)."),
    model: Optional[str] = typer.Option(None, "--model", help="Architecture variant or starting weights, e.g. yolov8n.yaml, yolo11s.yaml or a local .pt (yolo)."),
    imgsz: Optional[int] = typer.Option(None, "--imgsz", min=32, help="Network input size in pixels, a multiple of 32 (yolo: the tile's long side; default the tile height)."),
    runs: Optional[Path] = typer.Option(None, "--runs", help="Folder for the trainer's own run files (yolo; default <out>.runs/ beside --out)."),
) -> None:
    """Train a localizer or a slice-classifier baseline on a convert output."""
    trainer = TRAINERS.get(head)
    if trainer is None:
        fail(f"unknown head '{head}': choose {HEADS_HELP}")
    ensure_writable(out)
    import importlib

    module, _, name = trainer.partition(":")
    try:
        run = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        fail(f"'meltloc train --head {head}' is not available in this version yet")
    options = {k: v for k, v in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch), ("batch", batch),
                                 ("model", model), ("imgsz", imgsz), ("runs", runs)) if v is not None}
    result = run(data, out, head=head, seed=seed, device=device, resume=resume, **options)
    console.print(result["message"], highlight=False)


@app.command()
def detect(
    inputs: Optional[List[Path]] = typer.Argument(None, help="Images or folders (default: the shipped sample)."),
    sections: Optional[Path] = typer.Option(None, "--sections", help="Section manifest giving each image's depths (PANGAEA .tab or CSV)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Checkpoint of any head (default: weights/regression.pt)."),
    out: Path = typer.Option(Path("detections.csv"), "--out", help="CSV of detected intervals."),
    overlays: Optional[Path] = typer.Option(None, "--overlays", help="Folder for one PNG per image with the detections drawn."),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run into the same --out, skipping finished images."),
    min_score: Optional[float] = typer.Option(None, "--min-score", min=0.0, max=1.0, help="Keep detections scoring at least this (default: the threshold chosen on validation)."),
    device: str = typer.Option("cpu", "--device", help="torch device."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="torch threads (default: all cores but one, which decodes the next image)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Do not print the table of detections."),
) -> None:
    """Detect melt layers and lenses; write depth intervals in meters.

    With no arguments it runs on the shipped sample (datasets/sample) with the
    shipped regression weights.
    """
    from meltloc.detect import detect_images
    from meltloc.detectors import load_detector
    from meltloc.manifest import read_manifest

    if not inputs:
        inputs = [SAMPLE_IMAGES]
        sections = sections or SAMPLE_SECTIONS
    ensure_writable(out)
    if overlays is not None:
        ensure_writable(overlays, folder=True)
    detector = load_detector(weights or DEFAULT_WEIGHTS, device)
    manifest = read_manifest(sections) if sections is not None else None
    try:
        summary = detect_images(list(inputs), detector, out, manifest, overlays, resume, min_score,
                                show_progress=not quiet, threads=threads)
    except (KeyboardInterrupt, Terminated):
        warn([f"the images finished so far are kept in {out}.partial: rerun the same command with --resume"])
        raise
    if not quiet and summary.table is not None:
        _print_detections(summary.table)
    _print_problems(summary.problems, first=20)  # each skipped image matters: name them
    console.print(f"{summary.images} image(s) in {summary.seconds:.1f} s"
                  + (f", {summary.resumed} already done" if summary.resumed else "")
                  + (f", {summary.skipped} skipped" if summary.skipped else "")
                  + f": {summary.detections} detection(s) written to {out}"
                  + (f"; overlays in {overlays}" if overlays else ""), highlight=False)


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
    """Print warning lines on stderr."""
    for line in lines:
        console.print(f"[yellow]warning:[/] {escape(str(line))}", highlight=False, soft_wrap=True)


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
    n_lens_truth         true melt lenses (points: interval midpoints)
    n_lens_pred          predicted melt lenses (their midpoints)
    lens_hits            predicted lenses within --lens-tol-mm of a free true lens, greedy by score
    lens_hit_rate        lens_hits / n_lens_truth
    lens_precision       lens_hits / predicted lenses not on an ignore region
    """
    from meltloc.errors import problem_lines
    from meltloc.evaluate import evaluate_files, render, save_csv, save_json

    for path in (json_out, csv_out):
        if path is not None:
            ensure_writable(path)
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
) -> None:
    """Run every given model on the same test sections and write one comparison table.

    Each test section is decoded once and given to every model. F1 (IoU 0.5), boundary error, recall of layers under 1 mm and lens hit rate are taken at each model's own operating threshold (as 'meltloc detect' writes); mean AP (IoU 0.3-0.7) from a second run at --ap-min-score. Seconds per section time the detection alone (decoding is reported apart).

    Writes compare.csv, compare.md, detections/<head>.csv and three PNG figures (a test section with the truth and every model's intervals, F1 against seconds per section, recall against layer thickness).
    """
    from meltloc.compare import render_table, run_compare
    from meltloc.errors import problem_lines

    ensure_writable(out, folder=True)
    result = run_compare(data, [*(weights or []), *(more_weights or [])], out, images=images, sections=sections,
                         truth=truth, ap_min_score=ap_min_score, device=device, figure_image=figure_image,
                         show_progress=not quiet)
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

    Finishes in minutes on a CPU and prints the comparison table; heads not in this version yet are skipped with one line. The figures show that everything runs end to end, not what full training reaches.
    """
    from meltloc.compare import render_table
    from meltloc.demo import HEADS, DemoSettings, run_demo
    from meltloc.errors import problem_lines

    heads = tuple(head) if head else HEADS
    unknown = [h for h in heads if h not in TRAINERS]
    if unknown:
        fail(f"unknown head '{unknown[0]}': choose {HEADS_HELP}")
    ensure_writable(out, folder=True)
    settings = DemoSettings(sections=sections, px_per_cm=px_per_cm, seed=seed, heads=heads, device=device)
    result = run_demo(out, TRAINERS, settings, log=lambda line: console.print(line, highlight=False, soft_wrap=True),
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


class Terminated(BaseException):
    """SIGTERM, raised where the program is so that open files are closed as after Ctrl-C.

    Not a KeyboardInterrupt, which click turns into its own exit before :func:`main` sees it.
    """


def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def main() -> None:
    """Console-script entry point: run the app, turning library errors into one line.

    SIGTERM is handled like Ctrl-C (files closed, finished work kept) and exits with 143; Ctrl-C with 130.
    """
    signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        app(prog_name="meltloc")
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
