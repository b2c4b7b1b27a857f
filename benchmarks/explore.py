"""Benchmark: the explorer page of a 1M-detection run, its size and its render time in headless Chromium.

    python benchmarks/explore.py [--detections 1000000] [--max-points 50000] [--peer-timeout 300]

Simulates ``--detections`` detections (``xsift.simulate``, seed 0), runs the whole cluster-then-label
pipeline on them (``xsift run CATALOG --out RUN --no-figures``: fit on every complete detection,
classify, vote), then writes the explorer page two ways and opens each in headless Chromium
(Debian's chromium and chromedriver through Selenium, as tests/report/browser.py does):

* xsift: ``xsift explore RUN`` with ``--max-points`` (a seeded sample of sources as points and table
  rows over a density image of all of them);
* peer: the same page with every source as a point and a table row (``--max-points`` = all sources),
  the straightforward way, to show what the sample buys.

For each: the page's size, the time to build and write it, and the render time: from the browser's
``get`` of the file to Bokeh's document reporting idle (every plot, widget and the table drawn),
with the console's errors counted (the xsift page rendered ``--repeats`` times: median and range; the
peer once). Prints one table row per page, the machine and its load average.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "report"))

IDLE = ("return typeof Bokeh !== 'undefined' && Bokeh.documents.length > 0 && "
        "Bokeh.documents[0].is_idle === true")


def render_seconds(driver, page: pathlib.Path, timeout: float) -> tuple[float | None, int]:
    """(seconds from get to Bokeh's document idle, or None past ``timeout``; console errors)."""
    from selenium.common.exceptions import TimeoutException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait
    from browser import console_errors
    driver.get("about:blank")
    console_errors(driver)
    t0 = time.perf_counter()
    try:
        driver.set_page_load_timeout(timeout)
        driver.get(page.as_uri())
        WebDriverWait(driver, timeout, poll_frequency=0.02).until(lambda d: d.execute_script(IDLE))
    except (TimeoutException, WebDriverException):
        return None, -1
    seconds = time.perf_counter() - t0
    return seconds, len(console_errors(driver))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detections", type=int, default=1_000_000)
    parser.add_argument("--max-points", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3, help="renders of the xsift page (median and range)")
    parser.add_argument("--peer-timeout", type=float, default=300.0,
                        help="seconds the every-source page may take to render before it counts as failed")
    args = parser.parse_args()
    from machine import describe
    from xsift.cli import main as xsift
    from xsift.data.io import write_table
    from xsift.report.explore import load_run, build_page
    from xsift.simulate import simulate_catalog
    from browser import chromium_paths, start_chromium
    browser, driver_path, why = chromium_paths()
    if browser is None:
        sys.exit(f"headless Chromium unavailable: {why}")
    with tempfile.TemporaryDirectory(prefix="xsift-explore-bench-") as tmp:
        tmp = pathlib.Path(tmp)
        t0 = time.perf_counter()
        cat = write_table(simulate_catalog(args.detections, seed=0), tmp / "catalog.parquet")
        t_sim = time.perf_counter() - t0
        t0 = time.perf_counter()
        assert xsift(["run", str(cat), "--out", str(tmp / "run"), "--no-figures", "--quiet"]) == 0
        t_run = time.perf_counter() - t0
        print(f"# simulate {t_sim:.1f} s, xsift run {t_run:.1f} s")
        rows = []
        t0 = time.perf_counter()
        data = load_run(tmp / "run")
        t_load = time.perf_counter() - t0
        n_sources = len(data.sources)
        driver = start_chromium(browser, driver_path, height=1400)
        try:
            for label, max_points, timeout in (("xsift", args.max_points, 60.0),
                                               ("peer: every source", n_sources, args.peer_timeout)):
                t0 = time.perf_counter()
                page = tmp / f"page_{max_points}.html"
                page.write_text(build_page(data, max_points=max_points), encoding="utf-8")
                t_build = time.perf_counter() - t0 + t_load
                runs = [render_seconds(driver, page, timeout) for _ in range(args.repeats if label == "xsift" else 1)]
                times = sorted(t for t, _ in runs if t is not None)
                errors = max(e for _, e in runs)
                rows.append((label, min(max_points, n_sources), page.stat().st_size / 1e6, t_build, times, errors))
        finally:
            driver.quit()
    print(f"# {args.detections:,} detections -> {n_sources:,} sources; {describe()}")
    print(f"# load average (1 min) after the renders: {os.getloadavg()[0]:.1f}")
    print("| page | sources drawn | size MB | build s | render s: median [range] | console errors |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, drawn, size, build, times, errors in rows:
        if not times:
            render = f"> {args.peer_timeout:.0f} (not rendered)"
        elif len(times) == 1:
            render = f"{times[0]:.1f}"
        else:
            render = f"{times[len(times) // 2]:.1f} [{times[0]:.1f}–{times[-1]:.1f}]"
        print(f"| {label} | {drawn:,} | {size:.1f} | {build:.1f} | {render} | {errors if errors >= 0 else '-'} |")


if __name__ == "__main__":
    main()
