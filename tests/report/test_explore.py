"""The explorer page (xsift.report.explore, `xsift explore`): what it reads from a run, and the page itself
opened in headless Chromium (tests/report/browser.py).

The run directories are written here with the project's own table writer from known values, so every
expected count comes from pandas/NumPy on those values (and astropy for the galactic coordinates)."""
import json
import pathlib
import sys
import time

import numpy as np
import pandas as pd
import pytest

from xsift.cli import main
from xsift.data.io import write_table
from xsift.report import write_manifest
from xsift.report.explore import build_page, load_run, write_explorer

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from browser import chromium_paths, console_errors, start_chromium, wait_for_bokeh  # noqa: E402

CLASSES = ["AGN", "XB", "YSO"]


def _master_table(rng, n, status):
    """A master-class table as xsift.methods.voting writes it, with known probabilities."""
    p = rng.dirichlet([0.6, 0.6, 0.6], size=n)
    df = pd.DataFrame({"name": [f"2CXO J{status[0].upper()}{i:05d}" for i in range(n)]})
    if status == "unique":
        df["agg_master_class"] = np.asarray(CLASSES)[p.argmax(1)]
        df["master_class"] = np.asarray(CLASSES)[p.argmax(1)]
    else:
        df["hard_master_class"] = np.asarray(CLASSES)[p.argmax(1)]
        df["soft_master_class"] = np.asarray(CLASSES)[p.argsort(1)[:, -2]]
    df["detection_count"] = rng.integers(1, 6, n)
    for k, c in enumerate(CLASSES):
        df[c] = p[:, k]
    for k, c in enumerate(CLASSES):
        df[f"{c}_std"] = rng.uniform(0, 0.2, n)
    df["ra"], df["dec"] = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    df["hard_hm"], df["hard_ms"], df["hard_hs"] = rng.uniform(-1, 1, (3, n))
    df["powlaw_gamma"], df["bb_kt"] = rng.uniform(0, 4, n), rng.uniform(0.1, 3, n)
    return df


@pytest.fixture(scope="module")
def ctl_run(tmp_path_factory):
    """A cluster-then-label run directory: 300 uniquely classified + 40 ambiguous sources, a manifest and
    a validation folder."""
    rng = np.random.default_rng(7)
    run = tmp_path_factory.mktemp("ctl_run")
    unique, ambiguous = _master_table(rng, 300, "unique"), _master_table(rng, 40, "ambiguous")
    write_table(unique, run / "uniquely_classified.parquet", classes=CLASSES)
    write_table(ambiguous, run / "ambiguous.parquet", classes=CLASSES)
    write_manifest(run, command="run", inputs={"catalog": "cat.parquet"}, model_hash="ab" * 32,
                   classify={"classified": 1234})
    (run / "validation").mkdir()
    cm = pd.DataFrame([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.0, 0.3, 0.7]], columns=CLASSES)
    cm.insert(0, "true_class", CLASSES)
    cm.to_csv(run / "validation" / "confusion_classes.csv", index=False)
    pd.DataFrame({"curve": ["raw"] * 3, "bin_low": [0, 0.33, 0.67], "bin_high": [0.33, 0.67, 1.0],
                  "detections": [5, 10, 20], "mean_confidence": [0.3, 0.5, 0.9],
                  "fraction_correct": [0.2, 0.55, 0.85]}).to_csv(run / "validation" / "reliability.csv", index=False)
    return run, unique, ambiguous


