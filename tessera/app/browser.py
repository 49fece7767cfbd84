"""Drive the app in a headless Chromium (Debian's chromium and chromedriver, through Selenium): the app's test and
the README's screenshots."""

from __future__ import annotations

import shutil
import socket
import time
from collections.abc import Callable
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")  # fmt: skip


def missing() -> str | None:
    """What a browser run lacks here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium (pip install -e '.[dev]')"
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        return "Debian's chromium and chromium-driver"
    return None


def chromium(width: int = 1280, height: int = 1400):
    """A headless Chromium WebDriver with a window of this size."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in (*FLAGS, f"--window-size={width},{height}"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(find: Callable[[], Any], timeout: float = 60) -> Any:
    """Poll `find` until it returns something truthy; AssertionError after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = find()
        if found:
            return found
        time.sleep(0.25)
    raise AssertionError(f"the page did not answer in {timeout:.0f} s")


def open_tab(browser, name: str) -> None:
    from selenium.webdriver.common.by import By

    next(b for b in browser.find_elements(By.CSS_SELECTOR, "button[role=tab]") if b.text.strip() == name).click()


def status(browser, tab: str) -> str:
    """The tab's status line: '' while working, 'done', or the CLI's 'error: ...'."""
    from selenium.webdriver.common.by import By

    return browser.find_element(By.ID, f"{tab}-status").text.strip()
