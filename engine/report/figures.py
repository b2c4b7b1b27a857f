"""Every figure xsift draws (matplotlib's object API, no pyplot: importing or calling this module leaves
matplotlib's backend as it was; every file is written atomically). Figures of many points are drawn
as densities in small multiples (one panel per category, one colour scale), never as overplotted
points, so that millions of detections stay legible and draw in bounded time and memory.

* :func:`confusion_figure` — a row-normalised confusion matrix (the paper's Fig. 4 and 5);
* :func:`hardness_diagram` (:func:`hardness_by_cluster`) — hardness-hardness diagram (``hard_ms``
  against ``hard_hm``), one panel per cluster or class, density of detections per hexagon on a log
  scale (or a column's mean per hexagon) (Fig. 3);
* :func:`sky_map` — Mollweide maps in galactic coordinates, one panel per category (cluster,
  aggregated master class), density of detections per square degree on a log scale (Fig. 2 and 8);
* :func:`plot_bic` — BIC and its gradient against K (the Pérez-Díaz paper's Fig. 1);
* :func:`plot_tracks` — a naive-Bayes probability track (the Tranin paper's Fig. 2);
* :func:`plot_outliers` — the naive-Bayes outlier measure per predicted class.
* :func:`reliability_figure` — reliability diagram of class probabilities with the ECE (validation).
"""
from __future__ import annotations

import pathlib

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from xsift.data.io import atomic_write


