"""The clinician's page with the registry's champion, answering the Marfan presentation: docs/img/clinician_page.png.

Run from the project after `make repro` (`make screenshot`): serves the champion as `dxlab serve` does (a random
API key, typed into the page's key box as a user would), drives Debian's chromium with Playwright, types each
finding's name into the autocomplete and picks it, waits for the differential and "what to ask next", and writes
the screenshot shown by the README and the docs site. Prints the differential it saw.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "img" / "clinician_page.png"
# the textbook Marfan presentation of the model issue: (name typed, HPO id picked)
MARFAN = [("arachnodactyly", "HP:0001166"), ("ectopia lentis", "HP:0001083"), ("aortic root aneurysm", "HP:0002616"),
          ("myopia", "HP:0000545"), ("disproportionate tall stature", "HP:0001519")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(key: str) -> tuple[str, object]:
    import uvicorn

    from dxlab.config import load_params
    from dxlab.serving.api import app_from_config

    os.environ["DXLAB_API_KEY"] = key
    cfg = load_params([])
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app_from_config(cfg), host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, name="dxlab-screenshot-server", daemon=True).start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as r:
                if r.status == 200:
                    return url, server
        except OSError:
            time.sleep(0.5)
    raise RuntimeError("the service did not become ready (is there a champion? run `make repro`)")


def main() -> int:
    from playwright.sync_api import expect, sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        raise SystemExit("chromium not found: apt-get install -y chromium (`make browser`)")
    os.chdir(ROOT)
    key = secrets.token_urlsafe(24)
    url, server = serve(key)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto(url + "/")
            page.locator("#key-box summary").click()
            page.locator("#api-key").fill(key)
            page.locator("#age").fill("20")
            page.locator("#sex").select_option("M")
            for name, hpo_id in MARFAN:
                page.locator("#finding-input").fill(name)
                page.locator(f'#suggestions [role=option][data-hpo="{hpo_id}"]').click()
                expect(page.locator(f'#findings li[data-hpo="{hpo_id}"]')).to_be_visible()
            page.locator("#key-box summary").click()  # closed again: the key is not in the picture
            expect(page.locator("#differential > li").first).to_be_visible()
            page.wait_for_function("() => document.querySelectorAll('#findings li').length === %d" % len(MARFAN))
            page.wait_for_load_state("networkidle")
            expect(page.locator("#ask-next > li").first).to_be_visible()
            time.sleep(0.5)
            page.screenshot(path=str(OUT), full_page=True)
            print(page.locator("#differential").inner_text())
            browser.close()
    finally:
        server.should_exit = True
    print(f"wrote {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
