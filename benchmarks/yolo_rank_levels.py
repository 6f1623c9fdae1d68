"""A benchmark helper, not part of meltloc: YOLO on rank-levelled strips (an input that gain and gamma do not change).

Rank levels: a strip (a whole section, as meltloc cuts it) is divided by its local brightness as the regression
head's input is (:func:`meltloc.heads.regression.net.normalise_local`: the 75th percentile of the row means over
+/- 20 mm, clipped to 0-4), then each pixel is replaced by its rank among the strip's pixels (the strip's own
cumulative histogram of those ratios, 4,096 bins over 0-4) times 255. A change of the grey levels that keeps their
order (gain, gamma) leaves the ranks as they were, up to the 8-bit levels the scan already lost; a haze is nearly
so (the division by the local brightness is not exactly undone by an offset); focus blur is not touched. Used in the
twenty-eighth round (rule R27).

    python benchmarks/yolo_rank_levels.py copy SRC DST [--blur-mm 0.05,0.1,...]  # strips and tiles rank-levelled
    python benchmarks/yolo_rank_levels.py train DST OUT RUNS [--seed S] [--epochs E] [--draw-in-ratio]
        [--blur-share P [--blur-drawn]]
    python benchmarks/yolo_rank_levels.py detect WEIGHTS IMAGES SECTIONS CSV

``copy`` writes a new folder (built aside, renamed into place) with every file of SRC, the strips
(``strips/*.png``) rank-levelled and every YOLO tile cut again from its rank-levelled strip at the rows
``yolo/tiles.csv`` gives (so a tile is part of a strip levelled as a whole, as at detect), and ``rank_levels.json``
saying so. Labels, tables and the COCO files are copied unchanged (the COCO images are the strips); the copied
``yolo/data.yaml`` is removed (it named SRC's tiles; meltloc's training writes its own). ``train`` is `meltloc train
--head yolo` with YOLO's defaults on such a copy only (one torch thread, CPU) and stamps ``benchmark_levels`` into
the checkpoint's training record. YOLO's drawn-in layers and breaks darken a tile by multiplying it; on the
levelled grey a 2 mm band drawn 20 / 45 / 90 % darker than the ice comes out at 97-116 / 67-80 / 12-15 of 255 where
the same band darkened in the raw strip and levelled with it lies at 87-98 / 37-41 / 0 (two strips of conv24), so
those drawn layers are fainter than the real ones they stand for. ``--draw-in-ratio`` draws them on the ratios
instead (levelled grey to ratio through the pooled ranks of the train strips, kept in the copy's
``rank_levels.json``, then back): 78-98 / 28-39 / 0 on the same strips. ``detect`` is
`meltloc detect IMAGES --sections SECTIONS --weights WEIGHTS --out CSV -q -j 1` with each strip rank-levelled before
YOLO's tiling; it refuses a checkpoint without the stamp. Nothing is overwritten.

Focus blur (the twenty-ninth round, rule R28): ``copy --blur-mm`` also writes, for every train tile, one blurred
variant per listed sigma (``yolo/blur/<sigma>mm/train/<tile>``): the raw strip blurred along depth (Gaussian, sigma
in mm of core), rounded to 8 bits, rank-levelled as a whole and cut at the tile's rows, so a variant is what
``detect`` would make of a blurred scan. ``train --blur-share P`` gives a share P of the training tiles (drawn per
tile and epoch) one of the variants, sigma drawn uniformly from the listed ones, before YOLO's drawn-in layers and
breaks and ultralytics' own augmentation (DrawAugment draws them sharp: only the tile's own layers and breaks are
blurred). Along depth only: a strip column averages about 21 image columns across the core and a strip row under two
image rows along it, so a camera's blur reaches a strip almost wholly along depth. ``--blur-drawn`` (the thirtieth
round, rule R29) blurs the drawing too: on a swapped tile the darkening YOLO draws (layers and breaks, on the ratios
with ``--draw-in-ratio``) is blurred along depth by the tile's sigma before it is applied, so no sharp drawn feature
sits on a blurred tile; tiles not swapped are drawn sharp as before.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from folder_aside import built_aside  # noqa: E402

BINS = 4096
TOP_RATIO = 4.0
WINDOW_MM = 41.0
STAMP = "benchmark_levels"
MARKER_TEXT = {"levels": "rank", "window_mm": WINDOW_MM, "bins": BINS, "top_ratio": TOP_RATIO,
               "by": "benchmarks/yolo_rank_levels.py copy"}
MARKER = "rank_levels.json"  # in a levelled copy: what was done to it


def strip_ratios(pixels: np.ndarray, px_per_mm: float) -> np.ndarray:
    """A uint8 strip divided by its local brightness as the regression head's input is (0-4, float32)."""
    from meltloc.heads.regression.net import normalise_local

    return normalise_local(pixels, int(round(WINDOW_MM * px_per_mm))).numpy()


