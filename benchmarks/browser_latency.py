"""The app in a real browser: first load, and edit → the new prediction visible, for 1 user and
for several users at once (each in its own browser context, i.e. its own app session).

    .venv/bin/python benchmarks/browser_latency.py [--users 1 4] [--repeats 5] [--out benchmarks/results/browser_latency.json]

Starts ``streamlit run app/main.py`` headless and drives Debian's Chromium with Playwright
(``make browser`` installs it). Per user count:

* ``first_load_s``: from opening the page to the demo's predictions drawn (the prediction
  bars of the ten demo photos), all users opening at once;
* ``edit_s``: each user renames the first class to a name of its own (a different edit per
  user) and presses Enter; the time until that name is visible in the predictions beside the
  editor. All users edit at the same moment. A rename reuses both networks (the meta-model
  reads descriptions, not names), so this is mostly the page's own cost;
* ``description_edit_s``: each user appends a sentence of its own to the first description
  (so one description is re-encoded and both classifiers re-synthesized, and nothing can be
  shared between users) and presses Ctrl+Enter; the time until the landing view says
  "before edit N" for this edit, i.e. the new predictions with their before-ticks are drawn.
  ``edit_websocket_kb_median``: what the server sent that page for one edit (the rerun's
  deltas up to the moment the new name shows; images go by URL and are fetched only when new).

Medians and all values are written; the server's machine and torch threads are recorded.
"""
from __future__ import annotations

import argparse
import asyncio
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def start_server(log: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app" / "main.py"), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true", "--server.fileWatcherType", "none",
           "--browser.gatherUsageStats", "false"]
    out = open(log, "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 180
    while True:
        try:
            if urllib.request.urlopen(url + "/_stcore/health", timeout=2).read().strip() == b"ok":
                return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"streamlit did not start:\n{log.read_text()[-3000:]}")
        time.sleep(0.5)


async def open_page(browser, url: str):
    context = await browser.new_context(viewport={"width": 1500, "height": 1100})
    page = await context.new_page()
    page.set_default_timeout(300_000)
    page.received = 0                                       # bytes the server sent over the websocket

    def count(ws):
        ws.on("framereceived", lambda payload: setattr(page, "received", page.received + len(payload)))

    page.on("websocket", count)
    t0 = time.perf_counter()
    await page.goto(url)
    await page.get_by_text("Synthesized a 5-way classifier").wait_for()
    await page.locator('[data-testid="stImage"]').nth(9).wait_for()      # the ten demo photos' predictions
    return page, time.perf_counter() - t0


async def rename(page, new: str) -> tuple[float, int]:
    box = page.get_by_label("Class name", exact=True).first
    await box.fill(new)
    sent = page.received
    t0 = time.perf_counter()
    await box.press("Enter")
    await page.get_by_text(new, exact=True).first.wait_for()
    return time.perf_counter() - t0, page.received - sent


async def edit_description(page, n: int, text: str) -> float:
    box = page.get_by_label("Description", exact=True).first
    await box.fill(await box.input_value() + text)
    t0 = time.perf_counter()
    await box.press("Control+Enter")
    await page.get_by_text(f"before edit {n} (").first.wait_for()
    return time.perf_counter() - t0


async def measure(url: str, users: int, repeats: int) -> dict:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        opened = await asyncio.gather(*[open_page(browser, url) for _ in range(users)])
        pages = [pg for pg, _ in opened]
        results, described = [], []
        for r in range(repeats):
            results += await asyncio.gather(*[rename(pg, f"Probe bird {users}u {r}r {i}") for i, pg in enumerate(pages)])
        for r in range(repeats):
            described += await asyncio.gather(*[edit_description(pg, repeats + r + 1, f" Probe sentence {r} of page {i}.")
                                                for i, pg in enumerate(pages)])
        await browser.close()
    loads = [t for _, t in opened]
    edits = [t for t, _ in results]
    return {"users": users, "first_load_s": round(statistics.median(loads), 2), "all_first_load_s": [round(t, 2) for t in loads],
            "edit_s": round(statistics.median(edits), 2), "edit_s_max": round(max(edits), 2),
            "all_edit_s": [round(t, 2) for t in edits],
            "edit_websocket_kb_median": round(statistics.median(b for _, b in results) / 1024, 1),
            "description_edit_s": round(statistics.median(described), 2), "description_edit_s_max": round(max(described), 2),
            "all_description_edit_s": [round(t, 2) for t in described]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "browser_latency.json"))
    args = ap.parse_args()
    assert Path(CHROMIUM).exists(), "Debian's chromium is required (make browser)"
    import torch

    from n3core.evaluate import write_report

    log = Path(tempfile.mkdtemp()) / "streamlit.log"
    proc, url = start_server(log)
    try:
        asyncio.run(measure(url, 1, 1))                      # warm: models loaded, first synthesis cached
        rows = [asyncio.run(measure(url, u, args.repeats)) for u in args.users]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    report = {"machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads available, server and "
                         f"Chromium on the same machine", "repeats": args.repeats, "runs": rows,
              "targets": {"edit_s_1_user": 1.5, "edit_s_4_users": 4.0, "description_edit_s_1_user": 1.5,
                          "description_edit_s_4_users": 4.0}}
    write_report(report, args.out)
    for r in rows:
        print(f"{r['users']} user(s): first load {r['first_load_s']:.1f} s; rename → new name in the predictions "
              f"{r['edit_s']:.2f} s (median; slowest {r['edit_s_max']:.2f} s); description edit → new predictions "
              f"{r['description_edit_s']:.2f} s (slowest {r['description_edit_s_max']:.2f} s)")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
