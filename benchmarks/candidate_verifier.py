"""An experiment, not part of meltloc: a 2-D verifier of the shipped regression ensemble's candidates.

Can a small 2-D network that looks at each melt-layer candidate of the shipped regression ensemble tell true
layers from false ones better than the ensemble's own score (and, with ``--refine``, put its ends on the layer's)?

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
5. the development sets are rescored and scored: mean AP over all their candidates, and F1 and boundary error
   at the ensemble's shipped threshold before and at the chosen one after; each way of scoring ("one": the
   crop as is; "flips": the logit averaged over the crop as is and flipped left-right, up-down and both) has
   its own combination and threshold.

With ``--refine`` (eighteenth round) the verifier also learns to shift each true candidate's two ends onto its
layer's (smooth L1 in units of 0.4 mm; the mask channel then holds the fraction of each row inside the
candidate), and the development sets are also scored with the rescored candidates' ends so moved ("+refine").
``benchmarks/verifier_refine_table.py`` applies that refinement alone to any detect table.

    python benchmarks/candidate_verifier.py --data /tmp/data2 --work /tmp/verifier \\
        --train big_all big2/h330 big2/h900 ver/w1151 ver/c440 ver/h701 ver/h1451 ver/w1001 ver/c311 \\
        --dev dev_hard dev_hard24 dev_wide6 dev_classic12 --steps 1200 [--refine]

Each set is a synth folder (``images/``, ``sections.tab`` or ``sections.csv``, ``truth.csv``). About 20 min on
2 cores for the command above with detections cached (``--work``), plus about 1-2 s a section to detect.
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from meltloc.api import detect_images  # noqa: E402
from meltloc.heads import ends, load_detector  # noqa: E402
from meltloc.heads.base import section_strip  # noqa: E402
from meltloc.heads.regression.net import normalise_for  # noqa: E402
from meltloc.manifest import read_manifest  # noqa: E402
from meltloc.metrics import evaluate_intervals  # noqa: E402
from meltloc.section import load_section  # noqa: E402

WEIGHTS = REPO / "weights" / "regression.pt"
CROP_ROWS = ends.EndRefinerConfig.crop_rows
OFFSET_ROWS = ends.EndRefinerConfig.shift_unit_rows  # the refinement's unit: 0.4 mm at 10 strip rows per mm
SCORED = ["melt_layer", "melt_lens", "uncertain", "bubble_free"]


def manifest_of(folder: Path) -> Path:
    tab = folder / "sections.tab"
    return tab if tab.exists() else folder / "sections.csv"


def candidates(folder: Path, name: str, work: Path, min_score: float) -> pd.DataFrame:
    """The shipped ensemble's detections of every image of set ``name`` down to ``min_score`` (cached)."""
    out = work / ("detections_" + name.replace("/", "_") + ".csv")
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


def label(layers: pd.DataFrame, truth: pd.DataFrame, matches: bool = False):
    """1 (a true layer), 0 (false) or -1 (left out) for each candidate row; with ``matches``, also the depths
    (from, to) of each true candidate's layer (NaN for the others)."""
    out = np.full(len(layers), -1)
    matched = np.full((len(layers), 2), np.nan)
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
            matched[i] = melt[["depth_from_m", "depth_to_m"]].values[int(np.argmax(best))]
        elif near.max(initial=0) < 0.2 and not on_ignore.any():
            out[i] = 0
    return (out, matched) if matches else out


def crop(normalised: np.ndarray, a: float, b: float, shift: float = 0.0, soft: bool = False) -> np.ndarray:
    """(2, CROP_ROWS, width): the strip around the candidate's centre and a mask of its rows (meltloc's end
    refinement crop; ``soft``: the fraction of each row inside the candidate)."""
    return ends.crop(normalised, a, b, CROP_ROWS, shift=shift, soft=soft)


