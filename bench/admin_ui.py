#!/usr/bin/env python3
"""The admin UI's records page on a collection of 100,000 rows, in headless Chromium, against gunicorn.

    .venv/bin/python bench/admin_ui.py [--rows 100000] [--rounds 5] [--pages 10]

A temporary project gets bench/crud.py's collection `items` (title, body, status, views); its rows are
inserted straight into the SQLite file in one transaction (`executemany`), then Alyx runs as in
production (`gunicorn -c gunicorn.conf.py -w 2 wsgi:app`). Playwright drives Debian's Chromium
(`executable_path=/usr/bin/chromium`: no browser download), signs in as an admin through the UI, and
measures, with the page's own clock (`performance.now()`, up to the animation frame after the rows are
in the DOM, i.e. the table painted):

  open (cold)   a full page load of /_admin/#/collections/items until the first table is painted
                (modules, the collection list with its counts, the first page, the realtime subscription)
  open (in app) from the overview to the records page (the SPA route change)
  next page     "Next ›" until the new page is painted (pages 2..N)
  sort          a click on a column header (views, no index: SQLite sorts 100k rows) until painted
  API list      GET perPage=30 with totals and with skipTotal=1, alternating, 20 calls each (the count's cost)

It also checks that no response of the list ever carries more than a page, and that the realtime
snapshot the page subscribes to carries at most one record. Targets (issue 11): open < 1 s, paging
< 200 ms. Prints one table; not part of the test suite.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import random
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, Server, call, load_average, percentile
from crud import ALYX_SCHEMA as SCHEMA  # the same `items` collection (title, body, status, views)

ADMIN, PASSWORD = "bench-admin@example.com", "bench-admin-password"
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"]
PAINTED = """async () => {
  // resolves with performance.now() at the animation frame after the table's rows are in the DOM
  await new Promise((done) => {
    const check = () => (document.querySelector("tbody tr[data-id]")
      ? requestAnimationFrame(() => done()) : requestAnimationFrame(check));
    check();
  });
  return performance.now();
}"""
CHANGED = """async (before) => {
  const t0 = performance.now();
  document.querySelector(before.click).click();
  await new Promise((done) => {
    const check = () => {
      const first = document.querySelector("tbody tr[data-id]");
      if (first && first.dataset.id !== before.first) requestAnimationFrame(() => done());
      else requestAnimationFrame(check);
    };
    check();
  });
  return performance.now() - t0;
}"""


def fill(db_path: Path, rows: int) -> float:
    """``rows`` records in one transaction (executemany); returns the seconds it took."""
    started = time.perf_counter()
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    rng = random.Random(1)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

    def row(n: int) -> tuple:
        at = str(now - dt.timedelta(seconds=rows - n))
        return ("".join(rng.choice(alphabet) for _ in range(15)), at, at, f"item {n:06d}",
                f"body of item {n} " * 4, "published" if n % 2 else "draft", rng.randrange(100_000))

    database = sqlite3.connect(db_path)
    with database:
        database.executemany('INSERT INTO "items" (id, created_at, updated_at, title, body, status, views) '
                             "VALUES (?, ?, ?, ?, ?, ?, ?)", (row(n) for n in range(rows)))
    database.close()
    return time.perf_counter() - started


def api_list_ms(port: int, token: str, calls: int = 20) -> tuple[list[float], list[float]]:
    """List pages with totals and with skipTotal=1, alternating (so neither gets the warmer cache)."""
    times: tuple[list[float], list[float]] = ([], [])
    for page in range(1, calls + 1):
        for skip, into in ((False, times[0]), (True, times[1])):
            path = f"/api/collections/items?perPage=30&page={page}" + ("&skipTotal=1" if skip else "")
            started = time.perf_counter()
            call(port, "GET", path, token=f"Bearer {token}")
            into.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5, help="page opens of each kind")
    parser.add_argument("--pages", type=int, default=10, help="next-page clicks")
    opts = parser.parse_args()
    from playwright.sync_api import sync_playwright

    load_before = load_average()
    server = Server("admin-ui")
    env = {**server.alyx_project(SCHEMA), "ALYX_FUNCTIONS_SANDBOX": "process"}
    try:
        made = subprocess.run([sys.executable, "-m", "alyx", "admin", "create", ADMIN, "--password-stdin"],
                              input=PASSWORD + "\n", capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
        if made.returncode != 0:
            raise SystemExit(made.stderr)
        insert_seconds = fill(Path(env["ALYX_PROJECT_DIR"]) / "data" / "alyx.db", opts.rows)
        server.start_gunicorn(env, workers=2)
        token = call(server.port, "POST", "/api/auth/login", {"email": ADMIN, "password": PASSWORD})["access_token"]
        url = f"http://127.0.0.1:{server.port}/_admin/"
        biggest_page = 0
        snapshot_docs = 0
        cold: list[float] = []
        warm: list[float] = []
        paging: list[float] = []
        sorting: list[float] = []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.set_default_timeout(60_000)

            def seen(response) -> None:  # noqa: ANN001 - playwright's Response
                nonlocal biggest_page
                if "/api/collections/items" in response.url and response.request.method == "GET":
                    try:
                        biggest_page = max(biggest_page, len(response.json().get("items", [])))
                    except Exception:  # noqa: BLE001 - not a list answer
                        pass

            def frames(ws) -> None:  # noqa: ANN001
                def received(payload: str | bytes) -> None:
                    nonlocal snapshot_docs
                    message = json.loads(payload)
                    if message.get("type") == "snapshot":
                        snapshot_docs = max(snapshot_docs, len(message["payload"].get("docs", [])))
                ws.on("framereceived", received)

            page.on("response", seen)
            page.on("websocket", frames)
            page.goto(url)
            page.fill("#email", ADMIN)
            page.fill("#password", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_selector("nav.side")
            for _ in range(opts.rounds):
                page.goto("about:blank")  # a new document: performance.now() counts from its navigation
                page.goto(url + "#/collections/items")
                cold.append(page.evaluate(PAINTED))  # performance.now() counts from the navigation's start
                page.wait_for_selector("span.live.on")
            for _ in range(opts.rounds):
                page.goto(url + "#/")
                page.wait_for_selector(".stat")
                started = page.evaluate(
                    "() => { const t = performance.now(); location.hash = '#/collections/items'; return t; }")
                warm.append(page.evaluate(PAINTED) - started)
            page.wait_for_selector("#next")
            for _ in range(opts.pages):
                first = page.get_attribute("tbody tr[data-id]", "data-id")
                paging.append(page.evaluate(CHANGED, {"click": "#next", "first": first}))
            for _ in range(2):
                first = page.get_attribute("tbody tr[data-id]", "data-id")
                sorting.append(page.evaluate(CHANGED, {"click": "button.sort[data-column='views']", "first": first}))
            browser.close()
        with_total, without_total = api_list_ms(server.port, token)
    finally:
        server.stop()

    def row(name: str, values: list[float], target: str) -> str:
        return (f"| {name} | {len(values)} | {statistics.median(values):.0f} | {percentile(values, 95):.0f} | "
                f"{max(values):.0f} | {target} |")

    print(f"# bench/admin_ui.py — {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
          f"Python {platform.python_version()}")
    print(f"rows: {opts.rows:,} inserted in {insert_seconds:.1f} s (one transaction); "
          f"load average before {load_before}, after {load_average()}")
    print("| measure | n | median ms | p95 ms | max ms | target |")
    print("|---|---:|---:|---:|---:|---|")
    print(row("open records page (cold load → table painted)", cold, "< 1000"))
    print(row("open records page (from the overview)", warm, "< 1000"))
    print(row("next page → painted", paging, "< 200"))
    print(row("sort by an unindexed column → painted", sorting, "—"))
    print(row("API list perPage=30 with totalItems", with_total, "—"))
    print(row("API list perPage=30 skipTotal=1", without_total, "—"))
    print(f"largest list answer the page loaded: {biggest_page} records (a page is 30); "
          f"largest realtime snapshot: {snapshot_docs} record(s)")


if __name__ == "__main__":
    main()
