"""Plots of a melt record: melt per bin against depth or age, coverage shaded, events as ticks; two records compared."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from meltloc import MELT_LAYER, MELT_LENS
from meltloc.agescale import AgeScale
from meltloc.atomic import atomic_path

LAYER_COLOUR = "#1f4e9c"
LENS_COLOUR = "#e08a00"
OTHER_COLOUR = "#c0392b"
GAP_COLOUR = "#d9d9d9"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _gaps(coverage: np.ndarray, top: float, bottom: float) -> list[tuple[float, float]]:
    """Stretches of ``[top, bottom]`` outside the imaged core."""
    gaps, at = [], top
    for a, b in coverage:
        if a > at + 1e-9:
            gaps.append((at, min(a, bottom)))
        at = max(at, b)
    if at < bottom - 1e-9:
        gaps.append((at, bottom))
    return [(a, b) for a, b in gaps if b > a]


def _save(fig, out: Path, stem: str) -> dict[str, Path]:
    files = {}
    for ext in ("png", "svg"):
        path = out / f"{stem}.{ext}"
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=150, bbox_inches="tight", format=ext)
        files[f"{stem}_{ext}"] = path
    return files


def _x_of(values, by: str, scale: AgeScale | None):
    """Depths -> the plot's x (depth, or age b2k)."""
    values = np.asarray(values, dtype=float)
    return values if by == "depth" else scale.at(values)


def _age_axis(ax) -> None:
    """A top axis in years CE over an x axis in years b2k."""
    top = ax.secondary_xaxis("top", functions=(lambda b2k: 2000 - b2k, lambda ce: 2000 - ce))
    top.set_xlabel("year CE (= 2000 - b2k)")


