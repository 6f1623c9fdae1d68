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

from meltloc import __version__
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
    console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
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
    summary = write_core(out, n_sections=sections, seed=seed, config=cfg, show_progress=True)
    console.print(summary, highlight=False)


@app.command()
def convert(
    images: Path = typer.Option(..., "--images", help="Folder of section images."),
    sections: Path = typer.Option(..., "--sections", help="Section manifest: PANGAEA .tab or CSV image,top_m,bottom_m."),
    labels: Path = typer.Option(..., "--labels", help="Label table (CSV, TSV or XLSX) in the published melt-log format."),
    out: Path = typer.Option(..., "--out", help="Output folder for alignment, intervals and datasets."),
) -> None:
    """Align the label table to the images and write interval tables and YOLO/COCO datasets."""
    _not_yet("convert", 3)


@app.command()
def train(
    head: str = typer.Option(..., "--head", help="regression, yolo, simple-cnn, enhanced-cnn, resnet34 or vgg16."),
    data: Path = typer.Option(..., "--data", help="A 'meltloc convert' output folder."),
    out: Path = typer.Option(..., "--out", help="Checkpoint file to write."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs (default: the head's own)."),
    seed: int = typer.Option(0, "--seed", help="Random seed."),
    device: str = typer.Option("cpu", "--device", help="torch device, e.g. cpu or cuda:0."),
) -> None:
    """Train a localizer or a slice-classifier baseline on a convert output."""
    _not_yet("train", 5)


@app.command()
def detect(
    inputs: Optional[List[Path]] = typer.Argument(None, help="Images or folders (default: the shipped sample)."),
    sections: Optional[Path] = typer.Option(None, "--sections", help="Section manifest giving each image's depths."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Checkpoint (default: weights/regression.pt)."),
    out: Optional[Path] = typer.Option(None, "--out", help="CSV of detected intervals."),
) -> None:
    """Detect melt layers and lenses; write depth intervals in meters."""
    _not_yet("detect", 5)


@app.command()
def evaluate(
    pred: Path = typer.Option(..., "--pred", help="Detections CSV from 'meltloc detect'."),
    truth: Path = typer.Option(..., "--truth", help="intervals.csv from convert, or a label table."),
) -> None:
    """Score detections against true intervals (interval IoU, F1, AP, boundary error)."""
    _not_yet("evaluate", 4)


@app.command()
def compare() -> None:
    """Run every given model on the same test sections and write one comparison table."""
    _not_yet("compare", 8)


def main() -> None:
    """Console-script entry point: run the app, turning library errors into one line."""
    try:
        app(prog_name="meltloc")
    except MeltlocError as exc:
        if _state["debug"]:
            raise
        console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("interrupted", highlight=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
