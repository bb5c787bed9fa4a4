"""Fixtures of the browser tests: the API of the production fixtures (the tiny project's diagnostic model behind
the registry alias, anomaly detector, note reader) served by uvicorn on a free port, and headless Chromium from
Debian's `chromium` package driven by Playwright (`playwright install` cannot download browsers here).

A missing browser or Playwright skips locally and fails under CI (CI=true): a skipped browser test proves nothing.
`make test` installs chromium first when it can (root).

This folder runs before the others (alphabetical order): the production fixtures set MLflow's process-wide tracking
URI (`mlflow.set_tracking_uri` exports MLFLOW_TRACKING_URI, which wins over any config), so the server fixture
puts back what was there once the model is loaded -- the later test folders log to their own stores.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import urllib.request

import pytest

from helpers import free_port


def _missing(message: str):
    if os.environ.get("CI") == "true":
        pytest.fail(message + " (CI must run the browser tests: `make test` installs chromium as root)")
    pytest.skip(message)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium")
    if path is None:
        _missing("chromium not found (apt-get install -y chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        _missing("playwright not installed (pip install -e '.[dev]')")
    return path


@pytest.fixture(scope="module")
def server(request):
    """The service of `dxlab serve` on the production fixtures, in a thread; yields its base URL."""
    import mlflow
    import uvicorn

    from dxlab.serving.api import app_from_config

    saved = os.environ.get("MLFLOW_TRACKING_URI")
    _, cfg = request.getfixturevalue("prod_project")
    os.environ["MLFLOW_TRACKING_URI"] = cfg.tracking.uri  # the fixture's registry, while the model loads
    port = free_port()
    app = app_from_config(cfg, require_key=False)  # the page's tests type no key: keyless, explicitly
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, name="dxlab-test-server", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/readyz", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            time.sleep(0.3)
    else:
        pytest.fail("the test server did not become ready")
    mlflow.set_tracking_uri(saved)  # None unsets it (reloads are off: the server needs the registry no more)
    yield url
    uv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=chromium_path, headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser, server):
    """A fresh browser context (no storage shared between tests) on the page; every request it makes is kept in
    `page.requests` and every console error / page error in `page.errors`, checked after the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.requests, page.errors = [], []
    page.on("request", lambda r: page.requests.append(r))
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    page.base_url = server
    yield page
    third_party = [r.url for r in page.requests if not r.url.startswith((server, "data:"))]
    errors = list(page.errors)
    context.close()
    assert not third_party, f"requests outside the service: {third_party}"
    assert not errors, f"errors in the page: {errors}"
