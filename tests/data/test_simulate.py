"""The CSC-like simulator against its targets: the paper's numbers, the real umlcaxs sources
(an independent oracle for medians and sky latitudes) and its own ground truth."""
import json
import re
import tomllib

import numpy as np
import pandas as pd
import pytest

import xsift.simulate.simulator as simulate
from xsift.data.io import read_catalog
from xsift.simulate import (COLUMNS, FEATURE_SPACES, from_unbounded, simulate_catalog, to_unbounded,
                             write_simulated_catalog)

from shared_data import shared_file

N = 200_000
PRESET_PATH = simulate.CALIBRATION_PATH.parent / "csc.toml"
with open(PRESET_PATH, "rb") as _fh:
    PRESET = tomllib.load(_fh)
TRAINING = PRESET["classes"]["order"]
UNINFORMATIVE = PRESET["classes"]["uninformative"]
GROUP = {c: g for g, members in PRESET["classes"]["aggregation"].items() for c in members}
FEATURES = list(PRESET["features"])
NAME_RE = r"^2CXO J(\d\d)(\d\d)(\d\d)\.(\d)([+-])(\d\d)(\d\d)(\d\d)$"


@pytest.fixture(scope="module")
def sim():
    return simulate_catalog(N, seed=11)


def features_numpy(df: pd.DataFrame) -> pd.DataFrame:
    """The paper's 12 features from the raw columns, written out independently of xsift.data.features."""
    out = df[["hard_hm", "hard_hs", "hard_ms", "powlaw_gamma", "bb_kt",
              "var_prob_b", "var_prob_h", "var_prob_s"]].astype(float).copy()
    for band in "bhs":
        out[f"var_ratio_{band}"] = df[f"var_sigma_{band}"] / df[f"var_mean_{band}"]
    out["var_newq_b"] = ((df["var_max_b"] + df["var_min_b"]) / 2) / df["var_mean_b"]
    return out[FEATURES]


def galactic_abs_b(ra, dec):
    from astropy.coordinates import SkyCoord
    return np.abs(SkyCoord(np.asarray(ra, float), np.asarray(dec, float), unit="deg").galactic.b.deg)


def test_columns_dtypes_and_classes(sim):
    assert list(sim.columns) == COLUMNS
    assert len(sim) == N
    assert sim["obsid"].dtype == np.int64
    for col in COLUMNS[2:-2]:
        assert sim[col].dtype == np.float64, col
    assert pd.api.types.is_string_dtype(sim["name"].dtype)
    assert set(sim["true_class"].unique()) == set(TRAINING)
    assert sim["true_class"].notna().all()


def test_value_ranges(sim):
    def ok(col):
        return sim[col].dropna().to_numpy()
    for col in ("hard_hm", "hard_hs", "hard_ms"):
        assert ok(col).min() >= -1 and ok(col).max() <= 1
    for col in ("var_prob_b", "var_prob_h", "var_prob_s"):
        assert ok(col).min() >= 0 and ok(col).max() <= 1
        assert (ok(col) == 1.0).mean() > 0.01          # the real point mass at exactly 1
    assert ok("bb_kt").min() > 0
    assert ok("powlaw_gamma").min() >= -10 and ok("powlaw_gamma").max() <= 10
    for col in ("var_sigma_b", "var_sigma_h", "var_sigma_s", "var_mean_b", "var_mean_h", "var_mean_s",
                "var_min_b", "var_max_b"):
        assert ok(col).min() >= 0, col
    assert (sim["var_mean_b"] > 0).all() and (sim["flux_significance_b"] > 5).all()
    lc = sim.dropna(subset=["var_min_b", "var_max_b"])
    assert (lc["var_min_b"] <= lc["var_mean_b"] * (1 + 1e-12)).all()
    assert (lc["var_mean_b"] <= lc["var_max_b"] * (1 + 1e-12)).all()
    assert sim["ra"].between(0, 360).all() and sim["dec"].between(-90, 90).all()
    # powlaw_gamma and bb_kt are never missing (the paper selected rows with both)
    assert sim[["powlaw_gamma", "bb_kt"]].notna().all().all()


def test_detections_per_source_fractions(sim):
    codes, names = pd.factorize(sim["name"])
    # a source's detections are contiguous rows
    assert (np.diff(codes) != 0).sum() + 1 == len(names)
    per_source = np.bincount(codes)
    fractions = [np.mean(per_source == 1), np.mean(per_source == 2),
                 np.mean((per_source >= 3) & (per_source <= 10)), np.mean(per_source > 10)]
    for got, want, tol in zip(fractions, [0.777, 0.114, 0.101, 0.008], [0.008, 0.006, 0.006, 0.002]):
        assert got == pytest.approx(want, abs=tol), fractions