def plot_record(record, out: Path, by: str = "depth", scale: AgeScale | None = None) -> dict[str, Path]:
    """``record_depth.png/.svg`` (or ``record_age`` with ``by='age'``): melt per bin, gaps shaded, events as ticks."""
    plt = _pyplot()
    t = record.table
    fig, (ax, ev) = plt.subplots(2, 1, figsize=(10, 4.8), sharex=True, gridspec_kw={"height_ratios": [5, 1]})
    tops, bots = _x_of(t["bin_top_m"], by, scale), _x_of(t["bin_bot_m"], by, scale)
    if by == "age" and record.by_age:
        tops, bots = t["age_top_b2k"].to_numpy(float), t["age_bot_b2k"].to_numpy(float)
    melt = t["melt_mm"].to_numpy(float)
    ok = np.isfinite(tops) & np.isfinite(bots) & np.isfinite(melt)
    ax.bar(tops[ok], melt[ok], width=(bots - tops)[ok], align="edge", color=LAYER_COLOUR, alpha=0.85,
           edgecolor="white", linewidth=0.5, label="melt per bin (mm)")
    lo = np.nanmin(np.r_[tops, bots])
    hi = np.nanmax(np.r_[tops, bots])
    top_m, bot_m = float(t["bin_top_m"].iloc[0]), float(t["bin_bot_m"].iloc[-1])
    # Imaged stretches in the plot's x (ages of undated core collapse onto the scale's ends).
    cov_x = record.coverage if by == "depth" else np.interp(record.coverage, scale.depth_m, scale.value)
    first = True
    for xa, xb in _gaps(cov_x, lo, hi):
        for axis in (ax, ev):
            axis.axvspan(xa, xb, color=GAP_COLOUR, alpha=0.8, lw=0, zorder=2,
                         label="not imaged" if first and axis is ax else None)
        first = False
    f = record.features
    layers, lenses = f[f["type"] == MELT_LAYER], f[f["type"] == MELT_LENS]
    ev.eventplot([_x_of((layers["depth_from_m"] + layers["depth_to_m"]) / 2, by, scale)], lineoffsets=0.7,
                 linelengths=0.5, colors=LAYER_COLOUR, linewidths=1.0)
    ev.eventplot([_x_of((lenses["depth_from_m"] + lenses["depth_to_m"]) / 2, by, scale)], lineoffsets=0.25,
                 linelengths=0.35, colors=LENS_COLOUR, linewidths=1.0)
    ev.set_yticks([0.7, 0.25], [f"layers ({len(layers)})", f"lenses ({len(lenses)})"], fontsize=8)
    ev.set_ylim(0, 1)
    ax.set_xlim(lo, hi)
    ax.set_ylabel("melt per bin (mm of layer thickness)")
    pct_axis = ax.twinx()
    pct = t["melt_percent"].to_numpy(float)
    shown = np.isfinite(pct) & np.isfinite(tops) & np.isfinite(bots)
    pct_axis.plot((tops + bots)[shown] / 2, pct[shown], "D", color="black", markersize=4,
                  label="melt, % of imaged core")
    pct_axis.set_ylabel("melt (% of imaged core)")
    pct_axis.set_ylim(0, max(1e-6, np.nanmax(pct[shown]) if shown.any() else 1) * 1.15)
    ax.set_ylim(0, max(1e-6, np.nanmax(melt[ok]) if ok.any() else 1) * 1.15)
    bin_text = (f"{record.table['age_bot_b2k'].iloc[0] - record.table['age_top_b2k'].iloc[0]:g}-year bins"
                if record.by_age else f"{bot_m - top_m if len(t) == 1 else t['bin_bot_m'].iloc[0] - t['bin_top_m'].iloc[0]:g} m bins")
    total = float(np.nansum(melt))
    imaged = float(t["imaged_m"].sum())
    pct = total / (imaged * 1000) * 100 if imaged > 0 else float("nan")
    ax.set_title(f"{record.name}: {len(layers)} melt layers, {total:.1f} mm of melt in {imaged:.2f} m imaged "
                 f"({pct:.2f} %), {bin_text}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    more = pct_axis.get_legend_handles_labels()
    pct_axis.legend(handles + more[0], labels + more[1], loc="upper right", fontsize=8, framealpha=0.9)
    if by == "depth":
        ev.set_xlabel("depth (m)")
    else:
        ev.set_xlabel(f"age (years b2k, from {Path(scale.path).name or 'the depth-age scale'})")
        _age_axis(ax)
    fig.tight_layout()
    files = _save(fig, out, f"record_{by}")
    plt.close(fig)
    return files


def plot_compare(a, b, agreement, out: Path) -> dict[str, Path]:
    """``compare.png/.svg``: melt and layer counts per bin of both records on shared axes, against depth."""
    plt = _pyplot()
    ta, tb = a.table, b.table
    na, nb = agreement.names
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(10, 5.6), sharex=True)
    edges = np.r_[ta["bin_top_m"].to_numpy(float), float(ta["bin_bot_m"].iloc[-1])]
    for axis, col, unit in ((ax, "melt_mm", "melt per bin (mm)"), (ax2, "n_layers", "melt layers per bin")):
        for table, name, colour, style in ((ta, na, LAYER_COLOUR, "-"), (tb, nb, OTHER_COLOUR, "--")):
            values = table[col].astype(float).to_numpy()
            axis.stairs(np.where(np.isfinite(values), values, np.nan), edges, color=colour, linestyle=style,
                        linewidth=1.8, label=f"{name} ({Path(table is ta and a.name or b.name).name})")
        axis.set_ylabel(unit)
        axis.grid(axis="y", alpha=0.3)
        for g0, g1 in _gaps(a.coverage, edges[0], edges[-1]):
            axis.axvspan(g0, g1, color=GAP_COLOUR, lw=0, zorder=0)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    fig_ = agreement.figures
    ax.set_title(f"{na} vs {nb}: r(melt) = {_r(fig_['r_melt_mm'])}, r(layers) = {_r(fig_['r_n_layers'])} over "
                 f"{fig_['bins']} bins; total melt {fig_[f'total_melt_mm_{na}']:.1f} vs {fig_[f'total_melt_mm_{nb}']:.1f} mm",
                 fontsize=10)
    ax2.set_xlabel("depth (m); grey: not imaged")
    ax.set_xlim(edges[0], edges[-1])
    fig.tight_layout()
    files = _save(fig, out, "compare")
    plt.close(fig)
    return files


def _r(value: float) -> str:
    return "undefined" if not np.isfinite(value) else f"{value:.3f}"
