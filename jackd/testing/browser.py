"""
A real headless browser for tests: Debian's ``chromium`` driven through
Selenium and Debian's ``chromedriver`` (package ``chromium-driver``).
Nothing is downloaded: both binaries come from the system.

    browser = start_browser()        # raises BrowserMissing without chromium
    browser.get(url)
    save_screenshot(browser, "producers-desktop")   # under ./screenshots/
    browser.quit()

L{Page} serves a page of another origin (another site, another port).
"""

import base64
import http.server
import os
import shutil
import tempfile
import threading

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

# Chromium as root, offline and quiet: no sandbox (root), no GPU, no
# network of its own (updates, sync, QUIC), a fresh profile.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--window-size=1280,900",
)

SCREENSHOT_DIR = "screenshots"


class BrowserMissing(Exception):
    """Chromium, chromedriver or Selenium is not installed."""


def start_browser():
    """
    Start headless Chromium with a fresh profile.

    @return: a Selenium ``WebDriver``; its C{quit()} also removes the profile.
    @raise BrowserMissing: a piece is not installed (the message says which).
    """
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not os.access(path, os.X_OK):
            raise BrowserMissing(f"{path} is missing (apt-get install {package})")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise BrowserMissing("selenium is not installed (pip install selenium)") from None
    profile = tempfile.mkdtemp(prefix="jack-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (*CHROMIUM_ARGS, f"--user-data-dir={profile}"):
        options.add_argument(argument)
    try:
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    except Exception:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    driver.set_page_load_timeout(30)
    quit_driver = driver.quit

    def quit_and_clean():
        try:
            quit_driver()
        finally:
            shutil.rmtree(profile, ignore_errors=True)

    driver.quit = quit_and_clean
    return driver


def save_screenshot(driver, name, directory=SCREENSHOT_DIR):
    """
    Save the whole page (not only the visible part) as C{NAME.png} in
    C{directory}, by default C{screenshots/} under the current directory
    (trial's C{_trial_temp}).

    @return: the file's path.
    """
    os.makedirs(directory, exist_ok=True)
    path = os.path.abspath(os.path.join(directory, f"{name}.png"))
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png",
        "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
    })
    with open(path, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    return path


def emulate_phone(driver, width=390, height=844):
    """
    Make C{driver} lay pages out as a phone does: a C{width} CSS pixel wide
    screen that honours the viewport meta tag (without one, a phone lays a
    page out 980 pixels wide and shrinks it).
    """
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": height, "deviceScaleFactor": 1, "mobile": True,
    })


def emulate_desktop(driver):
    """Undo L{emulate_phone}."""
    driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


class Page:
    """
    One HTML page served on 127.0.0.1 (another origin than the console's):
    the page of another site or another local web app, for tests of what
    such pages can make the browser do to the console.

        page = Page(html, headers=[("Set-Cookie", "a=b; Path=/")])
        browser.get(page.url("localhost"))
        page.stop()

    @ivar port: its port.
    """

    def __init__(self, html, headers=()):
        body, extra = html.encode("utf-8"), list(headers)

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                for name, value in extra:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, host="127.0.0.1"):
        """Its URL, under C{host} (C{localhost} is another site than 127.0.0.1)."""
        return f"http://{host}:{self.port}/"

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