def test_load_run_reads_sources_classes_and_galactic_coordinates(ctl_run):
    run, unique, ambiguous = ctl_run
    data = load_run(run)
    s = data.sources
    assert data.method == "cluster_then_label" and data.classes == CLASSES
    assert len(s) == 340 and (s["status"] == "unique").sum() == 300 and (s["status"] == "ambiguous").sum() == 40
    u = s[s["status"] == "unique"].set_index("name")
    np.testing.assert_allclose(u.loc[unique["name"], "prob"], unique[CLASSES].max(axis=1))
    np.testing.assert_allclose(u.loc[unique["name"], "s1"], unique["XB_std"])
    assert list(u.loc[unique["name"], "cls"]) == list(unique["master_class"])
    a = s[s["status"] == "ambiguous"].set_index("name")
    assert list(a.loc[ambiguous["name"], "cls"]) == list(ambiguous["hard_master_class"])
    assert {"hard_hm", "hard_ms", "powlaw_gamma"} <= set(data.features)
    assert list(data.validation["confusion"]) == ["classes"]
    # galactic coordinates: the Galactic centre and north pole (IAU 1958 definition, ICRS positions)
    from xsift.report.explore import _galactic
    lon, lat = _galactic(np.array([266.40499, 192.85948]), np.array([-28.93617, 27.12825]))
    assert abs(lat[0]) < 0.05 and abs(lon[0]) < 0.1 and lat[1] > 89.95


def test_sharded_run_folders_read_as_the_in_memory_tables(ctl_run, tmp_path):
    """A vote-shards run holds uniquely_classified/ and ambiguous/ as folders of Parquet parts."""
    run, unique, ambiguous = ctl_run
    for stem, table in (("uniquely_classified", unique), ("ambiguous", ambiguous)):
        for k, part in enumerate((table.iloc[:17], table.iloc[17:])):
            write_table(part.reset_index(drop=True), tmp_path / stem / f"part-{k:05d}.parquet", classes=CLASSES)
    sharded, in_memory = load_run(tmp_path).sources, load_run(run).sources
    pd.testing.assert_frame_equal(sharded.sort_values("name").reset_index(drop=True),
                                  in_memory.sort_values("name").reset_index(drop=True))


def test_naive_bayes_rows_grouped_into_sources(tmp_path):
    """nb_classification rows sharing a name become one source: mean and std (ddof 0) of each class
    probability, class of the highest mean, ambiguous when its rows' predicted classes differ."""
    p = np.array([[0.7, 0.2, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.2, 0.6, 0.2]])
    table = pd.DataFrame({"name": ["A", "A", "B", "C"], "AGN": p[:, 0], "XB": p[:, 1], "YSO": p[:, 2],
                          "predicted_class": ["AGN", "AGN", "YSO", "XB"], "outlier_measure": [1.0, 3.0, 0.5, 2.0],
                          "n_categories": 3, "obsid": [1, 2, 3, 4], "ra": [10.0, 10.0, 20.0, 30.0],
                          "dec": [5.0, 5.0, -5.0, 60.0]})
    write_table(table, tmp_path / "nb_classification.parquet", classes=CLASSES)
    data = load_run(tmp_path)
    s = data.sources.set_index("name")
    assert data.method == "naive_bayes" and data.classes == CLASSES and len(s) == 3
    np.testing.assert_allclose(s.loc["A", ["p0", "p1", "p2"]].to_numpy(float), p[:2].mean(0))
    np.testing.assert_allclose(s.loc["A", ["s0", "s1", "s2"]].to_numpy(float), p[:2].std(0))
    assert s.loc["A", "cls"] == "AGN" and s.loc["A", "n_det"] == 2 and s.loc["A", "outlier"] == 2.0
    assert list(s["status"]) == ["unique", "unique", "unique"]
    table.loc[1, "predicted_class"] = "XB"
    write_table(table, tmp_path / "nb_classification.parquet", classes=CLASSES)
    assert load_run(tmp_path).sources.set_index("name").loc["A", "status"] == "ambiguous"


