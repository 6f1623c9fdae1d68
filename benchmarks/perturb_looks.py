"""A benchmark helper, not part of meltloc: copies of a synth set's images with a camera look beyond synth's ranges.

synth's hardest style draws focus blur up to about 2.8 px (sigma, at 186 px/cm), sensor noise up to 8 (on the
8-bit scale) and gamma 0.6-1.6.
This writes a copy of a set (its manifest, label table and truth copied unchanged, the images changed) with one
of these looks outside those ranges, to see whether a head or a stage still holds on a camera it never saw:

    blur    Gaussian focus blur, sigma 4 px (--sigma-px)
    noisy   gamma 1.8, then Gaussian noise of sd 12 on the 8-bit scale (seeded; clipped at black and white)
    gamma   gamma 1.8 alone (the first half of noisy)
    noise   the noise of noisy alone (its second half)
    coarse  halved with area averaging and restored with linear interpolation (half the resolution)

    python benchmarks/perturb_looks.py /tmp/data2/dev_hard24 /tmp/data2/look_blur --look blur

8- and 16-bit images stay 8- and 16-bit. The output folder must not exist (nothing is overwritten); it is
built aside and renamed when every image is done (``folder_aside.py``). synth's own record (``.meltloc.json``) is
not copied: the copy is no synth output.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np
from folder_aside import built_aside

LOOKS = ("blur", "noisy", "gamma", "noise", "coarse")


def perturbed(image: np.ndarray, look: str, rng: np.random.Generator, sigma_px: float = 4.0) -> np.ndarray:
    """``image`` (uint8 or uint16, grey) with ``look`` applied, in its own dtype (``sigma_px``: the blur's)."""
    full = float(np.iinfo(image.dtype).max)
    x = image.astype(np.float32) / full
    if look == "blur":
        x = cv2.GaussianBlur(x, (0, 0), sigma_px)
    elif look in ("noisy", "gamma", "noise"):
        if look != "noise":
            x = x ** 1.8
        if look != "gamma":
            x = x + rng.normal(0.0, 12.0 / 255.0, x.shape).astype(np.float32)
    elif look == "coarse":
        h, w = x.shape[:2]
        x = cv2.resize(cv2.resize(x, (w // 2, h // 2), interpolation=cv2.INTER_AREA), (w, h),
                       interpolation=cv2.INTER_LINEAR)
    else:
        raise ValueError(f"look is one of {', '.join(LOOKS)}, not {look!r}")
    return np.clip(np.rint(x * full), 0, full).astype(image.dtype)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("source", type=Path, help="a synth folder (images/, its manifest, truth.csv)")
    ap.add_argument("out", type=Path, help="the new folder (must not exist)")
    ap.add_argument("--look", choices=LOOKS, required=True)
    ap.add_argument("--seed", type=int, default=0, help="the noise's seed (--look noisy and noise)")
    ap.add_argument("--sigma-px", type=float, default=4.0, help="the blur's sigma in image pixels (--look blur; 4)")
    args = ap.parse_args()
    if not (args.source / "images").is_dir():
        sys.exit(f"error: {args.source} has no images/ folder")
    if args.out.exists():
        sys.exit(f"error: {args.out} exists; choose a new folder")
    if not 0 < args.sigma_px < float("inf"):
        sys.exit(f"error: --sigma-px is a blur's sigma in image pixels (above 0), not {args.sigma_px}")
    if args.look != "blur" and args.sigma_px != 4.0:
        sys.exit("error: --sigma-px is for --look blur only")
    rng = np.random.default_rng(args.seed)
    images = sorted(p for p in (args.source / "images").iterdir() if p.is_file())
    try:
        write_copy(args, images, rng)
    except OSError as e:
        sys.exit(f"error: {e}; nothing was written")
    print(f"\nwrote {len(images)} images with the '{args.look}' look to {args.out}")


def write_copy(args: argparse.Namespace, images: list[Path], rng: np.random.Generator) -> None:
    """The copy of ``args.source`` with every image given the look, built aside and renamed to ``args.out``."""
    with built_aside(args.out) as partial:
        (partial / "images").mkdir()
        for path in sorted(args.source.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                shutil.copy2(path, partial / path.name)
        for i, path in enumerate(images, 1):
            image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            if image is None or image.dtype not in (np.uint8, np.uint16) or image.ndim != 2:
                sys.exit(f"error: {path} is not an 8- or 16-bit grey image; nothing was written")
            if not cv2.imwrite(str(partial / "images" / path.name), perturbed(image, args.look, rng, args.sigma_px)):
                sys.exit(f"error: could not write {path.name} into the copy; nothing was written")
            print(f"\r{i}/{len(images)} images", end="", flush=True)


if __name__ == "__main__":
    main()