Verifier = ends.EndNet  # crop -> one logit (outputs=1), or with outputs=3 also the shifts of the candidate's two ends


def logit(p) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


@torch.no_grad()
def verifier_outputs(net: Verifier, table: pd.DataFrame, cut: dict, soft: bool = False) -> dict:
    """For each melt-layer row of ``table`` (NaN for other rows): ``one``, the verifier's logit; ``flips``, its
    mean over the crop as is, flipped left-right, up-down and both; with a refining net, ``shift_rows`` (rows x
    2), the shifts of its two ends in strip rows, averaged over the same four crops."""
    rows = np.flatnonzero(table["type"].values == "melt_layer")
    out = {"one": np.full(len(table), np.nan), "flips": np.full(len(table), np.nan),
           "shift_rows": np.full((len(table), 2), np.nan)}
    crops = [crop(cut[table["image"].iat[i]][0], *strip_rows(cut[table["image"].iat[i]], table["depth_from_m"].iat[i],
                                                             table["depth_to_m"].iat[i]), soft=soft) for i in rows]
    for k in range(0, len(crops), 256):
        x = torch.from_numpy(np.stack(crops[k:k + 256]))
        passes = [net(x), net(x.flip(3)), net(x.flip(2)), net(x.flip(2).flip(3))]
        if net.outputs == 1:
            out["one"][rows[k:k + 256]] = passes[0].numpy()
            out["flips"][rows[k:k + 256]] = torch.stack(passes).mean(0).numpy()
            continue
        out["one"][rows[k:k + 256]] = passes[0][:, 0].numpy()
        out["flips"][rows[k:k + 256]] = torch.stack([q[:, 0] for q in passes]).mean(0).numpy()
        # an up-down flip turns the top end's shift into minus the bottom end's
        shifts = [passes[0][:, 1:], passes[1][:, 1:], -passes[2][:, [2, 1]], -passes[3][:, [2, 1]]]
        out["shift_rows"][rows[k:k + 256]] = (torch.stack(shifts).mean(0) * OFFSET_ROWS).numpy()
    return out


def refined(table: pd.DataFrame, cut: dict, shift_rows: np.ndarray) -> pd.DataFrame:
    """``table`` with each melt-layer row's ends moved by ``shift_rows``, where the result stays at least
    0.3 mm thick and on the strip."""
    table = table.copy()
    for i in np.flatnonzero(table["type"].values == "melt_layer"):
        entry = cut[table["image"].iat[i]]
        _, strip, scale = entry
        a, b = strip_rows(entry, table["depth_from_m"].iat[i], table["depth_to_m"].iat[i])
        a2, b2 = np.clip([a + shift_rows[i, 0], b + shift_rows[i, 1]], 0, entry[0].shape[0])
        if b2 - a2 >= 3:
            depths = scale.row_to_depth(strip.to_image_rows([a2, b2]))
            table.iloc[i, table.columns.get_loc("depth_from_m")] = float(min(depths))
            table.iloc[i, table.columns.get_loc("depth_to_m")] = float(max(depths))
    return table


