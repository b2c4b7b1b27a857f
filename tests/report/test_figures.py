"""Figures at scale: sky maps and hardness diagrams as per-category density panels (not overplotted
points), with units on the axes and a colour bar; millions of points in bounded memory."""
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from xsift.report.figures import (galactic_lonlat, hardness_diagram, hardness_figure, sky_density, sky_figure,
                                  sky_map)

FULL_SKY_DEG2 = 4 * np.pi * (180 / np.pi) ** 2      # 41 252.96 square degrees


def _clustered_sky(n, classes, seed=0):
    """``n`` detections in 2000 pointings of ~0.2 deg, classes drawn with decreasing frequency."""
    rng = np.random.default_rng(seed)
    f_ra = rng.uniform(0, 360, 2000)
    f_dec = np.degrees(np.arcsin(rng.uniform(-1, 1, 2000)))
    field = rng.integers(0, 2000, n)
    ra = (f_ra[field] + rng.normal(0, 0.2, n)) % 360
    dec = np.clip(f_dec[field] + rng.normal(0, 0.2, n), -90, 90)
    p = np.arange(len(classes), 0, -1, dtype=float)
    return ra, dec, rng.choice(np.asarray(classes, dtype=object), n, p=p / p.sum())


def _mollweide_axes(fig):
    return [ax for ax in fig.axes if ax.name == "mollweide"]


@pytest.mark.slow      # 2M detections (~5 s): the default suite stays under 5 minutes on 2 cores
def test_two_million_detections_sky_map(tmp_path):
    classes = ["AGN", "YSO", "XRB", "CV", "star"]
    ra, dec, cls = _clustered_sky(2_000_000, classes)
    tracemalloc.start()
    try:
        fig = sky_figure(ra, dec, cls, label="class", title="2M detections")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # memory: a few copies of the (n,) coordinates, never per-point drawing objects (a scatter of 2M
    # points keeps ~5 arrays of 2M offsets and colours per panel)
    assert peak < 40 * ra.nbytes
    panels = _mollweide_axes(fig)
    assert len(panels) == len(classes)
    counts = pd.Series(cls).value_counts()
    titles = {ax.get_title() for ax in panels}
    assert titles == {f"class {c}  ({counts[c]:,})" for c in classes}
    for ax in panels:
        assert "galactic" in (ax.get_xlabel() + ax.get_ylabel()) or ax.get_xlabel() == ax.get_ylabel() == ""
        # one density mesh per panel, nothing else drawn
        assert len(ax.collections) == 1 and not ax.lines
    colourbars = [ax for ax in fig.axes if ax.name != "mollweide"]
    assert len(colourbars) == 1 and "per deg²" in colourbars[0].get_xlabel()
    assert all(ax.collections[0].norm is panels[0].collections[0].norm for ax in panels)   # one scale

    path = sky_map(ra, dec, cls, tmp_path / "sky.png", label="class")
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 800 and image.size[1] > 400


def test_sky_density_is_per_square_degree():
    rng = np.random.default_rng(1)
    lon = rng.uniform(-180, 180, 50_000)
    lat = np.degrees(np.arcsin(rng.uniform(-1, 1, 50_000)))      # uniform on the sphere
    l_edges, b_edges, dens = sky_density(lon, lat, 5.0)
    area = np.radians(np.diff(l_edges))[None, :] * np.diff(np.sin(np.radians(b_edges)))[:, None] \
        * (180 / np.pi) ** 2
    assert area.sum() == pytest.approx(FULL_SKY_DEG2)
    assert (dens * area).sum() == pytest.approx(50_000)
    # uniform points: the density is flat at n / 41 253 deg², polar cells included (within Poisson noise)
    assert np.median(dens) == pytest.approx(50_000 / FULL_SKY_DEG2, rel=0.1)
    assert dens[0].mean() == pytest.approx(50_000 / FULL_SKY_DEG2, rel=0.3)


def test_galactic_coordinates():
    l, b = galactic_lonlat([266.40499, 192.85948], [-28.93617, 27.12825])   # Galactic centre, north pole
    assert abs(l[0]) < 0.01 and abs(b[0]) < 0.01
    assert b[1] == pytest.approx(90, abs=0.01)


def test_sky_map_leaves_out_rows_without_a_category_or_position():
    ra, dec, cls = _clustered_sky(3000, ["AGN", "YSO"], seed=2)
    cls[:10] = None
    ra[10:20] = np.nan
    fig = sky_figure(ra, dec, cls, label="class")
    shown = sum(int(ax.get_title().split("(")[1].rstrip(")").replace(",", "")) for ax in _mollweide_axes(fig))
    assert shown == 3000 - 20


def test_clusters_panel_in_numeric_order():
    ra, dec, _ = _clustered_sky(2000, ["x"], seed=3)
    cluster = np.arange(2000) % 11
    fig = sky_figure(ra, dec, cluster, label="cluster")
    assert [ax.get_title().split("  ")[0] for ax in _mollweide_axes(fig)] == [f"cluster {k}" for k in range(11)]


def test_hardness_panels_count_every_detection(tmp_path):
    rng = np.random.default_rng(4)
    n = 400_000
    hm = np.clip(rng.normal(0, 0.4, n), -1, 1)
    df = pd.DataFrame({"predicted_class": rng.choice(["AGN", "YSO", "XRB"], n),
                       "hard_hm": hm, "hard_ms": np.clip(0.5 * hm + rng.normal(0, 0.3, n), -1, 1)})
    df.loc[:99, "hard_ms"] = np.nan                 # missing ratios are left out
    fig = hardness_figure(df, by="predicted_class", label="class")
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert len(panels) == 3
    expected = df.dropna().groupby("predicted_class").size()
    for ax in panels:
        cls = ax.get_title().split()[1]
        (hexes,) = ax.collections
        assert hexes.get_array().sum() == expected[cls]          # a density: every detection in a hexagon
        assert hexes.norm is panels[0].collections[0].norm        # one colour scale
        assert "keV" in ax.get_xlabel() or ax.get_xlabel() == ""
    assert panels[0].collections[0].norm.vmax == max(ax.collections[0].get_array().max() for ax in panels)
    (cbar,) = [ax for ax in fig.axes if not ax.get_title()]
    assert "log" in cbar.get_ylabel()
    path = hardness_diagram(df, tmp_path / "hr.png", by="predicted_class")
    with Image.open(path) as image:
        image.verify()


def test_hardness_coloured_by_a_column_mean():
    df = pd.DataFrame({"cluster": [0, 0, 0, 1], "hard_hm": [0.1, 0.1, 0.1, -0.5],
                       "hard_ms": [0.2, 0.2, 0.2, 0.3], "var_prob_h": [0.0, 0.3, 0.9, 1.0]})
    fig = hardness_figure(df, by="cluster", colour="var_prob_h", gridsize=10)
    values = sorted(float(v) for ax in fig.axes if ax.get_title() for v in ax.collections[0].get_array())
    assert values == pytest.approx([0.4, 1.0])     # the mean of 0, 0.3, 0.9 in one hexagon; 1.0 alone