def test_sources_share_class_type_and_position(sim):
    g = sim.groupby("name", sort=False)
    assert (g["true_class"].nunique() == 1).all()
    assert (g["main_type"].nunique(dropna=False) == 1).all()
    assert not sim.duplicated(["name", "obsid"]).any()
    # every detection within 0.5" of its source's mean position
    mean_ra = g["ra"].transform("mean").to_numpy()    # no source sits on RA = 0/360 in this seed
    mean_dec = g["dec"].transform("mean").to_numpy()
    from astropy.coordinates import SkyCoord
    sep = SkyCoord(sim["ra"].to_numpy(), sim["dec"].to_numpy(), unit="deg").separation(
        SkyCoord(mean_ra, mean_dec, unit="deg")).arcsec
    assert sep.max() < 0.5


def test_names_follow_the_csc_format_and_the_position(sim):
    parts = sim["name"].str.extract(NAME_RE)
    assert parts.notna().all().all(), "every name is 2CXO Jhhmmss.s+ddmmss"
    p = parts.astype({c: int for c in parts.columns if c != 4})
    ra_name = (p[0] * 3600 + p[1] * 60 + p[2] + p[3] / 10 + 0.05) * 15 / 3600   # cell centre
    sign = np.where(p[4] == "-", -1, 1)
    dec_name = sign * (p[5] + p[6] / 60 + (p[7] + 0.5) / 3600)
    from astropy.coordinates import SkyCoord
    sep = SkyCoord(sim["ra"].to_numpy(), sim["dec"].to_numpy(), unit="deg").separation(
        SkyCoord(ra_name.to_numpy(), dec_name, unit="deg")).arcsec
    assert sep.max() < 1.6          # within the 1.5" x 1" name cell plus the 0.3" detection scatter


def test_names_unique_even_when_every_source_falls_on_one_spot(monkeypatch):
    """Uniqueness holds by construction, not by luck: pile 60k detections onto one position."""
    def one_spot(rng, cal, cls):
        n = len(cls)
        rng.random(n)
        return np.full(n, 83.8221), np.full(n, -5.3911)       # the Orion nebula
    monkeypatch.setattr(simulate, "_sky", one_spot)
    df = simulate_catalog(60_000, seed=2, block_rows=8192)
    codes, names = pd.factorize(df["name"])
    assert (np.diff(codes) != 0).sum() + 1 == len(names), "one name per source, never reused"
    assert len(names) > 30_000


def test_labelled_missing_and_main_type_shares(sim):
    cal = json.loads(simulate.CALIBRATION_PATH.read_text())["main_type"]
    training = sim["main_type"].isin(TRAINING)
    assert 0.40 <= training.mean() <= 0.55                     # "about half the detections labelled"
    assert training.mean() == pytest.approx(cal["training_share"], abs=0.015)
    assert sim["main_type"].isna().mean() == pytest.approx(9345 / 29655, abs=0.015)   # Table 3 NaN
    assert sim["main_type"].isin(UNINFORMATIVE).mean() == pytest.approx(5162 / 29655, abs=0.015)
    rare = sim["main_type"].notna() & ~training & ~sim["main_type"].isin(UNINFORMATIVE)
    assert {"Pulsar", "GlCl"} <= set(sim.loc[rare, "main_type"])
    # labels are the truth, up to a small confusion with siblings of the same aggregated class
    lab = sim[training]
    agree = (lab["main_type"] == lab["true_class"]).mean()
    assert 0.9 <= agree < 1.0
    assert (lab["main_type"].map(GROUP) == lab["true_class"].map(GROUP)).all()
    # paper: 37,878 detections of which 29,655 complete
    feats = features_numpy(sim)
    missing = feats.isna().any(axis=1).mean()
    assert missing == pytest.approx(1 - 29655 / 37878, abs=0.01)


def test_plane_concentration_per_class_matches_real_sources(sim):
    real = pd.read_csv(shared_file("umlcaxs", "uniquely_classified.csv"))
    real_b = pd.Series(galactic_abs_b(real["ra"], real["dec"]) < 5).groupby(real["master_class"].values).mean()
    sim_b = pd.Series(galactic_abs_b(sim["ra"], sim["dec"]) < 5).groupby(sim["true_class"].values).mean()
    for c in TRAINING:
        assert sim_b[c] == pytest.approx(real_b[c], abs=0.03), c
    by_group = pd.Series(galactic_abs_b(sim["ra"], sim["dec"]) < 5).groupby(
        sim["true_class"].map(GROUP).values).mean()
    assert by_group["YSO"] > by_group["XB"] > by_group["Seyfert"] > by_group["AGN"]
    assert by_group["YSO"] > 0.4 and by_group["AGN"] < 0.05