def fit_combination(features: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Weights (w_score, w_verifier, bias) of a logistic combination of the two logits."""
    X = torch.tensor(features, dtype=torch.float32)
    Y = torch.tensor(targets, dtype=torch.float32)
    w = torch.zeros(3, requires_grad=True)
    lbfgs = torch.optim.LBFGS([w], max_iter=200)

    def closure():
        lbfgs.zero_grad()
        loss = F.binary_cross_entropy_with_logits(X @ w[:2] + w[2], Y) + 1e-3 * (w[:2] ** 2).sum()
        loss.backward()
        return loss

    lbfgs.step(closure)
    return w.detach().numpy()


def rescore(table: pd.DataFrame, v: np.ndarray, w: np.ndarray) -> pd.DataFrame:
    table = table.copy()
    melt = (table["type"] == "melt_layer").values
    z = w[0] * logit(table.loc[melt, "score"]) + w[1] * v[melt] + w[2]
    table.loc[melt, "score"] = 1 / (1 + np.exp(-z))
    return table


def scored(table: pd.DataFrame, truth: pd.DataFrame, threshold: float) -> dict:
    """Mean AP over every row of ``table``; F1, boundary error and tp / fp / fn of its rows at ``threshold``."""
    overall = evaluate_intervals(table, truth).overall
    at = evaluate_intervals(table[table["score"] >= threshold], truth).overall
    return {"map": overall["map"], "f1": at["f1"], "boundary_mm": at["boundary_mm"],
            "tp_fp_fn": [at[k] for k in ("tp", "fp", "fn")]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="the folder holding the sets")
    ap.add_argument("--work", type=Path, required=True, help="cache and results")
    ap.add_argument("--train", nargs="+", required=True)
    ap.add_argument("--dev", nargs="+", required=True)
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--min-score", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--refine", action="store_true",
                    help="also train the verifier to shift each candidate's ends onto its layer's (soft mask)")
    args = ap.parse_args()
    for name in args.train + args.dev:
        if not (args.data / name / "truth.csv").is_file():
            sys.exit(f"error: {args.data / name} is not a synth folder (no truth.csv)")
    args.work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    cfg = load_detector(WEIGHTS).cfg
    shipped_threshold = float(torch.load(WEIGHTS, weights_only=True, map_location="cpu")["score_threshold"])
    soft = args.refine

    # items: (set, image, a, b, kind, shift of a, shift of b); kind 1/0 a true/false candidate, 2 a true layer
    cuts, items, held_out = {}, [], []
    for name in args.train:
        folder = args.data / name
        table, truth, cut = candidates(folder, name, args.work, args.min_score), pd.read_csv(folder / "truth.csv"), \
            strips(folder, cfg)
        cuts[name] = cut
        images = sorted(cut)
        val = set(rng.choice(images, max(1, round(0.2 * len(images))), replace=False))
        layers = table[table["type"] == "melt_layer"].reset_index(drop=True)
        ys, matched = label(layers, truth, matches=True)
        for r, y, m in zip(layers.itertuples(), ys, matched):
            if r.image not in val and y >= 0:
                a, b = strip_rows(cut[r.image], r.depth_from_m, r.depth_to_m)
                ta, tb = strip_rows(cut[r.image], *m) if y == 1 else (a, b)
                items.append((name, r.image, a, b, int(y), ta - a, tb - b))
        for r in truth[(truth["type"] == "melt_layer") & truth["image"].isin(list(cut))].itertuples():
            if r.image not in val:
                items.append((name, r.image, *strip_rows(cut[r.image], r.depth_from_m, r.depth_to_m), 2, 0.0, 0.0))
        held_out.append((name, table[table["image"].isin(val)].copy(), truth[truth["image"].isin(val)]))
    labels = np.array([min(item[4], 1) for item in items])
    print(f"{len(items)} training crops: {labels.sum()} layers, {(labels == 0).sum()} false candidates", flush=True)
    if not labels.any() or labels.all():
        sys.exit("error: the training sets give no true or no false candidates to learn from")

    def training_crop(item):
        """(crop, the shifts of its candidate's ends onto its layer's in OFFSET_ROWS) of one item, augmented."""
        name, image, a, b, kind, da, db = item
        if kind == 2:  # a true layer: its ends jittered by about 8 % of its thickness
            t = max(b - a, 2.0)
            a2, b2 = a + rng.normal(0, 0.08 * t), b + rng.normal(0, 0.08 * t)
            b2 = max(b2, a2 + 1)
            a, b, da, db = a2, b2, a - a2, b - b2
        x = crop(cuts[name][image][0], a, b, shift=rng.uniform(-4, 4), soft=soft)
        if rng.random() < 0.5:
            x = x[:, :, ::-1]
        if rng.random() < 0.5:
            x = x[:, ::-1, :]
            da, db = -db, -da
        x = x.copy()
        x[0] *= rng.uniform(0.85, 1.15)
        return x, (da / OFFSET_ROWS, db / OFFSET_ROWS)

    net = Verifier(outputs=3 if args.refine else 1)
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 2e-3, total_steps=args.steps)
    positives, negatives, batch = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0), 64
    start = time.time()
    net.train()
    for step in range(args.steps):
        pick = np.concatenate([rng.choice(positives, batch // 2), rng.choice(negatives, batch // 2)])
        made = [training_crop(items[i]) for i in pick]
        x = torch.from_numpy(np.stack([m[0] for m in made]))
        y = torch.from_numpy(labels[pick].astype(np.float32))
        out = net(x)
        if args.refine:
            shift = torch.tensor([m[1] for m in made], dtype=torch.float32)
            loss = F.binary_cross_entropy_with_logits(out[:, 0], y) \
                + (F.smooth_l1_loss(out[:, 1:], shift, reduction="none").sum(1) * y).sum() / y.sum()
        else:
            loss = F.binary_cross_entropy_with_logits(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0:
            print(f"step {step}: loss {loss.item():.4f} ({time.time() - start:.0f} s)", flush=True)
    net.eval()
    torch.save(net.state_dict(), args.work / "verifier.pt")

    # on the held-out sections: one combination and threshold per way of scoring (one pass, four flips)
    modes = ["one", "flips"]
    outputs = {name: verifier_outputs(net, table, cuts[name], soft) for name, table, _ in held_out}
    results = {"dev": {}}
    for mode in modes:
        features, targets = [], []
        for name, table, truth in held_out:
            melt = (table["type"] == "melt_layer").values
            y = label(table[melt].reset_index(drop=True), truth)
            features.append(np.stack([logit(table["score"].values[melt]), outputs[name][mode][melt]], 1)[y >= 0])
            targets.append(y[y >= 0])
        w = fit_combination(np.concatenate(features), np.concatenate(targets))
        val_table = pd.concat([rescore(t, outputs[name][mode], w) for name, t, _ in held_out])
        val_truth = pd.concat([t[t["type"].isin(SCORED)] for _, _, t in held_out])
        best_f1, _, threshold = max((evaluate_intervals(val_table[val_table["score"] >= t], val_truth).overall["f1"],
                                     -abs(t - 0.5), round(float(t), 2)) for t in np.arange(0.2, 0.9, 0.05))
        results[mode] = {"combination": w.tolist(), "threshold": threshold, "held_out_f1": best_f1}
        print(f"held out ({mode}): {int(sum(len(t) for t in targets))} candidates; combination "
              f"{np.round(w, 3).tolist()}; threshold {threshold} (F1 {best_f1:.3f})", flush=True)

    for name in args.dev:
        folder = args.data / name
        table, truth, cut = candidates(folder, name, args.work, args.min_score), pd.read_csv(folder / "truth.csv"), \
            strips(folder, cfg)
        truth = truth[truth["type"].isin(SCORED)]
        out = verifier_outputs(net, table, cut, soft)
        rows = {"ensemble": scored(table, truth, shipped_threshold)}
        for mode in modes:
            m = results[mode]
            new = rescore(table, out[mode], np.array(m["combination"]))
            rows[mode] = scored(new, truth, m["threshold"])
            if args.refine:
                rows[mode + "+refine"] = scored(refined(new, cut, out["shift_rows"]), truth, m["threshold"])
        results["dev"][name] = rows
        for k, r in rows.items():
            print(f"{name} {k:>14}: mean AP {r['map']:.3f}  F1 {r['f1']:.3f}  boundary {r['boundary_mm']:.3f} mm  "
                  f"tp/fp/fn {r['tp_fp_fn']}", flush=True)
    (args.work / "results.json").write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
