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
