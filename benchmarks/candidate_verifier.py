"""An experiment, not part of meltloc: can a small 2-D network that looks at each melt-layer candidate of the
shipped regression ensemble tell true layers from false ones better than the ensemble's own score?

The ensemble's candidates down to a score of 0.3 hold nearly every layer of the hard development sets; what it
lacks is ranking them (docs/generalisation_log.md, "Seventeenth round"). Here:

1. every set is run through ``meltloc detect`` with the shipped weights down to ``--min-score`` (cached);
2. each melt-layer candidate is labelled against the set's synth ``truth.csv``: true (IoU >= 0.5 with a layer),
   false (IoU < 0.2 with any layer or lens, away from ignore regions), else left out;
3. a verifier (seven 3 x 3 convolutions, 0.1 M parameters) is trained on 192-row x 64-column crops of the
   normalised strip around each candidate of the training sets, with a second channel marking the candidate's
   rows; the training sets' true layers, their ends jittered, are positives too; crops are flipped, shifted
   and scaled in brightness; batches are half positives;
4. on held-out sections of the training sets (a fifth of each set's, by section) a logistic combination of
   the ensemble's score and the verifier's logit is fitted, and the operating threshold chosen (best F1);
5. the development sets are rescored and scored: mean AP over all their candidates, F1 at the ensemble's
   shipped threshold before and at the chosen one after.

    python benchmarks/candidate_verifier.py --data /tmp/data2 --work /tmp/verifier \\
        --train big_all big2/h330 big2/h900 ver/w1151 ver/c440 ver/h701 ver/h1451 ver/w1001 ver/c311 \\
        --dev dev_hard dev_hard24 dev_wide6 dev_classic12 --steps 1200

Each set is a synth folder (``images/``, ``sections.tab`` or ``sections.csv``, ``truth.csv``). About 25 min on
2 cores for the command above.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from meltloc.api import detect_images  # noqa: E402
from meltloc.heads import load_detector  # noqa: E402
from meltloc.heads.base import section_strip  # noqa: E402
from meltloc.heads.regression.net import normalise_for  # noqa: E402
from meltloc.manifest import read_manifest  # noqa: E402
from meltloc.metrics import evaluate_intervals  # noqa: E402
from meltloc.section import load_section  # noqa: E402

WEIGHTS = REPO / "weights" / "regression.pt"
CROP_ROWS = 192
SCORED = ["melt_layer", "melt_lens", "uncertain", "bubble_free"]


def manifest_of(folder: Path) -> Path:
    tab = folder / "sections.tab"
    return tab if tab.exists() else folder / "sections.csv"


def candidates(folder: Path, work: Path, min_score: float) -> pd.DataFrame:
    """The shipped ensemble's detections of every image of ``folder`` down to ``min_score`` (cached)."""
    out = work / ("detections_" + "_".join(folder.parts[-2:]) + ".csv")
    if not out.exists():
        detect_images([folder / "images"], out, weights=WEIGHTS, sections=manifest_of(folder),
                      score_threshold=min_score, workers=2)
    return pd.read_csv(out)


def strips(folder: Path, cfg) -> dict:
    """{image: (normalised strip, float16 rows x 64; the strip; the depth scale)}."""
    manifest = read_manifest(manifest_of(folder))
    out = {}
    for path in sorted((folder / "images").iterdir()):
        section = load_section(path, manifest)
        strip = section_strip(section, cfg.px_per_mm, cfg.width, cfg.inset)
        out[path.name] = (normalise_for(cfg, strip.pixels).numpy().astype(np.float16), strip, section.scale)
    return out


def strip_rows(entry, depth_from_m: float, depth_to_m: float) -> tuple[float, float]:
    _, strip, scale = entry
    a, b = strip.to_strip_rows([scale.depth_to_row(depth_from_m), scale.depth_to_row(depth_to_m)])
    return float(a), float(b)


def iou(a0, a1, b0, b1) -> np.ndarray:
    inter = np.clip(np.minimum(a1, b1) - np.maximum(a0, b0), 0, None)
    return inter / np.maximum((a1 - a0) + (b1 - b0) - inter, 1e-12)


