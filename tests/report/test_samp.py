"""--samp: the tables a command writes reach a SAMP client through a hub (xsift.report.samp).

A SAMP hub (pyvo.samp.SAMPHubServer, standard profile only) runs on localhost with its lockfile in a
temporary folder; a test client registers for ``table.load.votable``; the command is pointed at the hub
through ``SAMP_HUB=std-lockurl:file://...`` as SAMP prescribes. The table the client receives is read
back with astropy and compared with the file the command wrote."""
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from astropy.table import Table

from xsift.report.samp import MTYPE, broadcast_tables


@pytest.fixture()
def hub(tmp_path):
    """(hub, received notifications, SAMP_HUB value): a hub on localhost and a client listening for tables."""
    from pyvo.samp import SAMPHubServer, SAMPIntegratedClient
    lockfile = tmp_path / "samp.lock"
    server = SAMPHubServer(web_profile=False, lockfile=str(lockfile), addr="127.0.0.1")
    server.start()
    received, arrived = [], threading.Event()
    client = SAMPIntegratedClient(name="test-receiver")
    client.connect(hub=server)

    def on_table(private_key, sender_id, mtype, params, extra):
        received.append(params)
        arrived.set()

    client.bind_receive_notification(MTYPE, on_table)
    try:
        yield received, arrived, f"std-lockurl:{lockfile.as_uri()}"
    finally:
        client.disconnect()
        server.stop()


def _wait(arrived, count_of, n, timeout=15.0):
    end = time.monotonic() + timeout
    while count_of() < n and time.monotonic() < end:
        arrived.wait(0.05)
    return count_of() >= n


def _catalogue_table(path, rng):
    from xsift.data.io import write_table
    df = Table({"name": [f"S{i}" for i in range(25)], "ra": rng.uniform(0, 360, 25),
                "dec": rng.uniform(-60, 60, 25), "AGN": rng.uniform(0, 1, 25)}).to_pandas()
    return write_table(df, path, classes=["AGN"]), df


def test_broadcast_delivers_votable_and_a_parquet_copy(hub, tmp_path, monkeypatch):
    received, arrived, samp_hub = hub
    monkeypatch.setenv("SAMP_HUB", samp_hub)
    rng = np.random.default_rng(1)
    vot, df = _catalogue_table(tmp_path / "run" / "detection_level.vot", rng)
    parquet, _ = _catalogue_table(tmp_path / "run" / "uniquely_classified.parquet", rng)
    sent, message = broadcast_tables([vot, parquet])
    assert sent == 2 and "sent detection_level.vot, uniquely_classified.vot" in message
    assert _wait(arrived, lambda: len(received), 2)
    urls = sorted(p["url"] for p in received)
    assert urls[0] == vot.resolve().as_uri()           # a VOTable goes as it is
    assert urls[1] == (tmp_path / "run" / "samp" / "uniquely_classified.vot").resolve().as_uri()
    back = Table.read(urls[1].removeprefix("file://"), format="votable")
    np.testing.assert_allclose(np.asarray(back["AGN"]), Table.read(parquet)["AGN"])


def test_votable_copy_of_a_parquet_folder(tmp_path):
    """A sharded run's folder of Parquet parts becomes one VOTable holding every part's rows."""
    from xsift.report.samp import votable_copy
    rng = np.random.default_rng(3)
    _, a = _catalogue_table(tmp_path / "run" / "ambiguous" / "part-00000.parquet", rng)
    _, b = _catalogue_table(tmp_path / "run" / "ambiguous" / "part-00001.parquet", rng)
    vot = votable_copy(tmp_path / "run" / "ambiguous")
    assert vot == tmp_path / "run" / "samp" / "ambiguous.vot"
    back = Table.read(vot, format="votable")
    np.testing.assert_allclose(np.sort(np.asarray(back["ra"])), np.sort(np.concatenate([a["ra"], b["ra"]])))


def test_no_hub_is_one_line_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SAMP_HUB", f"std-lockurl:{(tmp_path / 'absent.lock').as_uri()}")
    monkeypatch.setenv("HOME", str(tmp_path))
    sent, message = broadcast_tables([tmp_path / "x.vot"])
    assert sent == 0 and "no SAMP hub running" in message and "\n" not in message


@pytest.fixture(scope="module")
def fitted_model(tmp_path_factory):
    """A small cluster-then-label model and catalogue of the simulator (simulator truth is not used)."""
    from xsift.methods.cluster_then_label import ClusterThenLabel
    from xsift.data.io import write_table
    from xsift.simulate import simulate_catalog
    folder = tmp_path_factory.mktemp("samp_model")
    catalog = simulate_catalog(1500, seed=2)
    cat = write_table(catalog, folder / "catalog.parquet")
    ClusterThenLabel(preset="csc", n_components=3, seed=0).fit(catalog).save(folder / "model")
    return cat, folder / "model"


def _classify(cat, model, out, env):
    return subprocess.run([sys.executable, "-m", "xsift.cli", "classify", str(cat), "--model", str(model),
                           "--out", str(out), "--format", "votable", "--no-figures", "--quiet", "--samp"],
                          capture_output=True, text=True, env={**os.environ, **env}, timeout=300)


@pytest.mark.slow
def test_classify_samp_delivers_the_detection_table(hub, fitted_model, tmp_path):
    """`xsift classify ... --samp` sends its tables; the detection table the client receives, read back
    with astropy, equals the written file; with no hub the same command exits 0 with one line on stderr."""
    received, arrived, samp_hub = hub
    cat, model = fitted_model
    done = _classify(cat, model, tmp_path / "run", {"SAMP_HUB": samp_hub})
    assert done.returncode == 0, done.stderr
    assert _wait(arrived, lambda: len(received), 3)
    urls = {p["url"].rsplit("/", 1)[-1]: p["url"] for p in received}
    assert set(urls) == {"detection_level.vot", "uniquely_classified.vot", "ambiguous.vot"}
    written = tmp_path / "run" / "detection_level.vot"
    assert urls["detection_level.vot"] == written.resolve().as_uri()
    got = Table.read(urls["detection_level.vot"].removeprefix("file://"), format="votable")
    expected = Table.read(written, format="votable")
    assert got.colnames == expected.colnames and len(got) == len(expected) > 0
    for c in expected.colnames:
        a, b = np.asarray(got[c]), np.asarray(expected[c])
        assert np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), c
        assert np.array_equal(np.ma.getmaskarray(got[c]), np.ma.getmaskarray(expected[c])), c

    done = _classify(cat, model, tmp_path / "run2", {"SAMP_HUB": f"std-lockurl:{(tmp_path / 'no.lock').as_uri()}",
                                                      "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stderr
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "no SAMP hub running" in lines[0], done.stderr
