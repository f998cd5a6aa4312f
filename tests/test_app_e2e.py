"""End to end in a real browser: start ``streamlit run app/main.py``, open it in headless
Debian Chromium through Playwright, edit a description, upload a photo, see the prediction
charts and the explanation views.

Set ``N3_SCREENSHOT_DIR`` to keep screenshots of the main views (``docs/screenshots`` is made
this way: ``N3_SCREENSHOT_DIR=docs/screenshots .venv/bin/python -m pytest tests/test_app_e2e.py``).
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_url(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("app") / "streamlit.log"
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
           "--browser.gatherUsageStats", "false"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while True:
            try:
                if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read().strip() == b"ok":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"streamlit did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_describe_upload_classify_explain_in_chromium(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is required (make test installs it)"
    shots = Path(os.environ["N3_SCREENSHOT_DIR"]) if os.environ.get("N3_SCREENSHOT_DIR") else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    photo = tmp_path / "my_bird.png"
    from PIL import Image

    Image.open(ROOT / "assets" / "demo" / "photos" / "cedar_waxwing_1.jpg").save(photo)   # a PNG upload

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.set_default_timeout(180_000)
        expect.set_options(timeout=180_000)
        page.goto(app_url)

        # the demo synthesizes and classifies with no click
        expect(page.get_by_text("Synthesized a 5-way classifier")).to_be_visible()
        if shots:
            page.screenshot(path=str(shots / "describe.png"), full_page=True)

        # edit a description: only that one is re-encoded
        box = page.get_by_label("Description", exact=True).first
        box.fill(box.input_value() + " Its eyes are dark.")
        box.press("Control+Enter")
        expect(page.get_by_text("1 description(s) re-encoded")).to_be_visible()

        # upload a photo and see its prediction chart
        page.get_by_role("tab", name="Classify").click()
        charts = page.locator(".js-plotly-plot")
        expect(charts.first).to_be_visible()
        before = charts.count()
        uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="Upload images")
        uploader.locator('input[type="file"]').set_input_files(str(photo))
        expect(page.get_by_text("my_bird.png").first).to_be_visible()
        deadline = time.time() + 120
        while charts.count() <= before and time.time() < deadline:
            time.sleep(0.5)
        assert charts.count() > before, "the uploaded photo gets its own prediction chart"
        expect(page.get_by_text("full adaptation").first).to_be_visible()
        if shots:
            page.screenshot(path=str(shots / "classify.png"), full_page=True)

        # the explanation views: saliency, token evidence, adaptation norms
        page.get_by_role("tab", name="Explain").click()
        expect(page.get_by_text("Where the classifiers look for")).to_be_visible()
        expect(page.get_by_text("because:").first).to_be_visible()
        expect(page.get_by_text("How much each layer was adapted")).to_be_visible()
        panel = page.locator('[role="tabpanel"]:visible')
        expect(panel.locator("img").first).to_be_visible()
        assert panel.locator("img").count() >= 3, "image, full and fc-only saliency"
        expect(panel.locator(".js-plotly-plot").first).to_be_visible()
        if shots:
            page.screenshot(path=str(shots / "explain.png"), full_page=True)
        assert not page.locator('[data-testid="stException"]').count(), "no Python exception on the page"
        browser.close()