def _save(fig, path) -> pathlib.Path:
    path = pathlib.Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def confusion_figure(matrix: np.ndarray, labels: list[str], path, *, title: str = "",
                     counts: np.ndarray | None = None) -> pathlib.Path:
    """matrix (L, L) row-normalised (rows: true class, columns: predicted class); with ``counts`` (L, L),
    the cells are coloured by ``matrix`` and labelled with the counts."""
    L = len(labels)
    fig = Figure(figsize=(1.0 + 0.6 * L, 0.8 + 0.55 * L))
    ax = fig.subplots()
    im = ax.imshow(matrix, vmin=0, vmax=1, cmap="Blues")
    ax.set_xticks(range(L), labels, rotation=45, ha="right")
    ax.set_yticks(range(L), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for i in range(L):
        for j in range(L):
            v = matrix[i, j]
            ax.text(j, i, f"{v:.2f}" if counts is None else f"{int(counts[i, j])}", ha="center", va="center",
                    fontsize=7,
                    color="white" if v > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="fraction of the true class")
    ax.set_title(title)
    return _save(fig, path)


#: axis labels of the CSC preset's hardness ratios (CSC bands: s 0.5-1.2 keV, m 1.2-2 keV, h 2-7 keV);
#: other columns are labelled with their name
AXIS_LABELS = {
    "hard_hm": "hard_hm = (H − M) / (H + M)   [H 2–7 keV, M 1.2–2 keV]",
    "hard_ms": "hard_ms = (M − S) / (M + S)   [M 1.2–2 keV, S 0.5–1.2 keV]",
    "hard_hs": "hard_hs = (H − S) / (H + S)   [H 2–7 keV, S 0.5–1.2 keV]",
    "var_prob_h": "var_prob_h (probability of variability, 2–7 keV)",
}


def _panel_order(category: np.ndarray) -> tuple[list, np.ndarray]:
    """(category values in panel order, counts): integer-like values (clusters) in numeric order,
    names (classes) by decreasing count."""
    values, codes = np.unique(category, return_inverse=True)
    counts = np.bincount(codes.ravel(), minlength=len(values))
    try:
        numeric = np.asarray(values, dtype=float)
        order = np.argsort(numeric, kind="stable")
    except (TypeError, ValueError):
        order = np.lexsort((values.astype(str), -counts))
    return [values[i] for i in order], counts[order]


def _panel_grid(n: int, max_cols: int = 3) -> tuple[int, int]:
    cols = max(1, min(max_cols, n))
    return -(-n // cols), cols


def galactic_lonlat(ra, dec) -> tuple[np.ndarray, np.ndarray]:
    """Galactic longitude l in [-180, 180) and latitude b (degrees) of ICRS ``ra``, ``dec`` (degrees),
    through astropy."""
    from astropy.coordinates import SkyCoord
    import astropy.units as u
    gal = SkyCoord(np.asarray(ra, dtype=float) * u.deg, np.asarray(dec, dtype=float) * u.deg,
                   frame="icrs").galactic
    return gal.l.wrap_at(180 * u.deg).deg, gal.b.deg


def sky_density(l_deg, b_deg, resolution_deg: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(l edges (nl+1,), b edges (nb+1,), density (nb, nl) in detections per square degree) of points
    at galactic ``l_deg`` in [-180, 180), ``b_deg``: counts in cells of ``resolution_deg`` on each side,
    divided by each cell's solid angle, Δl (sin b₂ − sin b₁) sr, in square degrees."""
    nl = max(1, int(round(360 / resolution_deg)))
    nb = max(1, int(round(180 / resolution_deg)))
    l_edges = np.linspace(-180.0, 180.0, nl + 1)
    b_edges = np.linspace(-90.0, 90.0, nb + 1)
    counts, _, _ = np.histogram2d(np.asarray(b_deg, float), np.asarray(l_deg, float), bins=(b_edges, l_edges))
    area_sr = np.radians(360.0 / nl) * np.diff(np.sin(np.radians(b_edges)))
    area_deg2 = area_sr * (180.0 / np.pi) ** 2
    return l_edges, b_edges, counts / area_deg2[:, None]


def hardness_diagram(detections, path, **options) -> pathlib.Path:
    """:func:`hardness_figure` written to ``path`` (PNG, atomically); returns ``path``."""
    return _save(hardness_figure(detections, **options), path)


def hardness_figure(detections, *, by: str = "cluster", x: str = "hard_hm", y: str = "hard_ms",
                    colour: str | None = None, gridsize: int = 50, title: str = "",
                    label: str | None = None) -> Figure:
    """Small multiples of a hardness-hardness diagram (the paper's Fig. 3): one panel per value of the
    column ``by`` (a cluster, a predicted class), each a hexagonal 2-D histogram of ``y`` against ``x``
    on shared axes, so that millions of detections stay legible.

    colour None (default): each hexagon's number of detections on a log colour scale shared by all
    panels; a column name (e.g. ``var_prob_h``, in [0, 1]): that column's mean per hexagon.
    Rows with a missing ``by``, ``x`` or ``y`` are left out. ``label``: how panel titles name ``by``
    (default: its name). Returns the figure: one axes per panel, then the colour bar's.
    Raises XsiftError when no row has all of ``by``, ``x``, ``y``.
    """
    from matplotlib.colors import LogNorm, Normalize
    from xsift.errors import XsiftError
    cat = np.asarray(detections[by], dtype=object)
    xv = np.asarray(detections[x], dtype=float)
    yv = np.asarray(detections[y], dtype=float)
    cv = None if colour is None else np.asarray(detections[colour], dtype=float)
    keep = np.isfinite(xv) & np.isfinite(yv) & ~pd.isna(cat)
    if cv is not None:
        keep &= np.isfinite(cv)
    if not keep.any():
        raise XsiftError(f"hardness diagram: no row has {by}, {x} and {y} all present")
    cat, xv, yv = cat[keep].astype(str), xv[keep], yv[keep]
    cv = None if cv is None else cv[keep]
    values, counts = _panel_order(cat)
    rows, cols = _panel_grid(len(values))
    extent = (float(xv.min()), float(xv.max()), float(yv.min()), float(yv.max()))
    fig = Figure(figsize=(3.6 * cols + 1.0, 3.2 * rows + 0.6), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    norm = Normalize(0.0, 1.0) if cv is not None else LogNorm(vmin=1.0, vmax=1.0)
    coll, top = None, 1.0
    name = by if label is None else label
    for k, ax in enumerate(axes.ravel()):
        if k >= len(values):
            ax.remove()   # an empty cell of the grid: no axes left in the figure
            continue
        sel = cat == values[k]
        if cv is None:
            coll = ax.hexbin(xv[sel], yv[sel], gridsize=gridsize, extent=extent, mincnt=1, norm=norm,
                             cmap="viridis", linewidths=0.0)
            arr = np.ma.compressed(coll.get_array())
            top = max(top, float(arr.max()) if arr.size else 1.0)
        else:
            coll = ax.hexbin(xv[sel], yv[sel], C=cv[sel], reduce_C_function=np.mean, gridsize=gridsize,
                             extent=extent, norm=norm, cmap="viridis", linewidths=0.0)
        ax.set_title(f"{name} {values[k]}  ({int(counts[k]):,})", fontsize=9)
        ax.grid(True, alpha=0.3, lw=0.5)
        if k // cols == rows - 1 or k + cols >= len(values):   # lowest panel of its column
            ax.set_xlabel(AXIS_LABELS.get(x, x), fontsize=7)
            ax.xaxis.set_tick_params(labelbottom=True)
        if k % cols == 0:
            ax.set_ylabel(AXIS_LABELS.get(y, y), fontsize=7)
    if cv is None:
        norm.vmax = top          # one colour scale over every panel (the norm object is shared)
        cbar_label = "detections per hexagon (log scale)"
    else:
        cbar_label = f"mean {AXIS_LABELS.get(colour, colour)} per hexagon"
    fig.colorbar(coll, ax=list(axes.ravel()[:len(values)]), label=cbar_label, shrink=0.8)
    fig.suptitle((title + "\n" if title else "") + f"{y} against {x}, one panel per {name}", fontsize=10)
    return fig


def hardness_by_cluster(detections, path, *, n_clusters: int | None = None, x: str = "hard_hm",
                        y: str = "hard_ms", colour: str | None = None) -> pathlib.Path:
    """:func:`hardness_diagram` with one panel per cluster (column ``cluster``); ``n_clusters`` is
    accepted for the callers that pass it (the panels are the clusters present)."""
    return hardness_diagram(detections, path, by="cluster", x=x, y=y, colour=colour, label="cluster")


def sky_map(ra, dec, category, path, **options) -> pathlib.Path:
    """:func:`sky_figure` written to ``path`` (PNG, atomically); returns ``path``."""
    return _save(sky_figure(ra, dec, category, **options), path)


def sky_figure(ra, dec, category, *, title: str = "", resolution_deg: float = 2.0, label: str = "",
               what: str = "detections") -> Figure:
    """Small multiples of the sky (the paper's Fig. 2 and 8): one Mollweide panel in galactic
    coordinates per value of ``category`` (cluster, class), each the density of its rows in
    ``what`` (detections, sources) per square degree (:func:`sky_density`, cells of ``resolution_deg``) on a log colour
    scale shared by all panels; empty cells are left blank. Galactic longitude increases to the left
    (the astronomers' convention); the Galactic centre is in the middle.

    ra, dec: (n,) ICRS degrees; category: (n,) values (rows with a missing one are left out).
    ``label``: how panel titles name a category (e.g. ``"cluster"``). Returns the figure: one
    Mollweide axes per panel, then the colour bar's. Memory and time grow with n only through one coordinate transform and one histogram
    per panel: millions of detections draw as fast as thousands.
    """
    from matplotlib.colors import LogNorm
    from matplotlib.patheffects import withStroke
    from xsift.errors import XsiftError
    cat = np.asarray(category, dtype=object)
    present = ~pd.isna(cat)
    ra = np.asarray(ra, dtype=float)
    dec = np.asarray(dec, dtype=float)
    present &= np.isfinite(ra) & np.isfinite(dec)
    if not present.any():
        raise XsiftError("sky map: no row has ra, dec and a category")
    cat = cat[present].astype(str)
    l_deg, b_deg = galactic_lonlat(ra[present], dec[present])
    values, counts = _panel_order(cat)
    grids = []
    for value in values:
        sel = cat == value
        l_edges, b_edges, dens = sky_density(l_deg[sel], b_deg[sel], resolution_deg)
        grids.append(np.ma.masked_less_equal(dens, 0.0))
    positive = [g.compressed() for g in grids if g.count()]
    vmin = min(float(p.min()) for p in positive)
    vmax = max(float(p.max()) for p in positive)
    norm = LogNorm(vmin=vmin, vmax=max(vmax, vmin * 10))
    rows, cols = _panel_grid(len(values))
    fig = Figure(figsize=(4.6 * cols, 2.6 * rows + 1.1), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, subplot_kw={"projection": "mollweide"})
    # matplotlib's Mollweide axes take longitude in radians increasing to the right: draw -l
    lon = -np.radians(l_edges)
    lat = np.radians(b_edges)
    mesh = None
    tick_l = np.arange(-150, 180, 60)
    for k, ax in enumerate(axes.ravel()):
        if k >= len(values):
            ax.remove()   # an empty cell of the grid: no axes left in the figure
            continue
        ax.set_facecolor("0.93")   # empty sky grey, so that the faintest density still shows
        mesh = ax.pcolormesh(lon, lat, grids[k], norm=norm, cmap="viridis", shading="flat", rasterized=True)
        ax.set_xticks(np.radians(tick_l), [f"{int(-t) % 360}°" for t in tick_l], fontsize=6,
                      path_effects=[withStroke(linewidth=2, foreground="white")])
        ax.tick_params(axis="y", labelsize=6)
        ax.grid(True, alpha=0.35, lw=0.5)
        ax.set_title(f"{(label + ' ') if label else ''}{values[k]}  ({int(counts[k]):,})", fontsize=9)
        if k % cols == 0:
            ax.set_ylabel("galactic latitude b (deg)", fontsize=7)
        if k // cols == rows - 1 or k + cols >= len(values):
            ax.set_xlabel("galactic longitude l (deg)", fontsize=7)
    fig.colorbar(mesh, ax=list(axes.ravel()[:len(values)]), orientation="horizontal", shrink=0.6, aspect=40,
                 label=f"{what} per deg² (log scale; cells of {resolution_deg:g}° × {resolution_deg:g}°)")
    fig.suptitle((title + " — " if title else "") + "galactic coordinates (Mollweide), one panel per "
                 + (label or "category"), fontsize=10)
    return fig


def plot_bic(table: pd.DataFrame, chosen_k: int, path: pathlib.Path, title: str = "") -> pathlib.Path:
    """BIC (top, with ±1 std band) and its gradient (bottom) against K, chosen K marked; written atomically."""

    k = table["k"].to_numpy()
    fig = Figure(figsize=(6.0, 6.0))
    top, bottom = fig.subplots(2, 1, sharex=True)
    m, s = table["bic_mean"].to_numpy(), table["bic_std"].to_numpy()
    top.plot(k, m, "o-", color="k", ms=3)
    top.fill_between(k, m - s, m + s, color="0.7", alpha=0.6, lw=0)
    top.set_ylabel("BIC")
    bottom.plot(k, table["gradient"].to_numpy(), "o-", color="k", ms=3)
    bottom.set_ylabel("gradient of BIC")
    bottom.set_xlabel("number of components K")
    for ax in (top, bottom):
        ax.axvline(chosen_k, color="r", ls="--", lw=1, label=f"chosen K = {chosen_k}")
    top.legend(loc="upper right")
    if title:
        top.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    return path


def plot_tracks(track: pd.DataFrame, classes: list[str], title: str, path) -> None:
    """The seed's Fig. 2: one horizontal stacked bar of class probabilities per track row."""
    fig = Figure(figsize=(7, 0.45 * len(track) + 1.4))
    ax = fig.subplots()
    y = np.arange(len(track))[::-1]
    left = np.zeros(len(track))
    colours = matplotlib.colormaps["tab10"].colors
    for i, c in enumerate(classes):
        v = track[c].to_numpy(float)
        ax.barh(y, v, left=left, color=colours[i % 10], label=c, height=0.8)
        left += v
    labels = [(f"{r['name']} = {r['value']:.3g}" if r["level"] == "property" else
               f"[{r['name']}]" if r["level"] == "category" else "POSTERIOR") for _, r in track.iterrows()]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("class probability given this property (or category) alone")
    ax.set_title(title, fontsize=9)
    ax.legend(ncol=len(classes), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.6 / len(track)))
    fig.tight_layout()
    with atomic_write(pathlib.Path(path)) as tmp:
        fig.savefig(tmp, format=pathlib.Path(path).suffix.lstrip(".") or "png", dpi=120)


def plot_outliers(om: np.ndarray, pred: np.ndarray, classes: list[str], path) -> None:
    """Histogram of the naive-Bayes outlier measure, one step line per predicted class, log counts."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ok = np.isfinite(om)
    bins = np.linspace(np.nanmin(om[ok]), np.nanmax(om[ok]), 60) if ok.sum() > 1 else 10
    for i, c in enumerate(classes):
        sel = ok & (pred == i)
        if sel.any():
            ax.hist(om[sel], bins=bins, histtype="step", label=f"{c} ({sel.sum()})")
    ax.set_xlabel("outlier measure  -log10 sum_C numerator of Eq. 1")
    ax.set_ylabel("sources")
    ax.set_yscale("log")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_write(pathlib.Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=120)


def reliability_figure(curves: dict, path, *, title: str = "") -> pathlib.Path:
    """Reliability diagram (Guo et al. 2017, Fig. 1): per confidence bin, the fraction of correct
    predictions (markers joined by lines) against the mean top-class probability, the diagonal of
    perfect calibration, each curve's ECE in the legend, and below it the detections per bin (log scale).

    curves: label (e.g. ``"raw softmin"``, ``"calibrated, T = 1.8"``) -> a
    :func:`xsift.methods.metrics.reliability` dict (``edges``, ``count``, ``confidence``, ``accuracy``,
    ``ece``). Written atomically as PNG; returns ``path``.
    """
    fig = Figure(figsize=(5.2, 6.0))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    top.plot([0, 1], [0, 1], color="0.5", lw=1, ls="--", label="perfect calibration")
    for i, (label, rel) in enumerate(curves.items()):
        conf = np.asarray(rel["confidence"], dtype=float)
        acc = np.asarray(rel["accuracy"], dtype=float)
        edges = np.asarray(rel["edges"], dtype=float)
        count = np.asarray(rel["count"], dtype=float)
        ok = count > 0
        colour = f"C{i}"
        top.plot(conf[ok], acc[ok], "o-", ms=4, color=colour, label=f"{label}: ECE {rel['ece']:.3f}")
        bottom.stairs(count, edges, color=colour, lw=1.2)
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("fraction correct in the bin")
    top.legend(loc="upper left", fontsize=8)
    bottom.set_yscale("log")
    bottom.set_xlabel("probability of the predicted class (bin mean)")
    bottom.set_ylabel("detections")
    if title:
        top.set_title(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)
