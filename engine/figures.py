"""Figures of the cluster-then-label run (matplotlib, Agg backend; every file written atomically).

* :func:`confusion_figure` — a row-normalised confusion matrix (the paper's Fig. 4 and 5);
* :func:`hardness_by_cluster` — hardness-hardness diagram (``hard_ms`` against ``hard_hm``) per
  cluster, coloured by ``var_prob_h`` (Fig. 3);
* :func:`sky_map` — Mollweide map in galactic coordinates coloured by a category (cluster,
  aggregated master class; Fig. 2 and 8).
"""
from __future__ import annotations

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from engine.io import atomic_write  # noqa: E402


def _save(fig, path) -> pathlib.Path:
    path = pathlib.Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def confusion_figure(matrix: np.ndarray, labels: list[str], path, *, title: str = "") -> pathlib.Path:
    """matrix (L, L) row-normalised (rows: true class, columns: predicted class)."""
    L = len(labels)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * L, 0.8 + 0.55 * L))
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
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.6 * rows), squeeze=False, sharex=True, sharey=True)
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
    fig = plt.figure(figsize=(9, 5))
    ax = fig.add_subplot(111, projection="mollweide")
    for value in sorted(set(cat)):
        sel = cat == value
        ax.scatter(lon[sel], lat[sel], s=2, label=f"{value} ({int(sel.sum()):,})", rasterized=True)
    ax.grid(True, alpha=0.3)
    ax.set_xticklabels([f"{int(v)}°" for v in (150, 120, 90, 60, 30, 0, 330, 300, 270, 240, 210)], fontsize=7)
    ax.legend(loc="lower right", fontsize=7, markerscale=4, bbox_to_anchor=(1.15, -0.05))
    ax.set_title(title + " (galactic)")
    return _save(fig, path)
