"""End to end in a real browser: start ``streamlit run app/main.py``, open it in headless
Debian Chromium through Playwright; on the landing view, edit a description and see the
predictions beside it change (with the edit-diff chart), upload a photo, look at what the edit
moved in the network and the language control, compare two descriptions on a labelled zip and
keep the better one, and see the explanation views.

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
import zipfile
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


def test_edit_and_see_compare_explain_in_chromium(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert Path(CHROMIUM).exists(), "Debian's chromium is required (make test installs it)"
    shots = Path(os.environ["N3_SCREENSHOT_DIR"]) if os.environ.get("N3_SCREENSHOT_DIR") else None
    if shots:
        shots.mkdir(parents=True, exist_ok=True)
    photo = tmp_path / "my_bird.png"
    from PIL import Image

    demo = ROOT / "assets" / "demo" / "photos"
    Image.open(demo / "painted_bunting_1.jpg").save(photo)   # a PNG upload
    labelled = tmp_path / "labelled.zip"
    with zipfile.ZipFile(labelled, "w") as z:             # a small labelled zip for the A/B comparison
        for p in sorted(demo.glob("*.jpg")):
            z.write(p, f"birds/{p.stem.rsplit('_', 1)[0]}/{p.name}")

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.set_default_timeout(180_000)
        expect.set_options(timeout=180_000)
        page.goto(app_url)

        # the landing view: the classes and the demo photos' predictions side by side, no click
        expect(page.get_by_text("Synthesized a 5-way classifier")).to_be_visible()
        expect(page.get_by_text("full: correct on photos with a known class")).to_be_visible()
        expect(page.get_by_text("ΔΘ only: correct on photos with a known class")).to_be_visible()
        expect(page.get_by_text("ΔΘ over every backbone layer + the sentence match").first).to_be_visible()
        expect(page.locator('[title^="before:"]')).to_have_count(0)
        if shots:
            page.screenshot(path=str(shots / "landing.png"), full_page=True)

        # edit a description: only that one is re-encoded, and the same view shows what changed
        box = page.get_by_label("Description", exact=True).first
        box.fill("A plain brown bird of reed beds, dull all over, with no red and no yellow anywhere.")
        box.press("Control+Enter")
        expect(page.get_by_text("1 description(s) re-encoded")).to_be_visible()
        expect(page.locator('[title^="before:"]').first).to_be_visible()
        expect(page.get_by_text("What the last edit changed, per photo and class")).to_be_visible()
        assert page.get_by_role("tab", name="Describe & classify").get_attribute("aria-selected") == "true"
        if shots:
            page.screenshot(path=str(shots / "edit.png"), full_page=True)

        # upload a photo: it joins the predictions
        page.get_by_text("Photos", exact=True).click()
        uploader = page.locator('[data-testid="stFileUploader"]').filter(has_text="Upload photos")
        uploader.locator('input[type="file"]').set_input_files(str(photo))
        expect(page.get_by_text("my_bird.png").first).to_be_visible()
        expect(page.locator('[data-testid="stImage"]')).to_have_count(11)

        # what the edit moved in the network, and the language control
        page.get_by_role("tab", name="Network & language control").click()
        expect(page.get_by_text("moved the adapted weights")).to_be_visible()
        expect(page.get_by_text("What carries the words?").first).to_be_visible()
        expect(page.get_by_text("ΔΘ from other texts, the match from yours")).to_be_visible()
        expect(page.get_by_text("the match from other texts, ΔΘ from yours")).to_be_visible()
        if shots:
            page.locator('[data-testid="stTable"]').first.evaluate("e => e.scrollIntoView({block: 'start'})")
            page.wait_for_timeout(500)
            page.screenshot(path=str(shots / "control.png"))

        # A/B: a second description of the first class, compared on a labelled zip
        page.get_by_role("tab", name="A/B descriptions").click()
        b = page.get_by_label("B", exact=True)
        b.fill("A black bird with red and yellow patches on the shoulders, singing from cattails in marshes.")
        b.press("Control+Enter")
        zup = page.locator('[data-testid="stFileUploader"]').filter(has_text="Labelled photos for the comparison")
        zup.locator('input[type="file"]').set_input_files(str(labelled))
        expect(page.get_by_text("full: mean per-class accuracy, A → B (10 labelled photos)")).to_be_visible()
        expect(page.get_by_text("Fixed by B")).to_be_visible()
        if shots:
            page.screenshot(path=str(shots / "ab.png"), full_page=True)
        page.get_by_role("button", name="Use B as the description").click()
        expect(page.get_by_text("1 description(s) re-encoded")).to_be_visible()

        # the explanation views: readable saliency, token evidence
        page.get_by_role("tab", name="Explain").click()
        expect(page.get_by_text("Where the classifiers look for")).to_be_visible()
        expect(page.get_by_text("because:").first).to_be_visible()
        panel = page.locator('[role="tabpanel"]:visible')
        expect(panel.locator(".js-plotly-plot").first).to_be_visible()
        if shots:
            page.screenshot(path=str(shots / "explain.png"), full_page=True)
        assert not page.locator('[data-testid="stException"]').count(), "no Python exception on the page"
        browser.close()
