"""The README's screenshot of the explorer page of `xsift demo`'s run, taken in headless Chromium.

    .venv/bin/python scripts/explore_screenshot.py [--run xsift-demo] [--out scripts/figures/explore.png]

Runs ``xsift demo --out RUN`` (default settings: 20,000 simulated detections, seed 0) unless RUN
already holds its explorer page, opens ``RUN/explore.html`` in headless Chromium (Debian's chromium
and chromedriver through Selenium, tests/report/browser.py), clicks the uniquely classified source with the
most detections so that its class probabilities and their spread are drawn, and saves a screenshot of the page's upper part (header,
filters, sky map, feature diagrams, the clicked source) as a PNG.
"""
from __future__ import annotations

import argparse
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "report"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="xsift-demo", help="the demo's run directory (made if absent)")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).with_name("figures") / "explore.png"),
                        help="PNG to write")
    parser.add_argument("--height", type=int, default=1750, help="height of the screenshot in pixels")
    args = parser.parse_args()
    run = pathlib.Path(args.run)
    if not (run / "explore.html").is_file():
        from xsift.cli import main as xsift
        if xsift(["demo", "--out", str(run), "--quiet"]) != 0:
            sys.exit("xsift demo failed")
    from browser import chromium_paths, console_errors, start_chromium, wait_for_bokeh
    browser, driver_path, why = chromium_paths()
    if browser is None:
        sys.exit(f"headless Chromium unavailable: {why}")
    driver = start_chromium(browser, driver_path, width=1300, height=args.height)
    try:
        driver.get((run / "explore.html").resolve().as_uri())
        wait_for_bokeh(driver)
        driver.execute_script("""
            const doc = Bokeh.documents[0];
            const s = doc.get_model_by_name('sources');
            let best = 0, n = -1;
            for (let i = 0; i < s.data.cls.length; i++)
              if (s.data.status[i] === 'unique' && s.data.n_det[i] > n) { n = s.data.n_det[i]; best = i; }
            s.selected.indices = [best];""")
        time.sleep(1.0)
        errors = console_errors(driver)
        if errors:
            sys.exit(f"the page logged errors: {errors}")
        out = pathlib.Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        from xsift.data.io import atomic_write
        with atomic_write(out) as tmp:
            tmp.write_bytes(driver.get_screenshot_as_png())
    finally:
        driver.quit()
    print(f"screenshot -> {out}")


if __name__ == "__main__":
    main()
