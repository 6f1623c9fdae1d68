"""Overlay pictures: a section strip with its detections and depth ticks in meters."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from meltloc import MELT_LAYER
from meltloc.atomic import atomic_path
from meltloc.section import Section
from meltloc.strips import make_strip, nominal_px_per_mm

COLOURS = {MELT_LAYER: "#ff3b30", "melt_lens": "#ffcc00", "truth": "#34c759"}


def draw_overlay(section: Section, detections: list[dict], path: str | Path, label: str = "",
                 truth: list[dict] | None = None, panels: int = 4) -> None:
    """Write a PNG: the strip cut into ``panels`` columns, detections as coloured bars beside it.

    Args:
        section: the section drawn.
        detections: rows with ``row_from``, ``row_to``, ``type``, ``score`` (image rows).
        path: PNG to write.
        label: title text (e.g. the head).
        truth: optional true intervals (``row_from``, ``row_to``), drawn in green on the left.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    image_px_per_mm = section.scale.px_per_m / 1000 if section.scale is not None else nominal_px_per_mm(section.bounds)
    strip = make_strip(section.image, section.bounds, image_px_per_mm, px_per_mm=2.0, width=40)
    pix = strip.pixels
    n = pix.shape[0]
    per = int(np.ceil(n / panels))
    fig, axes = plt.subplots(1, panels, figsize=(2.2 * panels, 11), squeeze=False)
    to_strip = strip.to_strip_rows
    for k, ax in enumerate(axes[0]):
        a, b = k * per, min(n, (k + 1) * per)
        ax.imshow(pix[a:b], cmap="gray", vmin=0, vmax=255, aspect="auto", extent=(0, 40, b, a), interpolation="nearest")
        for rows, x0, colour_of in ((truth or [], -14, lambda r: COLOURS["truth"]),
                                    (detections, 42, lambda r: COLOURS.get(r["type"], "#0a84ff"))):
            for r in rows:
                s0, s1 = to_strip([r["row_from"], r["row_to"]])
                if s1 < a or s0 > b:
                    continue
                height = max(s1 - s0, 1.5)
                ax.add_patch(plt.Rectangle((x0, s0), 12, height, color=colour_of(r), alpha=0.9, clip_on=False))
        ax.set_xlim(-16, 56)
        ax.set_ylim(b, a)
        ax.set_xticks([])
        ticks = np.arange(a, b, 2.0 * 50)  # every 5 cm at 2 px/mm
        ax.set_yticks(ticks)
        if section.scale is not None:
            depth = section.scale.row_to_depth(strip.to_image_rows(ticks))
            ax.set_yticklabels([f"{d:.2f}" for d in depth], fontsize=7)
        else:
            ax.set_yticklabels([f"{int(r)}" for r in strip.to_image_rows(ticks)], fontsize=7)
        for side in ("top", "right", "bottom"):
            ax.spines[side].set_visible(False)
    unit = "depth [m]" if section.scale is not None else "image row"
    axes[0][0].set_ylabel(unit)
    title = f"{section.name}  {label}  (right: detections, red = melt layer, yellow = lens"
    title += "; left: truth)" if truth else ")"
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)


IGNORE_COLOUR = "#8e8e93"
TRUTH_LENS_COLOUR = "#30b0c7"


def draw_comparison(section: Section, truth: list[dict], lanes: dict[str, list[dict]], path: str | Path,
                    title: str = "", panels: int = 3, px_per_mm: float = 2.0) -> None:
    """Write a PNG: the section strip with the truth and each head's intervals in lanes beside it.

    The strip is cut along depth into ``panels`` columns; in each, the core
    image, then a lane for the truth (green; lenses blue, ignore regions grey), then one
    lane per head (red: melt layer, yellow: lens). Intervals thinner than
    1.5 strip rows are drawn 1.5 rows high so that they stay visible.

    Args:
        section: the section drawn.
        truth: true intervals as ``type``, ``row_from``, ``row_to`` (image rows).
        lanes: lane title (a head) -> its detections (``type``, ``row_from``, ``row_to``).
        path: PNG to write.
        title: figure title.
        panels: columns the strip is cut into.
        px_per_mm: strip rows per mm of core.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    image_px_per_mm = section.scale.px_per_m / 1000 if section.scale is not None else nominal_px_per_mm(section.bounds)
    strip = make_strip(section.image, section.bounds, image_px_per_mm, px_per_mm=px_per_mm, width=40)
    pix, n = strip.pixels, strip.pixels.shape[0]
    per = int(np.ceil(n / panels))
    names = ["truth", *lanes]
    lane_w, gap = 10.0, 3.0
    x_end = 40 + gap + len(names) * (lane_w + gap)
    fig = Figure(figsize=(max(7.5, panels * (0.9 + 0.32 * len(names))), 11.5), layout="constrained")
    axes = fig.subplots(1, panels, squeeze=False)[0]
    for k, ax in enumerate(axes):
        a, b = k * per, min(n, (k + 1) * per)
        ax.imshow(pix[a:b], cmap="gray", vmin=0, vmax=255, aspect="auto", extent=(0, 40, b, a),
                  interpolation="nearest")
        for j, name in enumerate(names):
            x0 = 40 + gap + j * (lane_w + gap)
            ax.add_patch(Rectangle((x0, a), lane_w, b - a, color="#f2f2f7", zorder=0))
            rows = truth if name == "truth" else lanes[name]
            for r in rows:
                s0, s1 = strip.to_strip_rows([r["row_from"], r["row_to"]])
                if s1 < a or s0 > b:
                    continue
                kind = r.get("type", MELT_LAYER)
                if name == "truth":
                    colour = {"uncertain": IGNORE_COLOUR, "bubble_free": IGNORE_COLOUR,
                              "melt_lens": TRUTH_LENS_COLOUR}.get(kind, COLOURS["truth"])
                else:
                    colour = COLOURS.get(kind, "#0a84ff")
                height = max(s1 - s0, 1.5)
                ax.add_patch(Rectangle((x0, s0 - (height - (s1 - s0)) / 2), lane_w, height, color=colour, zorder=2))
        ax.set_xlim(0, x_end)
        ax.set_ylim(b, a)
        ax.set_xticks([40 + gap + j * (lane_w + gap) + lane_w / 2 for j in range(len(names))],
                      names, rotation=90, fontsize=7)
        ax.xaxis.tick_top()
        ticks = np.arange(a, b, px_per_mm * 50)  # every 5 cm
        ax.set_yticks(ticks)
        if section.scale is not None:
            depth = section.scale.row_to_depth(strip.to_image_rows(ticks))
            ax.set_yticklabels([f"{d:.2f}" for d in depth], fontsize=7)
        else:
            ax.set_yticklabels([f"{int(r)}" for r in strip.to_image_rows(ticks)], fontsize=7)
        for side in ("right", "bottom"):
            ax.spines[side].set_visible(False)
    axes[0].set_ylabel("depth [m]" if section.scale is not None else "image row")
    fig.suptitle((title or section.name) + "\ntruth: green melt layer, blue lens, grey ignore region; "
                 "detections: red melt layer, yellow lens", fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