def test_feature_medians_per_class_match_real_sources(sim):
    real = pd.read_csv(shared_file("umlcaxs", "uniquely_classified.csv"))
    feats = features_numpy(sim)
    sim_med = feats.groupby(sim["true_class"].values).median()
    g = real.groupby("master_class")[FEATURES]
    real_med, iqr = g.median(), g.quantile(0.75) - g.quantile(0.25)
    for c in TRAINING:
        for f in FEATURES:
            scale = iqr.loc[c, f] if iqr.loc[c, f] > 0 else 1e-6
            assert abs(sim_med.loc[c, f] - real_med.loc[c, f]) <= 0.12 * scale, (c, f)
    # and the classes are told apart the way the real ones are: young stars softer than AGN
    assert sim_med.loc["TTau*", "hard_hs"] < sim_med.loc["AGN", "hard_hs"]


def test_unbounded_spaces_round_trip_real_values():
    real = pd.read_csv(shared_file("umlcaxs", "uniquely_classified.csv"))
    for f in FEATURE_SPACES:
        x = real[f].to_numpy(float)
        back = from_unbounded(f, to_unbounded(f, x))
        kind = FEATURE_SPACES[f][0]
        if kind == "logit":
            # the point mass at 1 survives exactly (values within 1e-12 of 1 join it)
            assert np.array_equal(back == 1.0, x >= 1.0 - 1e-12), f
            np.testing.assert_allclose(back, x, atol=1e-11)
        elif kind == "arctanh":
            np.testing.assert_allclose(back, x, atol=1e-9)
        else:
            np.testing.assert_allclose(back, x, rtol=1e-12, atol=1e-12)   # ratios below 1e-12 become 0


@pytest.mark.parametrize("shards", [1, 3, 7])
def test_same_seed_same_catalogue_whatever_the_shard_count(tmp_path, shards):
    ref = simulate_catalog(30_000, seed=5, block_rows=4096)
    paths = write_simulated_catalog(tmp_path, 30_000, n_shards=shards, seed=5, block_rows=4096)
    assert [p.name for p in paths] == [f"part-{i:05d}.parquet" for i in range(shards)]
    pd.testing.assert_frame_equal(read_catalog(tmp_path), ref)
    assert sorted(q.name for q in tmp_path.iterdir()) == [p.name for p in paths]   # no temp files
    if shards == 7:
        # shards are contiguous row ranges: some source straddles a shard boundary
        lasts = [pd.read_parquet(p, columns=["name"])["name"] for p in paths]
        assert any(a.iloc[-1] == b.iloc[0] for a, b in zip(lasts, lasts[1:]))


def test_seed_changes_the_catalogue():
    a = simulate_catalog(5000, seed=1, block_rows=2048)
    b = simulate_catalog(5000, seed=2, block_rows=2048)
    pd.testing.assert_frame_equal(a, simulate_catalog(5000, seed=1, block_rows=2048))
    assert not np.array_equal(a["hard_hs"].to_numpy(), b["hard_hs"].to_numpy())


def test_interrupted_write_leaves_no_partial_file(tmp_path, monkeypatch):
    real_block = simulate.simulate_block

    def failing_block(n_rows, block_index, **kw):
        if block_index == 5:
            raise RuntimeError("disk full")
        return real_block(n_rows, block_index, **kw)
    monkeypatch.setattr(simulate, "simulate_block", failing_block)
    with pytest.raises(RuntimeError, match="disk full"):
        write_simulated_catalog(tmp_path, 20_000, n_shards=2, seed=0, block_rows=2048)
    # shard 0 (rows 0-9,999 = blocks 0-4) completed; shard 1 was mid-way: no trace of it
    assert sorted(q.name for q in tmp_path.iterdir()) == ["part-00000.parquet"]
    monkeypatch.setattr(simulate, "simulate_block", real_block)
    ref = simulate_catalog(20_000, seed=0, block_rows=2048)
    pd.testing.assert_frame_equal(read_catalog(tmp_path / "part-00000.parquet"), ref.iloc[:10_000])


def test_cli_simulate(tmp_path, capsys):
    from xsift.cli import main
    out = tmp_path / "sim"
    assert main(["simulate", "--detections", "5000", "--shards", "2", "--out", str(out), "--seed", "3"]) == 0
    said = capsys.readouterr().out
    assert "5,000" in said and str(out.resolve()) in said
    df = read_catalog(out)
    pd.testing.assert_frame_equal(df, simulate_catalog(5000, seed=3))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["detections"] == 5000 and manifest["seed"] == 3
    assert main(["simulate", "--detections", "10", "--shards", "0", "--out", str(out)]) == 2
    assert "--shards 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["simulate", "--help"])
    text = capsys.readouterr().out
    for option in ("--detections", "--shards", "--out", "--seed", "--block-rows"):
        assert option in text