def test_explore_command_errors_in_one_line(ctl_run, tmp_path, capsys):
    assert main(["explore", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no run tables" in err[0] and str(tmp_path) in err[0]
    assert main(["explore", str(ctl_run[0]), "--out", str(tmp_path / "p.html"), "--max-points", "0"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-points 0: must be at least 1" in err[0]
    broken = tmp_path / "broken"
    write_table(ctl_run[1].drop(columns="detection_count"), broken / "uniquely_classified.parquet")
    assert main(["explore", str(broken)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "uniquely_classified.parquet: column 'detection_count' not found" in err[0]


@pytest.fixture(scope="module")
def downloads(tmp_path_factory):
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads):
    pytest.importorskip("selenium", reason="selenium, of the test extra, is not installed (pip install -e '.[test]')")
    path, driver_path, why = chromium_paths()
    if path is None:
        pytest.skip(f"headless Chromium unavailable: {why}")
    driver = start_chromium(path, driver_path, downloads=downloads)
    yield driver
    driver.quit()


_TABLE_ROWS = """
const doc = Bokeh.documents[0];
const table = doc.get_model_by_name('table');
const walk = (v, out) => { out.push(v); for (const c of (v.child_views || [])) walk(c, out); return out; };
const view = Object.values(Bokeh.index).flatMap((v) => walk(v, [])).find((v) => v.model === table);
return view.grid.getDataLength();
"""


def test_page_in_headless_chromium(ctl_run, browser, downloads, tmp_path):
    """The page renders without console errors; the sky map and the table hold the sample of --max-points
    sources; the probability, status and name filters reduce the table to the rows pandas selects;
    clicking a source fills its class-probability plot."""
    from selenium.webdriver.support.ui import WebDriverWait
    run, unique, ambiguous = ctl_run
    assert main(["explore", str(run), "--out", str(tmp_path / "page.html"), "--max-points", "200",
                 "--seed", "4"]) == 0
    data = load_run(run)
    # the documented sample: sorted uniform draw without replacement from default_rng(seed)
    shown = data.sources.iloc[np.sort(np.random.default_rng(4).choice(340, 200, replace=False))]
    browser.get((tmp_path / "page.html").as_uri())
    wait_for_bokeh(browser)
    assert console_errors(browser) == []
    counts = browser.execute_script("""
        const doc = Bokeh.documents[0];
        const pts = doc.get_model_by_name('sky_points');
        return [doc.get_model_by_name('sources').data.name.length, pts.data_source.data.l.length,
                Array.from(doc.get_model_by_name('sources').data.name).slice(0, 3)];""")
    assert counts[:2] == [200, 200] and counts[2] == list(shown["name"][:3])
    assert browser.execute_script(_TABLE_ROWS) == 200

    def set_and_count(js):
        """Run ``js``, wait for the filter's callback (CustomJS runs asynchronously) to update the count
        line, and return the table's row count."""
        before = browser.execute_script("return Bokeh.documents[0].get_model_by_name('count').text")
        browser.execute_script("const doc = Bokeh.documents[0];" + js)
        WebDriverWait(browser, 10, poll_frequency=0.02).until(lambda d: d.execute_script(
            "return Bokeh.documents[0].get_model_by_name('count').text") != before)
        return browser.execute_script(_TABLE_ROWS)

    n = set_and_count("doc.get_model_by_name('prob_filter').value = 0.6;")
    assert n == int((shown["prob"].astype(np.float32) >= np.float32(0.6)).sum()) < 200
    n = set_and_count("doc.get_model_by_name('status_filter').active = 2;")
    assert n == int(((shown["prob"].astype(np.float32) >= np.float32(0.6)) & (shown["status"] == "ambiguous")).sum())
    n = set_and_count("doc.get_model_by_name('prob_filter').value = 0; doc.get_model_by_name('status_filter').active = 0;"
                      "doc.get_model_by_name('class_filter').active = [1];")
    assert n == int((shown["cls"] == "XB").sum())
    name = shown["name"].iloc[5]
    n = set_and_count(f"doc.get_model_by_name('class_filter').active = [0, 1, 2];"
                      f"doc.get_model_by_name('search').value_input = '{name[-4:].lower()}';")
    assert n == int(shown["name"].str.lower().str.contains(name[-4:].lower()).sum()) >= 1
    browser.execute_script("Bokeh.documents[0].get_model_by_name('sources').selected.indices = [5];")
    WebDriverWait(browser, 10, poll_frequency=0.02).until(lambda d: d.execute_script(
        "return Bokeh.documents[0].get_model_by_name('probabilities').title.text.includes(arguments[0])", name))
    bars = browser.execute_script("return Array.from(Bokeh.documents[0].get_model_by_name('bars').data.mean)")
    np.testing.assert_allclose(bars, shown[["p0", "p1", "p2"]].iloc[5].to_numpy(float), rtol=1e-6)
    assert browser.execute_script("return Bokeh.documents[0].get_model_by_name('confusion_classes') !== null")

    # the download button: the selected sources passing the filters, or all passing ones without a selection
    n = set_and_count("doc.get_model_by_name('sources').selected.indices = [];"
                      "doc.get_model_by_name('search').value_input = '';"
                      "doc.get_model_by_name('class_filter').active = [1];")
    browser.execute_script("""
        const walk = (v, out) => { out.push(v); for (const c of (v.child_views || [])) walk(c, out); return out; };
        Object.values(Bokeh.index).flatMap((v) => walk(v, []))
              .find((v) => v.model.name === 'download').button_el.click();""")
    csv = downloads / "xsift_selection.csv"
    end = time.monotonic() + 10
    while not csv.exists() and time.monotonic() < end:
        time.sleep(0.05)
    rows = pd.read_csv(csv)
    xb = shown[shown["cls"] == "XB"]
    assert len(rows) == n and list(rows["name"]) == list(xb["name"])
    np.testing.assert_allclose(rows["prob"], xb["prob"], rtol=1e-6)
    assert console_errors(browser) == []


def test_write_explorer_is_self_contained(ctl_run, tmp_path):
    """One file, no external script or stylesheet: it opens offline."""
    run, _, _ = ctl_run
    page = write_explorer(run, tmp_path / "p.html", max_points=50).read_text()
    import re
    assert re.search(r"<script[^>]+src=", page) is None and re.search(r"<link[^>]+href=", page) is None
    assert "Bokeh" in page and "2CXO J" in page
    assert json.loads((run / "manifest.json").read_text())["model_hash"][:16] in page


@pytest.mark.slow
def test_naive_bayes_page_shows_the_tracks_of_nb_tracks(browser, tmp_path):
    """A naive-Bayes run (`xsift nb fit` + `nb classify` on a simulated catalogue): the page has the
    outlier-measure filter, and clicking a source draws the probability track that
    NaiveBayesKDE.tracks computes for its first row (the rows `xsift nb tracks` prints)."""
    from selenium.webdriver.support.ui import WebDriverWait
    from xsift.methods.naive_bayes import NaiveBayesKDE
    from xsift.simulate import simulate_catalog
    cat = write_table(simulate_catalog(1500, seed=5), tmp_path / "catalog.parquet")
    assert main(["nb", "fit", str(cat), "--config", "nb_csc", "--out", str(tmp_path / "nbm"), "--quiet"]) == 0
    assert main(["nb", "classify", str(cat), "--model", str(tmp_path / "nbm"), "--out", str(tmp_path / "run"),
                 "--quiet"]) == 0
    assert main(["explore", str(tmp_path / "run"), "--max-tracks", "50"]) == 0
    data = load_run(tmp_path / "run", max_tracks=50)
    browser.get((tmp_path / "run" / "explore.html").as_uri())
    wait_for_bokeh(browser)
    assert console_errors(browser) == []
    assert browser.execute_script("return Bokeh.documents[0].get_model_by_name('outlier_filter') !== null")
    name = browser.execute_script("return Bokeh.documents[0].get_model_by_name('sources').data.name[2]")
    assert name in data.tracks
    browser.execute_script("Bokeh.documents[0].get_model_by_name('sources').selected.indices = [2];")
    WebDriverWait(browser, 10, poll_frequency=0.02).until(lambda d: d.execute_script(
        "return Bokeh.documents[0].get_model_by_name('track').data.step.length > 0"))
    got = browser.execute_script("""
        const t = Bokeh.documents[0].get_model_by_name('track').data;
        return [Array.from(t.step), Array.from(t.c0), Array.from(t.c2)];""")
    model = NaiveBayesKDE.load(tmp_path / "nbm")
    catalog = pd.read_parquet(cat)
    track = model.tracks(catalog[catalog["name"] == name].iloc[:1])
    assert got[0] == list(track["name"])
    classes = list(model.classes_)
    np.testing.assert_allclose(got[1], track[classes[0]], atol=1e-4)
    np.testing.assert_allclose(got[2], track[classes[2]], atol=1e-4)
    assert console_errors(browser) == []
