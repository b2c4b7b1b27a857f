"""The explorer page's "Send selection (SAMP)" button, through the SAMP Web Profile, in headless Chromium.

A SAMP hub (pyvo.samp.SAMPHubServer) runs on localhost with the Web Profile (SAMP 1.3, Sect. 5) on a
free port; the hub asks a dialog object to approve each web client, and the one here approves them all
(the hub gives it the queues ``queue_request``/``queue_result``; it answers True). A standard-profile
test client subscribes to ``table.load.votable`` (answering the calls) and ``table.select.rowList``.
The page written by ``xsift explore --samp`` is opened from disk (``file://``) in headless Chromium
(tests/report/browser.py), its button is pointed at the hub's port (the page's default is the standard
``http://localhost:21012/``, asserted), a filter and a selection are applied, the button is clicked, and
what the client receives is compared with the VOTable read back with astropy and with the rows pandas
picks from the page's documented sample.

What a user needs: a running hub with the Web Profile on port 21012 (the hub TOPCAT starts, JSAMP's,
has it and shows a dialog asking to accept "xsift explorer", once per page visit; Aladin and TOPCAT
then receive the table and the selection from whichever hub runs). No browser flag and no local web
server: headless Chromium 156 lets the ``file://`` page (origin ``null``) post to
``http://localhost:21012/`` with the flags of browser.py and also with only ``--headless --no-sandbox``
(tried), because the hub answers the CORS preflight, including the Private Network Access header
``Access-Control-Allow-Private-Network``. A browser that asks for permission to reach devices on the
local network must be given it. With no hub, Chromium itself logs the refused connection in the console
as a network entry (any request to a closed port does; a page cannot prevent it); the page's JavaScript
raises and logs nothing.
"""
import pathlib
import queue
import socket
import sys
import threading
import time
import urllib.parse
import urllib.request

import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from xsift.cli import main
from xsift.data.io import write_table
from xsift.report.explore import SAMP_WEB_HUB, build_page, load_run

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from browser import chromium_paths, console_errors, start_chromium, wait_for_bokeh  # noqa: E402

CLASSES = ["AGN", "XB", "YSO"]