def test_calibration_file_is_what_the_script_writes(tmp_path):
    shared_file("umlcaxs", "uniquely_classified.csv")
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "calibrate_simulator", simulate.CALIBRATION_PATH.parents[3] / "scripts" / "calibrate_simulator.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--out", str(tmp_path / "cal.json")]) == 0
    assert json.loads((tmp_path / "cal.json").read_text()) == json.loads(simulate.CALIBRATION_PATH.read_text())


# ----------------------------------------------------------------------------- measurement errors

@pytest.fixture(scope="module")
def sim_errors():
    return simulate_catalog(10_000, seed=11, errors=True), simulate_catalog(10_000, seed=11)


def test_errors_add_bounds_and_scatter_only_the_error_features(sim_errors):
    noisy, exact = sim_errors
    assert list(noisy.columns) == simulate.columns(errors=True)
    assert set(noisy.columns) - set(exact.columns) == set(simulate.ERROR_COLUMNS)
    changed = [c for c in exact.columns if not exact[c].equals(noisy[c])]
    assert sorted(changed) == sorted(simulate.ERROR_FEATURES)            # everything else unchanged, truth kept
    for f in simulate.ERROR_FEATURES:
        lo, hi = noisy[f"{f}_lolim"].to_numpy(), noisy[f"{f}_hilim"].to_numpy()
        value, true = noisy[f].to_numpy(), exact[f].to_numpy()
        np.testing.assert_array_equal(np.isnan(lo), np.isnan(true))      # missing value, missing bounds
        sigma = (hi - lo) / 2
        ok = np.isfinite(sigma)
        assert (sigma[ok] > 0).all()
        np.testing.assert_allclose((lo + hi)[ok] / 2, value[ok], rtol=0, atol=1e-12)
        # reported = truth + N(0, sigma) where no physical edge clips it: z-scores ~ N(0, 1)
        edge = {"bb_kt": (1e-3, np.inf), "powlaw_gamma": (-10, 10)}.get(f, (-1, 1))
        inner = ok & (true - 4 * sigma > edge[0]) & (true + 4 * sigma < edge[1])
        z = (value[inner] - true[inner]) / sigma[inner]
        assert inner.sum() > 3000 and abs(z.mean()) < 0.06 and 0.94 < z.std() < 1.06


def test_error_widths_shrink_with_counts_as_calibrated(sim_errors):
    """Brighter detections (higher broad-band rate, hence counts) have narrower bounds: the real
    per-observation rows' slope of log10 width on log10 counts (~ -0.5, Poisson), recovered from the
    simulated rates; widths within the real 1-99 % range."""
    noisy, exact = sim_errors
    cal = json.loads(simulate.ERROR_CALIBRATION_PATH.read_text())
    rate = np.log10(noisy["var_mean_b"].to_numpy())
    for f in simulate.ERROR_FEATURES:
        e = cal["features"][f]
        width = (noisy[f"{f}_hilim"] - noisy[f"{f}_lolim"]).to_numpy() / 2
        if e["relative"]:
            width = width / exact[f].to_numpy()          # relative to the true value
        ok = np.isfinite(width) & np.isfinite(rate)
        assert e["slope"] < -0.25
        assert np.corrcoef(np.log10(width[ok]), rate[ok])[0, 1] < -0.3
        assert width[ok].min() >= e["min"] * (1 - 1e-9) and width[ok].max() <= e["max"] * (1 + 1e-9)


def test_error_calibration_file_is_what_the_script_writes(tmp_path):
    shared_file("csc_raw", "observation_source_lmxb.csv")
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "calibrate_simulator_errors",
        simulate.CALIBRATION_PATH.parents[3] / "scripts" / "calibrate_simulator_errors.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.main(["--out", str(tmp_path / "cal.json")]) == 0
    assert json.loads((tmp_path / "cal.json").read_text()) == json.loads(simulate.ERROR_CALIBRATION_PATH.read_text())


def test_cli_simulate_errors(tmp_path):
    from xsift.cli import main
    assert main(["simulate", "--detections", "500", "--out", str(tmp_path / "s"), "--seed", "4", "--errors"]) == 0
    pd.testing.assert_frame_equal(read_catalog(tmp_path / "s"), simulate_catalog(500, seed=4, errors=True))
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["errors"] is True