def label(layers: pd.DataFrame, truth: pd.DataFrame) -> np.ndarray:
    """1 (a true layer), 0 (false) or -1 (left out) for each candidate row."""
    out = np.full(len(layers), -1)
    for i, r in enumerate(layers.itertuples()):
        t = truth[truth["image"] == r.image]
        melt = t[t["type"] == "melt_layer"]
        melt_or_lens = t[t["type"].isin(["melt_layer", "melt_lens"])]
        ignore = t[t["type"].isin(["uncertain", "bubble_free"])]
        best = iou(r.depth_from_m, r.depth_to_m, melt["depth_from_m"].values, melt["depth_to_m"].values)
        near = iou(r.depth_from_m, r.depth_to_m, melt_or_lens["depth_from_m"].values,
                   melt_or_lens["depth_to_m"].values)
        on_ignore = ((ignore["depth_from_m"].values < r.depth_to_m) & (ignore["depth_to_m"].values > r.depth_from_m))
        if best.max(initial=0) >= 0.5:
            out[i] = 1
        elif near.max(initial=0) < 0.2 and not on_ignore.any():
            out[i] = 0
    return out


def crop(normalised: np.ndarray, a: float, b: float, shift: float = 0.0) -> np.ndarray:
    """(2, CROP_ROWS, width): the strip around the candidate's centre, and a mask of its rows."""
    top = int(round((a + b) / 2 + shift)) - CROP_ROWS // 2
    rows = np.arange(top, top + CROP_ROWS)
    pixels = normalised[np.clip(rows, 0, normalised.shape[0] - 1)].astype(np.float32)
    mask = ((rows + 0.5 >= a) & (rows + 0.5 <= b)).astype(np.float32)
    if not mask.any():
        mask[int(np.clip(round((a + b) / 2) - top, 0, CROP_ROWS - 1))] = 1
    return np.stack([pixels, np.repeat(mask[:, None], pixels.shape[1], 1)])


class Verifier(nn.Module):
    """Crop -> one logit: is this candidate a melt layer?"""

    def __init__(self, channels=(16, 32, 48, 64)):
        super().__init__()
        c0, c1, c2, c3 = channels

        def block(c_in, c_out, stride):
            return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out),
                                 nn.ReLU(inplace=True))

        self.features = nn.Sequential(block(2, c0, 1), block(c0, c1, 2), block(c1, c1, 1), block(c1, c2, 2),
                                      block(c2, c2, 1), block(c2, c3, 2), block(c3, c3, 1))
        self.out = nn.Sequential(nn.Linear(2 * c3, 64), nn.ReLU(inplace=True), nn.Linear(64, 1))

    def forward(self, x):
        f = self.features(x)
        return self.out(torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], 1))[:, 0]


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


