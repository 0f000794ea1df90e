#!/usr/bin/env python3
"""Launch time: tincan's window to its sign-in view, against a Tauri hello-world's window to its page.

Run through scripts/measure-launch.sh (it builds both, and gives this a display, a session bus and a
keyring). Each run starts tauri-driver first (not timed), then times from asking WebDriver for a session
(which starts the app) to the moment the view is displayed: `#sign-in-view` for tincan (fresh profile,
so no automatic sign-in), `#hello` for the hello-world. The two alternate, after one warm-up each, so
both see the same machine load. Prints each run, the medians and their ratio.
"""

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from selenium import webdriver
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.common.options import ArgOptions


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on port {port}")


def one_launch(app, args, css, timeout=30):
    """Seconds from session request to `css` displayed, in a fresh HOME (no settings, no profile)."""
    home = tempfile.mkdtemp(prefix="tincan-launch-")
    run = os.path.join(home, "run")
    os.makedirs(run, mode=0o700)
    env = dict(os.environ, HOME=home, XDG_DATA_HOME=f"{home}/share", XDG_CONFIG_HOME=f"{home}/config",
               XDG_CACHE_HOME=f"{home}/cache", TINCAN_EMBEDDED_PORT=str(free_port()))
    dport, nport = free_port(), free_port()
    drv = subprocess.Popen(["tauri-driver", "--port", str(dport), "--native-port", str(nport),
                            "--native-driver", "/usr/bin/WebKitWebDriver"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    driver = None
    try:
        wait_port(dport)
        opts = ArgOptions()
        opts.set_capability("browserName", "wry")
        opts.set_capability("tauri:options", {"application": app, "args": args})
        t0 = time.monotonic()
        driver = webdriver.Remote(command_executor=f"http://127.0.0.1:{dport}", options=opts)
        end = t0 + timeout
        while time.monotonic() < end:
            try:
                els = driver.find_elements(By.CSS_SELECTOR, css)
                if els and els[0].is_displayed():
                    return time.monotonic() - t0
            except WebDriverException:
                pass  # the page is still loading
            time.sleep(0.01)
        try:
            page = driver.find_element(By.TAG_NAME, "body").text[:300]
            logs = driver.execute_script("return document.documentElement.outerHTML.slice(600, 3000)")
        except WebDriverException as e:
            page, logs = f"<{e}>", ""
        raise AssertionError(f"{css} never appeared in {app}; page: {page!r} {logs}")
    finally:
        if driver is not None:
            try:
                driver.quit()
            except WebDriverException:
                pass
        drv.terminate()
        try:
            drv.wait(timeout=5)
        except subprocess.TimeoutExpired:
            drv.kill()
        shutil.rmtree(home, ignore_errors=True)


def launch_retrying(app, args, css, attempts=3):
    """A WebDriver session fails to start now and then (WebKitWebDriver drops the connection, as
    tests/e2e_desktop.py's launch() retries): such a run is not timed, it is made again."""
    for attempt in range(attempts):
        try:
            return one_launch(app, args, css)
        except AssertionError:
            raise
        except Exception as e:  # noqa: BLE001 - a session that did not start is made again
            if attempt == attempts - 1:
                raise
            print(f"session did not start ({type(e).__name__}); again", flush=True)
            time.sleep(1)
    raise AssertionError("unreachable")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--app", required=True)
    ap.add_argument("--hello", required=True)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    subjects = [("hello-world", a.hello, [], "#hello"),
                ("tincan", a.app, ["--profile", "launch"], "#sign-in-view")]
    times = {name: [] for name, *_ in subjects}
    for name, app, args, css in subjects:  # warm-up: page cache, fontconfig, WebKit's caches
        launch_retrying(app, args, css)
    for i in range(a.runs):
        for name, app, args, css in subjects:
            t = launch_retrying(app, args, css)
            times[name].append(t)
            print(f"run {i + 1}: {name:12s} {t:.3f} s", flush=True)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    ratio = med["tincan"] / med["hello-world"]
    print(f"median: hello-world {med['hello-world']:.3f} s, tincan {med['tincan']:.3f} s, "
          f"ratio {ratio:.2f}")
    sys.exit(0)


if __name__ == "__main__":
    main()