def ratio_counts(ratio: np.ndarray) -> np.ndarray:
    """The histogram the ranks come from (:data:`BINS` bins over 0-:data:`TOP_RATIO`)."""
    return np.histogram(ratio, bins=BINS, range=(0.0, TOP_RATIO))[0]


def mid_ranks(counts: np.ndarray) -> np.ndarray:
    """Each bin's pixels at the middle of their ranks (0-1), so an unchanging strip goes to mid-grey, not white."""
    cdf = np.cumsum(counts, dtype=np.float64)
    return (cdf - counts / 2.0) / max(1, int(counts.sum()))


def rank_levels(pixels: np.ndarray, px_per_mm: float) -> np.ndarray:
    """A uint8 strip (rows x width) rank-levelled (module docstring)."""
    ratio = strip_ratios(pixels, px_per_mm)
    mid = mid_ranks(ratio_counts(ratio))
    index = np.clip((ratio / TOP_RATIO * BINS).astype(np.int64), 0, BINS - 1)
    return np.clip(np.rint(mid[index] * 255.0), 0, 255).astype(np.uint8)


def blurred_along_depth(pixels: np.ndarray, sigma_rows: float) -> np.ndarray:
    """A uint8 strip blurred along depth (rows) by a Gaussian of ``sigma_rows``, rounded back to 8 bits."""
    import cv2

    x = cv2.GaussianBlur(pixels.astype(np.float32), (1, 0), sigmaX=0.01, sigmaY=float(sigma_rows),
                         borderType=cv2.BORDER_REFLECT)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def blur_folder(sigma_mm: float) -> str:
    """The folder under ``yolo/blur`` holding the variants of one sigma."""
    return f"{sigma_mm:g}mm"