@torch.no_grad()
def verifier_logits(net: Verifier, table: pd.DataFrame, cut: dict) -> np.ndarray:
    """The verifier's logit for each melt-layer row of ``table`` (NaN for other rows)."""
    out = np.full(len(table), np.nan)
    rows = np.flatnonzero(table["type"].values == "melt_layer")
    crops = [crop(cut[table["image"].iat[i]][0], *strip_rows(cut[table["image"].iat[i]], table["depth_from_m"].iat[i],
                                                             table["depth_to_m"].iat[i])) for i in rows]
    for k in range(0, len(crops), 256):
        out[rows[k:k + 256]] = net(torch.from_numpy(np.stack(crops[k:k + 256]))).numpy()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the folder holding the sets")
    ap.add_argument("--work", type=Path, required=True, help="cache and results")
    ap.add_argument("--train", nargs="+", required=True)
    ap.add_argument("--dev", nargs="+", required=True)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--min-score", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cfg = load_detector(WEIGHTS).cfg
    shipped_threshold = float(torch.load(WEIGHTS, weights_only=True, map_location="cpu")["score_threshold"])

    cuts, items, held_out = {}, [], []
    for name in args.train:
        folder = args.data / name
        table, truth, cut = candidates(folder, args.work, args.min_score), pd.read_csv(folder / "truth.csv"), \
            strips(folder, cfg)
        cuts[name] = cut
        images = sorted(cut)
        val = set(rng.choice(images, max(1, round(0.2 * len(images))), replace=False))
        layers = table[table["type"] == "melt_layer"].reset_index(drop=True)
        for r, y in zip(layers.itertuples(), label(layers, truth)):
            if r.image not in val and y >= 0:
                items.append((name, r.image, *strip_rows(cut[r.image], r.depth_from_m, r.depth_to_m), int(y)))
        for r in truth[(truth["type"] == "melt_layer") & truth["image"].isin(list(cut))].itertuples():
            if r.image not in val:
                items.append((name, r.image, *strip_rows(cut[r.image], r.depth_from_m, r.depth_to_m), 2))
        held_out.append((name, table[table["image"].isin(val)].copy(), truth[truth["image"].isin(val)]))
    labels = np.array([min(item[4], 1) for item in items])
    print(f"{len(items)} training crops: {labels.sum()} layers, {(labels == 0).sum()} false candidates", flush=True)

    def training_crop(item):
        name, image, a, b, kind = item
        if kind == 2:  # a true layer: its ends jittered by about 8 % of its thickness
            t = max(b - a, 2.0)
            a, b = a + rng.normal(0, 0.08 * t), b + rng.normal(0, 0.08 * t)
            b = max(b, a + 1)
        x = crop(cuts[name][image][0], a, b, shift=rng.uniform(-4, 4))
        if rng.random() < 0.5:
            x = x[:, :, ::-1]
        if rng.random() < 0.5:
            x = x[:, ::-1, :]
        x = x.copy()
        x[0] *= rng.uniform(0.85, 1.15)
        return x

    net = Verifier()
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=args.steps)
    positives, negatives, batch = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0), 64
    start = time.time()
    net.train()
    for step in range(args.steps):
        pick = np.concatenate([rng.choice(positives, batch // 2), rng.choice(negatives, batch // 2)])
        x = torch.from_numpy(np.stack([training_crop(items[i]) for i in pick]))
        loss = F.binary_cross_entropy_with_logits(net(x), torch.from_numpy(labels[pick].astype(np.float32)))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            print(f"step {step}: loss {loss.item():.4f} ({time.time() - start:.0f} s)", flush=True)
    net.eval()
    torch.save(net.state_dict(), args.work / "verifier.pt")

    features, targets = [], []
    for name, table, truth in held_out:
        table["v"] = verifier_logits(net, table, cuts[name])
        layers = table[table["type"] == "melt_layer"].reset_index(drop=True)
        y = label(layers, truth)
        features.append(np.stack([logit(layers["score"]), layers["v"]], 1)[y >= 0])
        targets.append(y[y >= 0])
    X = torch.tensor(np.concatenate(features), dtype=torch.float32)
    Y = torch.tensor(np.concatenate(targets), dtype=torch.float32)
    w = torch.zeros(3, requires_grad=True)
    lbfgs = torch.optim.LBFGS([w], max_iter=200)

    def closure():
        lbfgs.zero_grad()
        loss = F.binary_cross_entropy_with_logits(X @ w[:2] + w[2], Y) + 1e-3 * (w[:2] ** 2).sum()
        loss.backward()
        return loss

    lbfgs.step(closure)
    w = w.detach().numpy()

    def rescore(table):
        table = table.copy()
        melt = table["type"] == "melt_layer"
        z = w[0] * logit(table.loc[melt, "score"]) + w[1] * table.loc[melt, "v"].values + w[2]
        table.loc[melt, "score"] = 1 / (1 + np.exp(-z))
        return table.drop(columns="v")

    val_table = pd.concat([rescore(t) for _, t, _ in held_out])
    val_truth = pd.concat([t[t["type"].isin(SCORED)] for _, _, t in held_out])
    best_f1, _, threshold = max((evaluate_intervals(val_table[val_table["score"] >= t], val_truth).overall["f1"],
                                 -abs(t - 0.5), round(float(t), 2)) for t in np.arange(0.2, 0.9, 0.05))
    print(f"held out: {len(Y)} candidates ({int(Y.sum())} layers); combination {np.round(w, 3).tolist()}; "
          f"threshold {threshold} (F1 {best_f1:.3f})", flush=True)

    results = {"combination": w.tolist(), "threshold": threshold, "held_out_f1": best_f1, "dev": {}}
    for name in args.dev:
        folder = args.data / name
        table, truth, cut = candidates(folder, args.work, args.min_score), pd.read_csv(folder / "truth.csv"), \
            strips(folder, cfg)
        truth = truth[truth["type"].isin(SCORED)]
        table["v"] = verifier_logits(net, table, cut)
        new = rescore(table)
        before, after = (evaluate_intervals(t, truth).overall["map"] for t in (table, new))
        f1_before = evaluate_intervals(table[table["score"] >= shipped_threshold], truth).overall
        f1_after = evaluate_intervals(new[new["score"] >= threshold], truth).overall
        results["dev"][name] = {"map": [before, after], "f1": [f1_before["f1"], f1_after["f1"]],
                                "tp_fp_fn": [[f1_before[k] for k in ("tp", "fp", "fn")],
                                             [f1_after[k] for k in ("tp", "fp", "fn")]]}
        print(f"{name}: mean AP {before:.3f} -> {after:.3f}; F1 {f1_before['f1']:.3f} -> {f1_after['f1']:.3f} "
              f"(tp/fp/fn {results['dev'][name]['tp_fp_fn'][0]} -> {results['dev'][name]['tp_fp_fn'][1]})",
              flush=True)
    (args.work / "results.json").write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
