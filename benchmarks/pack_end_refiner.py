"""Pack the networks of ``candidate_verifier.py --refine`` runs into one end refiner for ``meltloc detect
--refine-ends`` (meltloc/heads/ends.py); their end shifts are averaged there.

    python benchmarks/pack_end_refiner.py /tmp/runs/verifier_refine_seed1/verifier.pt \\
        /tmp/runs/verifier_refine_seed2/verifier.pt --out weights/end_refiner.pt \\
        --note "candidate_verifier.py --refine --steps 1200 --seed 1 / --seed 2, 128 sections (README)"

The checkpoint records each file's name and SHA-256 and the note; it loads with ``weights_only=True``.
An existing ``--out`` is not replaced.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from meltloc.checkpoint import file_sha256  # noqa: E402
from meltloc.heads.ends import load_end_refiner, save_end_refiner  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("verifiers", nargs="+", type=Path, help="verifier.pt of candidate_verifier.py --refine runs")
    ap.add_argument("--out", type=Path, required=True, help="the end refiner to write (not replaced)")
    ap.add_argument("--note", default="", help="how the networks were trained (kept in the checkpoint)")
    args = ap.parse_args()
    if args.out.exists():
        sys.exit(f"error: {args.out} exists; choose another --out")
    states = []
    for path in args.verifiers:
        if not path.is_file():
            sys.exit(f"error: no verifier file {path}")
        try:
            states.append(torch.load(path, weights_only=True, map_location="cpu"))
        except Exception as exc:  # torch raises many kinds for foreign files
            sys.exit(f"error: {path} is not a verifier.pt ({type(exc).__name__})")
    try:
        save_end_refiner(args.out, states, train={
            "networks": [{"file": p.name, "folder": p.parent.name, "sha256": file_sha256(p)} for p in args.verifiers],
            "note": args.note})
    except RuntimeError as exc:
        sys.exit(f"error: a file is not the verifier.pt of a --refine run ({str(exc).splitlines()[0][:100]})")
    refiner = load_end_refiner(args.out)
    print(f"{args.out}: {len(refiner.nets)} network(s), {args.out.stat().st_size / 2 ** 20:.2f} MiB")


if __name__ == "__main__":
    main()
