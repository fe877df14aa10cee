"""The admin's instance page in a real browser: headless Chromium (the Debian package) through Selenium and the
package's own chromedriver, against a live gunicorn on SQLite started here (production settings, HTTPS redirect
off since there is no nginx in front).

Staff logs in, opens an instance that holds calibration data, per-channel scales and a finished model job, and the
test checks the quality panel's SVG charts by their bars (64 histogram bins, one bar per channel, one per tensor of
the job) and that the browser's console logged no error. Screenshots are saved under var/browser/ (gitignored);
the path is printed."""

from __future__ import annotations

import io
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from tests.integration import stack

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
ARTIFACTS = stack.ROOT / "var" / "browser"
STAFF, PASSWORD = "staff-browser", "a-long-test-password-1"
CHANNELS = 6


@pytest.fixture(scope="module")
def gunicorn_site() -> Iterator[str]:
    workdir = stack.make_workdir("quantsite-browser-")
    database = stack.create_database("sqlite", workdir)
    env = stack.django_env(database.url, workdir, DJANGO_SECURE_SSL_REDIRECT="0",
                           DJANGO_SESSION_COOKIE_SECURE="0", DJANGO_CSRF_COOKIE_SECURE="0",
                           DJANGO_SECURE_HSTS_SECONDS="0",
                           CELERY_BROKER_URL="")
    stack.deploy_steps(env)
    stack.manage({**env, "DJANGO_SUPERUSER_USERNAME": STAFF, "DJANGO_SUPERUSER_PASSWORD": PASSWORD,
                  "DJANGO_SUPERUSER_EMAIL": "staff@example.com"}, "createsuperuser", "--noinput")
    with stack.gunicorn(env, workdir, workers=1) as server:
        yield server.url
    shutil.rmtree(workdir, ignore_errors=True)


def seed(base: str) -> dict[str, Any]:
    """An instance with calibration data, per-channel scales, a reported quantize and a finished job; returns the
    job's report."""
    session = requests.Session()

    def call(method: str, path: str, **kwargs: Any) -> Any:
        response = session.request(method, base + path, timeout=60, **kwargs)
        assert response.status_code in (200, 202), (path, response.status_code, response.text[:300])
        return response.json()

    rng = np.random.default_rng(3)
    data = (rng.standard_normal((CHANNELS, 200)) * rng.uniform(0.2, 3.0, (CHANNELS, 1))).astype(np.float32)
    call("post", "/instances/charts", json={"per_channel": True, "symmetric": True})
    call("post", "/instances/charts/calibrate", json={"data": [data.tolist()]})
    call("post", "/instances/charts/quantize", json={"data": data.tolist(), "report": True})
    import safetensors.numpy as stnp
    model = stnp.save({"encoder.weight": rng.standard_normal((16, 32)).astype(np.float32),
                       "encoder.bias": rng.standard_normal(16).astype(np.float32),
                       "head.weight": (rng.standard_normal((4, 16)) * 2).astype(np.float32)})
    job = call("post", "/instances/charts/jobs", files={"file": ("model.safetensors", io.BytesIO(model))})
    assert job["status"] == "succeeded", job
    return call("get", f"/jobs/{job['job_id']}/report")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("Chromium is not installed: apt-get install chromium chromium-driver (.ci/run does)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,2000",
                "--disable-gpu", "--no-first-run"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def screenshot(driver: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.png"
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def console_errors(driver: Any) -> list[dict[str, Any]]:
    return [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]


def test_the_instance_page_draws_its_charts_without_console_errors(gunicorn_site: str, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    report = seed(gunicorn_site)
    browser.get(f"{gunicorn_site}/admin/login/?next=/admin/quantizers/quantizerinstance/charts/change/")
    browser.find_element(By.NAME, "username").send_keys(STAFF)
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    deadline = time.monotonic() + 30
    while "/change/" not in browser.current_url and time.monotonic() < deadline:
        time.sleep(0.1)
    assert browser.current_url.endswith("/admin/quantizers/quantizerinstance/charts/change/"), browser.current_url
    browser.get_log("browser")  # what the login page logged is not this page's
    browser.get(f"{gunicorn_site}/admin/quantizers/quantizerinstance/charts/change/")
    panel = browser.find_element(By.ID, "instance-panel")
    screenshot(browser, "instance-page")
    panel_shot = ARTIFACTS / f"instance-panel-{time.strftime('%Y%m%d-%H%M%S')}.png"
    panel.screenshot(str(panel_shot))
    print(f"screenshot: {panel_shot}")

    charts = {svg.get_attribute("class"): svg for svg in panel.find_elements(By.CSS_SELECTOR, "svg.chart")}
    assert set(charts) == {"chart histogram", "chart scales", "chart layers"}

    def bar_count(svg: Any) -> int:
        return len(svg.find_elements(By.CSS_SELECTOR, "rect.bar"))

    assert bar_count(charts["chart histogram"]) == 64
    assert len(charts["chart histogram"].find_elements(By.CSS_SELECTOR, "line.mark")) == 4  # clip range, grid
    assert bar_count(charts["chart scales"]) == CHANNELS
    assert bar_count(charts["chart layers"]) == len(report["layers"])
    for svg in charts.values():  # drawn: the browser laid them out at a real size
        assert svg.size["width"] > 100
        assert svg.size["height"] > 50
    # the form is still on the page, and the panel beside it (to its right, level with its top)
    form = browser.find_element(By.ID, "quantizerinstance_form")
    assert form.is_displayed()
    assert panel.location["x"] >= form.location["x"] + form.size["width"]
    assert abs(panel.location["y"] - form.location["y"]) < 100
    assert console_errors(browser) == []