def with_blurred_tiles(call, data: Path, blur_mm: list[float], share: float, seed: int,
                       drawn_sigma: dict | None = None):
    """DrawAugment's ``__call__`` preceded by swapping, with probability ``share``, the tile read for one of its
    blurred variants (module docstring; sigma uniform over ``blur_mm``), resized as ultralytics resized the tile
    read. Layers and breaks DrawAugment then draws stay sharp (only the tile's own are blurred), unless
    ``drawn_sigma`` is given: then ``drawn_sigma["mm"]`` holds the swapped tile's sigma (None for a tile not
    swapped) while DrawAugment runs, for :func:`blurred_drawing`."""
    import cv2

    from meltloc.heads.yolo.look import _as_image
    from meltloc.imageio import read_image

    rng, data = np.random.default_rng([seed, 28]), Path(data).resolve()

    def swapped(self, labels):
        sigma = None
        if rng.random() < share:
            tile = Path(labels["im_file"])
            sigma = blur_mm[int(rng.integers(len(blur_mm)))]
            path = data / "yolo" / "blur" / blur_folder(sigma) / tile.parent.name / tile.name
            pixels = read_image(path)
            img = labels["img"]
            if pixels.shape != tuple(labels.get("ori_shape", pixels.shape)):
                raise OSError(f"{path}: {pixels.shape}, the tile is {tuple(labels['ori_shape'])}")
            if pixels.shape != img.shape[:2]:  # ultralytics' load_image resized the tile (as it does, linearly)
                pixels = cv2.resize(pixels, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
            labels["img"] = _as_image(pixels.astype(np.float32), img)
        if drawn_sigma is None:
            return call(self, labels)
        drawn_sigma["mm"] = sigma
        try:
            return call(self, labels)
        finally:
            drawn_sigma["mm"] = None

    return swapped


def blurred_drawing(draw, rows_per_mm_at: int, drawn_sigma: dict):
    """``draw`` (meltloc's draw_layers or draw_breaks: they darken a float crop by multiplying it; its positional
    argument ``rows_per_mm_at``, counted from 0 with the crop, is its rows per mm) with the darkening it drew
    blurred along depth by a Gaussian of ``drawn_sigma["mm"]`` mm (when set), as a camera's focus blur would blur a
    band or break that was in the core.
    The drawn factor (drawn crop over crop) is blurred, not the crop, so the tile's own content (blurred already on
    a swapped tile) is not blurred twice; labels are unchanged (a blurred layer keeps its true interval)."""
    import cv2

    def drawn(crop, *args, **kwargs):
        out = draw(crop, *args, **kwargs)
        sigma_mm = drawn_sigma.get("mm")
        if not sigma_mm:
            return out
        drawn_img = np.asarray(out[0] if isinstance(out, tuple) else out)
        img, base = drawn_img.astype(np.float64), np.asarray(crop, np.float64)
        factor = np.divide(img, base, out=np.ones_like(img), where=base > 0).astype(np.float32)
        sigma_rows = float(sigma_mm) * float(args[rows_per_mm_at - 1])
        factor = cv2.GaussianBlur(factor, (1, 0), sigmaX=0.01, sigmaY=sigma_rows, borderType=cv2.BORDER_REFLECT)
        img = (base * factor).astype(drawn_img.dtype)
        return (img, *out[1:]) if isinstance(out, tuple) else img

    return drawn


def in_ratio_space(draw, counts: np.ndarray):
    """``draw`` (meltloc's draw_layers or draw_breaks: they darken a float crop by multiplying it) applied to a
    levelled crop as if to the ratios it came from: grey levels to ratios through the pooled ranks ``counts`` (the
    train strips' ratio histogram), the drawing, and back. A band drawn 20 % darker than the ice then lands where a
    real band that dark, levelled with its strip, would (up to one strip's ranks against the pooled ones)."""
    kept = counts > 0
    ranks = mid_ranks(counts)[kept]
    centres = ((np.arange(BINS) + 0.5) * TOP_RATIO / BINS)[kept]

    def drawn(crop, *args, **kwargs):
        ratio = np.interp(np.asarray(crop, np.float64) / 255.0, ranks, centres)
        out = draw(ratio, *args, **kwargs)
        grey = np.interp(out[0] if isinstance(out, tuple) else out, centres, ranks) * 255.0
        grey = grey.astype(np.float32)
        return (grey, *out[1:]) if isinstance(out, tuple) else grey

    return drawn


def copy(src: Path, dst: Path, blur_mm: tuple[float, ...] = ()) -> None:
    import pandas as pd

    from meltloc.imageio import read_image, write_image
    from meltloc.strip_dataset import read_strip_table

    table = read_strip_table(src)
    px_per_mm = {Path(r.image).stem: float(r.px_per_mm) for r in table.itertuples()}
    tiles = pd.read_csv(src / "yolo" / "tiles.csv")
    listed = {Path(t) for t in tiles["tile"]}
    unlisted = [p for p in (src / "yolo" / "images").glob("*/*.png") if p.relative_to(src / "yolo" / "images")
                not in listed]
    if unlisted:
        raise OSError(f"{unlisted[0]} (and {len(unlisted) - 1} more) is no tile of yolo/tiles.csv: it would stay raw")
    with built_aside(dst) as partial:
        shutil.copytree(src, partial, dirs_exist_ok=True, symlinks=True)
        (partial / "yolo" / "data.yaml").unlink(missing_ok=True)
        levelled, train_counts = {}, np.zeros(BINS, np.int64)
        train_stems = {Path(r.image).stem for r in table.itertuples() if r.split == "train"}
        for path in sorted((src / "strips").glob("*.png")):  # read from SRC: an error names the input's file
            if path.stem not in px_per_mm:
                raise OSError(f"{path} is not in strips.csv")
            pixels = read_image(path)
            levelled[path.stem] = rank_levels(pixels, px_per_mm[path.stem])
            if path.stem in train_stems:
                train_counts += ratio_counts(strip_ratios(pixels, px_per_mm[path.stem]))
            write_image(partial / "strips" / path.name, levelled[path.stem])
        for t in tiles.itertuples():
            tile_path = partial / "yolo" / "images" / t.tile
            old = read_image(src / "yolo" / "images" / t.tile)
            if Path(t.image).stem not in levelled:
                raise OSError(f"tile {t.tile}: no strip strips/{Path(t.image).stem}.png")
            new = levelled[Path(t.image).stem][int(t.start):int(t.start) + int(t.rows)]
            if new.shape != old.shape:
                raise OSError(f"{src / 'yolo' / 'images' / t.tile}: the strip gives {new.shape}, "
                              f"the tile is {old.shape}")
            write_image(tile_path, new)
        n_variants, tile_stems = 0, tiles["image"].map(lambda i: Path(i).stem)
        for sigma in blur_mm:  # blurred variants of the train tiles, each cut from its whole strip blurred, levelled
            for stem in sorted(train_stems):
                pixels = read_image(src / "strips" / f"{stem}.png")
                blurred = rank_levels(blurred_along_depth(pixels, sigma * px_per_mm[stem]), px_per_mm[stem])
                for t in tiles[(tiles["split"] == "train") & (tile_stems == stem)].itertuples():
                    out = partial / "yolo" / "blur" / blur_folder(sigma) / t.tile
                    out.parent.mkdir(parents=True, exist_ok=True)
                    write_image(out, blurred[int(t.start):int(t.start) + int(t.rows)])
                    n_variants += 1
        marker = {**MARKER_TEXT, "train_ratio_counts": [int(c) for c in train_counts]}
        if blur_mm:
            marker["blur_mm"] = [float(b) for b in blur_mm]
        (partial / MARKER).write_text(json.dumps(marker) + "\n", encoding="utf-8")
    print(f"{dst}: {len(levelled)} strips and {len(tiles)} tiles rank-levelled"
          + (f", {n_variants // len(blur_mm)} train tiles blurred at {len(blur_mm)} sigmas" if blur_mm else ""))


def train(data: Path, out: Path, runs: Path, seed: int, epochs: int, draw_in_ratio: bool = False,
          blur_share: float = 0.0, blur_drawn: bool = False) -> None:
    import meltloc.heads.yolo.look as yolo_look
    from meltloc.checkpoint import load_checkpoint, save_checkpoint
    from meltloc.heads.yolo.config import YoloSettings
    from meltloc.heads.yolo.train import train as yolo_train

    drawn_sigma = {"mm": None} if blur_drawn else None
    if blur_drawn:  # innermost, so the drawn darkening is blurred on the ratios when drawn there
        yolo_look.draw_layers = blurred_drawing(yolo_look.draw_layers, 5, drawn_sigma)
        yolo_look.draw_breaks = blurred_drawing(yolo_look.draw_breaks, 4, drawn_sigma)
    if draw_in_ratio:  # looked up at each call by DrawAugment; ultralytics runs with workers=0: tiles are made here
        counts = np.asarray(json.loads((data / MARKER).read_text())["train_ratio_counts"], np.int64)
        yolo_look.draw_layers = in_ratio_space(yolo_look.draw_layers, counts)
        yolo_look.draw_breaks = in_ratio_space(yolo_look.draw_breaks, counts)
    blur_mm = json.loads((data / MARKER).read_text()).get("blur_mm", [])
    settings = YoloSettings(seed=seed, epochs=epochs, threads=1, device="cpu", runs=str(runs))
    if blur_share > 0 and not (settings.insert_layers > 0 or settings.insert_breaks > 0):
        raise SystemExit("error: --blur-share swaps tiles in YOLO's DrawAugment, which these settings leave out")
    if blur_share > 0:  # DrawAugment runs first in the training pipeline, on the tile as read (workers=0: here)
        yolo_look.DrawAugment.__call__ = with_blurred_tiles(yolo_look.DrawAugment.__call__, data, blur_mm,
                                                            blur_share, seed, drawn_sigma)
    yolo_train(data, out, settings)
    ck = {k: v for k, v in load_checkpoint(out).items() if k not in ("format", "version")}
    ck["train"][STAMP] = ("benchmarks/yolo_rank_levels.py: trained on rank-levelled strips (local brightness "
                          f"division over {WINDOW_MM} mm, then ranks in {BINS} bins over 0-{TOP_RATIO})"
                          + ("; layers and breaks drawn in ratio space" if draw_in_ratio else "")
                          + (f"; a share {blur_share} of the train tiles blurred along depth before levelling, "
                             f"sigma from {blur_mm} mm" if blur_share > 0 else "")
                          + ("; drawn layers and breaks blurred with a swapped tile" if blur_drawn else ""))
    save_checkpoint(out, ck)


def detect(weights: Path, images: Path, sections: Path, csv: Path) -> None:
    import meltloc.heads.yolo.infer as infer
    from meltloc.__main__ import main as meltloc_main
    from meltloc.checkpoint import load_checkpoint

    if STAMP not in load_checkpoint(weights).get("train", {}):
        raise SystemExit(f"error: {weights} was not trained on rank-levelled strips (no '{STAMP}' in its record)")
    plain = infer.detect_strip

    def levelled(model, pixels, cfg, score_threshold, device="cpu"):
        return plain(model, rank_levels(pixels, cfg.px_per_mm), cfg, score_threshold, device)

    infer.detect_strip = levelled  # looked up at each call by the YOLO head; one process (-j 1) keeps the patch
    sys.argv = ["meltloc", "detect", str(images), "--sections", str(sections), "--weights", str(weights),
                "--out", str(csv), "-q", "-j", "1"]
    meltloc_main()


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("copy", help="a convert output with its strips and YOLO tiles rank-levelled")
    p.add_argument("src", type=Path)
    p.add_argument("dst", type=Path)
    p.add_argument("--blur-mm", default="", help="comma-separated sigmas (mm of core) of blurred train-tile variants")
    p = sub.add_parser("train", help="YOLO's defaults on a rank-levelled copy")
    p.add_argument("data", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("runs", type=Path)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=60)
    p.add_argument("--draw-in-ratio", action="store_true",
                   help="draw YOLO's extra layers and breaks on the ratios, not on the levelled grey")
    p.add_argument("--blur-share", type=float, default=0.0,
                   help="share of the training tiles swapped for a blurred variant (the copy's --blur-mm)")
    p.add_argument("--blur-drawn", action="store_true",
                   help="on a swapped tile, blur YOLO's drawn-in layers and breaks along depth by its sigma too")
    p = sub.add_parser("detect", help="meltloc detect with each strip rank-levelled before YOLO")
    for name in ("weights", "images", "sections", "csv"):
        p.add_argument(name, type=Path)
    args = parser.parse_args(argv)
    from meltloc.errors import MeltlocError

    try:
        if args.command == "copy":
            if args.dst.exists():
                raise SystemExit(f"error: {args.dst} exists; nothing is overwritten")
            if not (args.src / "yolo" / "tiles.csv").is_file():
                raise SystemExit(f"error: {args.src} is no meltloc convert output with YOLO tiles")
            if (args.src / MARKER).exists():
                raise SystemExit(f"error: {args.src} is rank-levelled already ({MARKER})")
            if args.dst.resolve().is_relative_to(args.src.resolve()):
                raise SystemExit("error: DST cannot lie inside SRC (nothing is written into an input)")
            try:
                blur_mm = tuple(float(b) for b in args.blur_mm.split(",") if b.strip())
            except ValueError:
                raise SystemExit(f"error: --blur-mm takes sigmas in mm like 0.1,0.2, not {args.blur_mm!r}") from None
            if any(not 0 < b < 5 for b in blur_mm) or len(set(map(blur_folder, blur_mm))) < len(blur_mm):
                raise SystemExit(f"error: --blur-mm takes distinct sigmas above 0 and under 5 mm, not {args.blur_mm!r}")
            copy(args.src, args.dst, blur_mm)
        elif args.command == "train":
            if args.epochs < 1:
                raise SystemExit(f"error: --epochs is at least 1, not {args.epochs}")
            if args.out.resolve() == args.runs.resolve() or args.out.resolve().is_relative_to(args.runs.resolve()):
                raise SystemExit("error: OUT (the checkpoint) cannot be RUNS or lie inside it")
            for path in (args.out, args.runs):  # meltloc's training clears a run folder's old weights
                if path.exists():
                    raise SystemExit(f"error: {path} exists; nothing is overwritten")
                if path.resolve().is_relative_to(args.data.resolve()):
                    raise SystemExit(f"error: {path} lies inside DATA (nothing is written into an input)")
            if not (args.data / MARKER).is_file():
                raise SystemExit(f"error: {args.data} is not rank-levelled (no {MARKER}: make it with 'copy')")
            if args.draw_in_ratio and "train_ratio_counts" not in json.loads((args.data / MARKER).read_text()):
                raise SystemExit(f"error: {args.data}'s {MARKER} has no train_ratio_counts: make it again with 'copy'")
            if not 0 <= args.blur_share <= 1:
                raise SystemExit(f"error: --blur-share is a share (0-1), not {args.blur_share}")
            if args.blur_share > 0 and not json.loads((args.data / MARKER).read_text()).get("blur_mm"):
                raise SystemExit(f"error: {args.data} has no blurred tiles: make it with 'copy --blur-mm'")
            if args.blur_drawn and not args.blur_share > 0:
                raise SystemExit("error: --blur-drawn blurs the drawing on swapped tiles: give --blur-share too")
            train(args.data, args.out, args.runs, args.seed, args.epochs, args.draw_in_ratio, args.blur_share,
                  args.blur_drawn)
        else:
            if args.csv.exists():
                raise SystemExit(f"error: {args.csv} exists; nothing is overwritten")
            detect(args.weights, args.images, args.sections, args.csv)
    except (MeltlocError, OSError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
