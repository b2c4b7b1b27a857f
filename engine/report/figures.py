"""Every figure xsift draws (matplotlib's object API, no pyplot: importing or calling this module leaves
matplotlib's backend as it was; every file is written atomically).

* :func:`confusion_figure` — a row-normalised confusion matrix (the paper's Fig. 4 and 5);
* :func:`hardness_by_cluster` — hardness-hardness diagram (``hard_ms`` against ``hard_hm``) per
  cluster, coloured by ``var_prob_h`` (Fig. 3);
* :func:`sky_map` — Mollweide map in galactic coordinates coloured by a category (cluster,
  aggregated master class; Fig. 2 and 8);
* :func:`plot_bic` — BIC and its gradient against K (the Pérez-Díaz paper's Fig. 1);
* :func:`plot_tracks` — a naive-Bayes probability track (the Tranin paper's Fig. 2);
* :func:`plot_outliers` — the naive-Bayes outlier measure per predicted class.
"""
from __future__ import annotations

import pathlib

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from xsift.data.io import atomic_write


def _save(fig, path) -> pathlib.Path:
    path = pathlib.Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def confusion_figure(matrix: np.ndarray, labels: list[str], path, *, title: str = "") -> pathlib.Path:
    """matrix (L, L) row-normalised (rows: true class, columns: predicted class)."""
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
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="white" if v > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title)
    return _save(fig, path)


def hardness_by_cluster(detections, path, *, n_clusters: int, x: str = "hard_hm", y: str = "hard_ms",
                        colour: str = "var_prob_h") -> pathlib.Path:
    """One panel per cluster: ``y`` against ``x`` of the detections, coloured by ``colour``."""
    cols = min(3, n_clusters)
    rows = -(-n_clusters // cols)
    fig = Figure(figsize=(4 * cols, 3.6 * rows))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    cl = np.asarray(detections["cluster"])
    xv, yv, cv = (np.asarray(detections[c], dtype=float) for c in (x, y, colour))
    sc = None
    for k in range(rows * cols):
        ax = axes[k // cols][k % cols]
        if k >= n_clusters:
            ax.axis("off")
            continue
        sel = cl == k
        sc = ax.scatter(xv[sel], yv[sel], c=cv[sel], s=3, cmap="viridis", vmin=0, vmax=1, rasterized=True)
        ax.set_title(f"cluster {k} ({int(sel.sum()):,})")
        ax.set_xlabel(x)
        ax.set_ylabel(y)
    if sc is not None:
        fig.colorbar(sc, ax=axes.ravel().tolist(), label=colour)
    return _save(fig, path)


def sky_map(ra, dec, category, path, *, title: str = "") -> pathlib.Path:
    """Mollweide projection in galactic coordinates (l increasing to the left), one colour per category."""
    from astropy.coordinates import SkyCoord
    import astropy.units as u
    ra = np.asarray(ra, dtype=float)
    dec = np.asarray(dec, dtype=float)
    cat = np.asarray(category).astype(str)
    gal = SkyCoord(ra * u.deg, dec * u.deg, frame="icrs").galactic
    lon = -np.radians(gal.l.wrap_at(180 * u.deg).deg)
    lat = np.radians(gal.b.deg)
    fig = Figure(figsize=(9, 5))
    ax = fig.add_subplot(111, projection="mollweide")
    for value in sorted(set(cat)):
        sel = cat == value
        ax.scatter(lon[sel], lat[sel], s=2, label=f"{value} ({int(sel.sum()):,})", rasterized=True)
    ax.grid(True, alpha=0.3)
    ax.set_xticklabels([f"{int(v)}°" for v in (150, 120, 90, 60, 30, 0, 330, 300, 270, 240, 210)], fontsize=7)
    ax.legend(loc="lower right", fontsize=7, markerscale=4, bbox_to_anchor=(1.15, -0.05))
    ax.set_title(title + " (galactic)")
    return _save(fig, path)


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
