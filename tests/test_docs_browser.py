"""/docs in a real headless Chromium renders Swagger UI with the collections (offline assets)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import requests


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    assert path, "chromium is required for this test (bash scripts/provision.sh installs it)"
    return path


def test_docs_page_lists_collections_in_a_browser(live_server, tmp_path: Path) -> None:
    server = live_server()
    assert requests.get(server.url + "/docs/", timeout=5).status_code == 200
    result = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
         server.url + "/docs/"],
        capture_output=True, text=True, timeout=120,
    )
    dom = result.stdout
    assert "swagger-ui" in dom, result.stderr[-2000:]
    # Swagger UI renders one tag section per collection, and the operations inside them.
    for collection in ("posts", "comments", "users"):
        assert f'data-tag="{collection}"' in dom or f'id="operations-tag-{collection}"' in dom, collection
    assert "/api/collections/posts/{id}" in dom