class ApproveAll:
    """A Web Profile consent dialog (the interface of pyvo.samp.hub.WebProfileDialog) that accepts every
    registration and records the requests: (identity, client address, origin)."""

    def __init__(self):
        self.queue_request = self.queue_result = None   # set by the hub when it starts
        self.requests = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            if self.queue_request is None:
                time.sleep(0.02)
                continue
            try:
                request = self.queue_request.get(timeout=0.05)
            except queue.Empty:
                continue
            self.requests.append(request)
            self.queue_result.put(True)

    def close(self):
        self._stop.set()
        self._thread.join(2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.fixture()
def web_hub(tmp_path):
    """(hub URL, dialog, receiver client, loads received, selections received, SAMP_HUB value)."""
    from pyvo.samp import SAMPHubServer, SAMPIntegratedClient
    dialog = ApproveAll()
    port = _free_port()
    lockfile = tmp_path / "samp.lock"
    hub = SAMPHubServer(web_profile=True, web_profile_dialog=dialog, web_port=port, lockfile=str(lockfile),
                        addr="127.0.0.1")
    hub.start()
    client = SAMPIntegratedClient(name="test-receiver")
    client.connect(hub=hub)
    loads, selections = [], []

    def on_load(private_key, sender_id, msg_id, mtype, params, extra):
        loads.append((msg_id is not None, params))
        if msg_id is not None:
            client.reply(msg_id, {"samp.status": "samp.ok", "samp.result": {}})

    def on_select(private_key, sender_id, mtype, params, extra):
        selections.append(params)

    client.bind_receive_message("table.load.votable", on_load)
    client.bind_receive_notification("table.select.rowList", on_select)
    try:
        yield f"http://localhost:{port}/", dialog, client, loads, selections, f"std-lockurl:{lockfile.as_uri()}"
    finally:
        client.disconnect()
        hub.stop()
        dialog.close()


@pytest.fixture(scope="module")
def browser():
    pytest.importorskip("selenium", reason="selenium, of the test extra, is not installed (pip install -e '.[test]')")
    path, driver_path, why = chromium_paths()
    if path is None:
        pytest.skip(f"headless Chromium unavailable: {why}")
    driver = start_chromium(path, driver_path)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A cluster-then-label run: 90 uniquely classified + 30 ambiguous sources with known probabilities."""
    rng = np.random.default_rng(11)
    run = tmp_path_factory.mktemp("samp_run")
    for stem, status, n in (("uniquely_classified", "unique", 90), ("ambiguous", "ambiguous", 30)):
        p = rng.dirichlet([0.6, 0.6, 0.6], size=n)
        df = pd.DataFrame({"name": [f"2CXO J{status[0].upper()}{i:05d}" for i in range(n)]})
        df["master_class" if status == "unique" else "hard_master_class"] = np.asarray(CLASSES)[p.argmax(1)]
        df["detection_count"] = rng.integers(1, 6, n)
        for k, c in enumerate(CLASSES):
            df[c] = p[:, k]
        for c in CLASSES:
            df[f"{c}_std"] = rng.uniform(0, 0.2, n)
        df["ra"], df["dec"] = rng.uniform(0, 360, n), np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
        df["hard_hm"], df["hard_ms"] = rng.uniform(-1, 1, (2, n))
        write_table(df, run / f"{stem}.parquet", classes=CLASSES)
    return run


def _until(condition, timeout=10.0) -> bool:
    """Wait for ``condition()`` (a notification reaches the client after the hub has answered the page)."""
    end = time.monotonic() + timeout
    while not condition() and time.monotonic() < end:
        time.sleep(0.05)
    return condition()


def _url_path(url: str) -> pathlib.Path:
    return pathlib.Path(urllib.request.url2pathname(urllib.parse.urlparse(url).path))


def _click(browser, name):
    browser.execute_script("""
        const walk = (v, out) => { out.push(v); for (const c of (v.child_views || [])) walk(c, out); return out; };
        Object.values(Bokeh.index).flatMap((v) => walk(v, []))
              .find((v) => v.model.name === arguments[0]).button_el.click();""", name)


def _status_after(browser, before, timeout=20.0):
    """The SAMP status line once it reports an outcome (it first says what it is doing)."""
    from selenium.webdriver.support.ui import WebDriverWait
    get = "return Bokeh.documents[0].get_model_by_name('samp_status').text"
    WebDriverWait(browser, timeout, poll_frequency=0.05).until(
        lambda d: d.execute_script(get) != before and not d.execute_script(get).startswith(("asking", "loading")))
    return browser.execute_script(get)


def _point_at(browser, hub_url):
    """Point the page's button at ``hub_url`` (its configuration is the button's tags[0])."""
    return browser.execute_script("""
        const b = Bokeh.documents[0].get_model_by_name('samp_send');
        const before = b.tags[0].hub;
        b.tags = [Object.assign({}, b.tags[0], {hub: arguments[0]})];
        return before;""", hub_url)


def test_send_selection_reaches_a_samp_client(web_hub, browser, run_dir, tmp_path, monkeypatch):
    """The button loads the page's VOTable into the client once (a call, answered before the selection
    is sent) and sends the 0-based rows of the selected sources that pass the filters; without a
    selection, every row passing the filters; the page unregisters when it is left."""
    hub_url, dialog, client, loads, selections, samp_hub = web_hub
    page = tmp_path / "page.html"
    monkeypatch.setenv("SAMP_HUB", samp_hub)   # the command's own broadcast of the run tables goes to this hub
    assert main(["explore", str(run_dir), "--out", str(page), "--max-points", "100", "--seed", "5", "--samp"]) == 0
    vot = tmp_path / "samp" / "page_sources.vot"
    # the page's rows: the documented sample of 100 of the 120 sources (sorted draw of default_rng(5))
    shown = load_run(run_dir).sources.iloc[np.sort(np.random.default_rng(5).choice(120, 100, replace=False))]
    shown = shown.reset_index(drop=True)
    assert _until(lambda: len(loads) >= 2)
    broadcast = [p["url"].rsplit("/", 1)[-1] for is_call, p in loads if not is_call]
    assert sorted(broadcast) == ["ambiguous.vot", "uniquely_classified.vot"]
    loads.clear()

    browser.get(page.as_uri())
    wait_for_bokeh(browser)
    assert console_errors(browser) == []
    assert _point_at(browser, hub_url) == SAMP_WEB_HUB == "http://localhost:21012/"
    # a selection of 40 sources, then the filter: probability >= 0.5 (float32 on the page)
    picked = np.random.default_rng(2).choice(100, 40, replace=False)
    browser.execute_script("const doc = Bokeh.documents[0];"
                           "doc.get_model_by_name('sources').selected.indices = arguments[0];"
                           "doc.get_model_by_name('prob_filter').value = 0.5;", [int(i) for i in picked])
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(browser, 10, poll_frequency=0.02).until(lambda d: d.execute_script(
        "return !Bokeh.documents[0].get_model_by_name('count').text.startsWith('<b>100<')"))
    _click(browser, "samp_send")
    status = _status_after(browser, "")
    passing = shown["prob"].astype(np.float32).to_numpy() >= np.float32(0.5)
    expected = sorted(int(i) for i in picked if passing[i])
    assert 0 < len(expected) < 40
    assert status == f"sent {len(expected)} selected row(s) of xsift {run_dir.name} sources to 1 SAMP client(s)"
    assert [r[0]["samp.name"] for r in dialog.requests] == ["xsift explorer"]
    assert len(loads) == 1 and loads[0][0], loads    # one call (callAndWait), not a notification
    load = loads[0][1]
    assert load["url"] == vot.resolve().as_uri() and load["table-id"].startswith("xsift-explore:")
    got = Table.read(_url_path(load["url"]), format="votable")
    written = Table.read(vot, format="votable")
    assert got.colnames == written.colnames and len(got) == 100
    for c in written.colnames:
        assert np.array_equal(np.asarray(got[c]), np.asarray(written[c])), c
    # row i of the VOTable is row i of the page
    assert list(got["name"]) == list(shown["name"])
    np.testing.assert_allclose(np.asarray(got["probability"]), shown["prob"])
    np.testing.assert_allclose(np.asarray(got["XB_std"]), shown["s1"])
    assert list(got["class"]) == list(shown["cls"]) and list(got["status"]) == list(shown["status"])
    assert _until(lambda: len(selections) >= 1) and len(selections) == 1
    sel = selections[0]
    assert sel["table-id"] == load["table-id"] and sel["url"] == load["url"]
    assert [int(i) for i in sel["row-list"]] == expected

    # no selection, the ambiguous sources: every ambiguous row passing the probability filter; no new load
    browser.execute_script("const doc = Bokeh.documents[0];"
                           "doc.get_model_by_name('sources').selected.indices = [];"
                           "doc.get_model_by_name('status_filter').active = 2;")
    WebDriverWait(browser, 10, poll_frequency=0.02).until(lambda d: d.execute_script(
        "return Bokeh.documents[0].get_model_by_name('view').filter.booleans.filter((b) => b).length") ==
        int((passing & (shown["status"] == "ambiguous")).sum()))
    _click(browser, "samp_send")
    status = _status_after(browser, status)
    assert _until(lambda: len(selections) >= 2)
    expected = np.flatnonzero(passing & (shown["status"] == "ambiguous").to_numpy()).tolist()
    assert [int(i) for i in selections[1]["row-list"]] == expected and len(expected) > 0
    assert len(loads) == 1 and len(dialog.requests) == 1
    assert console_errors(browser) == []

    # leaving the page unregisters it
    def explorers():
        return [c for c in client.get_registered_clients()
                if client.get_metadata(c).get("samp.name") == "xsift explorer"]
    assert len(explorers()) == 1
    browser.get("about:blank")
    assert _until(lambda: explorers() == [])

    # a private key the hub no longer knows (the hub was restarted): the page registers again, reloads
    browser.get(page.as_uri())
    wait_for_bokeh(browser)
    _point_at(browser, hub_url)
    browser.execute_script("window.xsiftSamp = {key: 'stale', hub: arguments[0], loaded: new Set(['cli#1'])};",
                           hub_url)
    _click(browser, "samp_send")
    assert _status_after(browser, "").startswith("sent 100 selected row(s)")
    assert _until(lambda: len(selections) >= 3)
    assert len(dialog.requests) == 2 and len(loads) == 2 and len(selections) == 3
    assert [int(i) for i in selections[2]["row-list"]] == list(range(100))
    assert console_errors(browser) == []


def test_no_hub_is_one_line_on_the_page(browser, run_dir, tmp_path, monkeypatch, capsys):
    """With no hub listening the button writes one line under itself; the page's JavaScript raises and
    logs nothing (Chromium itself logs the refused connection as a network entry, which a page cannot
    prevent)."""
    monkeypatch.setenv("SAMP_HUB", f"std-lockurl:{(tmp_path / 'absent.lock').as_uri()}")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["explore", str(run_dir), "--out", str(tmp_path / "page.html"), "--samp"]) == 0
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "no SAMP hub running" in err[0]
    browser.get((tmp_path / "page.html").as_uri())
    wait_for_bokeh(browser)
    hub_url = f"http://localhost:{_free_port()}/"
    _point_at(browser, hub_url)
    _click(browser, "samp_send")
    status = _status_after(browser, "")
    assert status == f"no SAMP hub answers at {hub_url}: start TOPCAT or Aladin (they run one) and click again"
    entries = [e for e in browser.get_log("browser") if e.get("level") == "SEVERE"]
    assert all(e.get("source") == "network" and e["message"].startswith(hub_url) for e in entries), entries


def test_page_without_samp_has_no_button(run_dir):
    page = build_page(load_run(run_dir), max_points=50)
    assert "samp_send" not in page and "xsift explore --samp" in page
