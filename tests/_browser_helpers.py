"""Shared by the browser tests: headless Chromium through Selenium, and page helpers."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
MISSING = (
    None
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()
    else "the browser tests need Debian's chromium and chromium-driver "
    "(apt-get install -y chromium chromium-driver)"
)
WAIT_S = 20

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


@contextmanager
def chromium(width: int = 1280, height: int = 1000) -> Iterator[webdriver.Chrome]:
    """A headless Chromium with a window of `width` x `height` CSS pixels."""
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        f"--window-size={width},{height}",
        "--lang=en-US",
        "--force-device-scale-factor=1",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    # --window-size is the outer window: grow it so the page itself gets width x height
    inner_w, inner_h = driver.execute_script("return [innerWidth, innerHeight]")
    driver.set_window_size(2 * width - inner_w, 2 * height - inner_h)
    try:
        yield driver
    finally:
        driver.quit()


def until(driver: webdriver.Chrome, condition: Callable[[], Any], what: str) -> Any:
    return WebDriverWait(driver, WAIT_S).until(lambda _: condition(), message=what)


def idle(driver: webdriver.Chrome) -> None:
    until(
        driver,
        lambda: driver.execute_script("return document.body.dataset.busy") == "0",
        "the page finished its requests",
    )


def by_id(driver: webdriver.Chrome, element_id: str) -> WebElement:
    return driver.find_element(By.ID, element_id)


def status(driver: webdriver.Chrome) -> str:
    return by_id(driver, "status").text


def alert(driver: webdriver.Chrome) -> str:
    box = by_id(driver, "alert")
    return box.text if box.is_displayed() else ""


def fresh_page(driver: webdriver.Chrome, url: str, hash_: str = "") -> None:
    """Load the page with an empty session (no saved key, owner or view). The session is
    cleared on a page of the same origin that runs no script, so no request races it."""
    driver.get(url + "/healthz")
    driver.execute_script("sessionStorage.clear()")
    driver.get(url + "/" + hash_)
    idle(driver)


def show_view(driver: webdriver.Chrome, name: str) -> None:
    """Click a view's tab and wait until it shows the chosen owner's data."""
    by_id(driver, f"tab-{name}").click()
    until(driver, lambda: by_id(driver, f"view-{name}").is_displayed(), f"the {name} view")
    idle(driver)


def csp_violations(driver: webdriver.Chrome) -> list[str]:
    """Console messages about the Content Security Policy since the last call."""
    return [
        entry["message"]
        for entry in driver.get_log("browser")
        if "Content Security Policy" in entry["message"]
    ]


def screenshot(driver: webdriver.Chrome, path: Path) -> Path:
    """Save the window as a PNG (never into the repository) and say where it went."""
    assert driver.save_screenshot(str(path)), path
    print(f"screenshot: {path}")
    return path
