"""Headless Chromium for the explorer's tests, driven by Selenium 4 with Debian's chromedriver.

Why Selenium and not Playwright: Selenium is a pure-Python wheel that drives the system's
``chromium`` through the system's ``chromedriver`` (both Debian packages of one version, installed
together), so nothing is downloaded at test time; and Chrome's ``goog:loggingPrefs`` hands over the
browser console, which is what the no-JavaScript-error check reads. Playwright would need its own
Node driver and pins a browser revision that Debian's chromium does not match.

:func:`chromium_paths` installs the two packages with apt when they are absent (``apt-get update``
then ``apt-get install -y chromium chromium-driver``, as root) and says exactly why when it cannot, so
that the caller skips with that reason.
"""
from __future__ import annotations

import os
import shutil
import subprocess

CHROMIUM = ("chromium", "chromium-browser", "google-chrome")


def _which() -> tuple[str | None, str | None]:
    browser = next((shutil.which(b) for b in CHROMIUM if shutil.which(b)), None)
    return browser, shutil.which("chromedriver")


def chromium_paths() -> tuple[str | None, str | None, str]:
    """(browser path, chromedriver path, why not): installs Debian's ``chromium`` and ``chromium-driver``
    when either is missing; on failure the paths are None and the reason says what failed."""
    browser, driver = _which()
    if browser and driver:
        return browser, driver, ""
    if shutil.which("apt-get") is None:
        return None, None, "chromium/chromedriver not found and apt-get is not available to install them"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return None, None, "chromium/chromedriver not found and installing them with apt-get needs root"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"]):
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, None, f"`{' '.join(cmd)}` failed: {exc}"
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            return None, None, f"`{' '.join(cmd)}` exited {done.returncode}: {tail[0]}"
    browser, driver = _which()
    if not (browser and driver):
        return None, None, "apt-get installed chromium and chromium-driver but they are not on PATH"
    return browser, driver, ""


def start_chromium(browser: str, driver: str, *, width: int = 1400, height: int = 2200, downloads=None):
    """A headless Chrome WebDriver on ``browser`` through ``driver`` that records the browser console
    and saves downloads into the folder ``downloads`` (when given) without asking."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                f"--window-size={width},{height}", "--allow-file-access-from-files"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    if downloads is not None:
        options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                                  "download.prompt_for_download": False})
    chrome = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    if downloads is not None:   # headless Chrome saves downloads only when told where, through DevTools
        chrome.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    return chrome


def console_errors(driver) -> list[str]:
    """The browser console's SEVERE entries since the last call."""
    return [e["message"] for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def wait_for_bokeh(driver, timeout: float = 30.0) -> None:
    """Wait until Bokeh's document is rendered (``Bokeh.documents[0]`` exists and its views are built)."""
    from selenium.webdriver.support.ui import WebDriverWait
    WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: d.execute_script(
        "return typeof Bokeh !== 'undefined' && Bokeh.documents.length > 0 && "
        "Bokeh.index && Object.keys(Bokeh.index).length > 0"))
