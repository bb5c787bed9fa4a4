"""The clinician's page at `/` in headless Chromium: a finding typed and picked from the autocomplete gives a
differential; a suggested finding added in one click changes it; a finding excluded and removed; a note read and
its findings highlighted; the whole flow with the keyboard alone; nothing requested outside the service, nothing
stored in the browser, under 300 KB; no serious accessibility violation (axe-core, the npm package `make test`
installs under .venv/axe, given to the page by the test only). The `page` fixture fails a test on any third-party
request or page error. A screenshot goes to reports/figures/clinician_page.png."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from dxlab.data.schema import read_parquet

try:
    from playwright.sync_api import expect
except ImportError:  # a skip where it is missing, a failure under CI (CI=true)
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("playwright not installed (pip install -e '.[dev]')", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO / "reports" / "figures" / "clinician_page.png"
AXE = REPO / ".venv" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
NOTE = ("6-year-old boy, hypotonic since infancy, global developmental delay, two febrile seizures; hearing normal, "
        "no cardiac murmur; his maternal uncle had intellectual disability.")
HYPOTONIA, HEARING_IMPAIRMENT = "HP:0001252", "HP:0000365"


@pytest.fixture(scope="module")
def findings(prod_project, server):
    """(hpo_id, name) of the findings of a test patient of the tiny project, names from the API's index."""
    import urllib.request

    root, _ = prod_project
    test = read_parquet(root / "data" / "processed" / "test.parquet")
    out = []
    for term in dict.fromkeys(t for row in test["findings"] for t in row):
        with urllib.request.urlopen(f"{server}/v1/terms?q={term}") as r:
            hits = json.loads(r.read())["terms"]
        if hits and hits[0]["hpo_id"] == term:
            out.append((term, hits[0]["name"]))
        if len(out) == 4:
            return out
    pytest.fail("no phenotype finding in the tiny project's test split")


def updates(page) -> int:
    return int(page.evaluate("Number(document.body.dataset.updates || 0)"))


def wait_update(page, after: int) -> float:
    """Until the differential has been rendered again since `after` renders; the milliseconds from the change to
    the rendered differential (the page's own measure: request, scoring, ask-next and rendering)."""
    page.wait_for_function("n => Number(document.body.dataset.updates || 0) > n", arg=after)
    return float(page.evaluate("Number(document.body.dataset.latency || 'NaN')"))


def last_request(page, bodies: list, want, seconds: float = 15) -> dict:
    """The last /v1/predict body the page sent, once it is what `want` accepts: a render counted by `wait_update`
    may be the answer to a request sent before the change (the page sends one per change, and answers can overlap),
    so the request the change caused is waited for, not assumed to be the last one seen."""
    for _ in range(int(seconds * 10)):
        if bodies and want(bodies[-1]):
            return bodies[-1]
        page.wait_for_timeout(100)  # lets Playwright deliver the request events
    raise AssertionError(f"the page never sent the expected request; the last one: {bodies[-1] if bodies else None}")


def combobox(page):
    return page.get_by_role("combobox", name="Add a finding")


def add_by_typing(page, hpo_id: str, name: str) -> None:
    """Type the finding's name, pick it with the mouse in the autocomplete, see it recorded as present."""
    combobox(page).fill(name)
    page.locator(f'#suggestions [role=option][data-hpo="{hpo_id}"]').click()
    expect(page.locator(f'#findings li[data-hpo="{hpo_id}"]')).to_be_visible()
    expect(page.get_by_role("combobox", name=f"Status of {name}")).to_have_value("present")


def test_type_pick_and_see_the_differential(page, findings):
    response = page.goto(page.base_url + "/")
    assert "default-src 'self'" in response.headers["content-security-policy"]
    expect(page.get_by_text("Decision support, not a diagnosis")).to_be_visible()
    before = updates(page)
    (hpo_id, name), *_ = findings
    add_by_typing(page, hpo_id, name)
    wait_update(page, before)
    rows = page.locator("#differential > li")
    expect(rows.first).to_be_visible()
    assert 1 <= rows.count() <= 5
    first = rows.first
    assert first.locator(".dx-name").inner_text().strip()
    assert first.locator(".dx-p").inner_text().endswith("%")
    disease = first.get_attribute("data-disease")
    if disease.startswith(("OMIM:", "ORPHA:")):
        href = first.locator(".dx-id a").get_attribute("href")
        assert href.startswith(("https://omim.org/entry/", "https://www.orpha.net/")) and disease.split(":")[1] in href
    expect(page.locator("#model")).to_contain_text("version")
    expect(page.get_by_role("status")).to_contain_text("first")
    # nothing about the patient kept by the browser
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    assert page.evaluate("document.cookie") == "" and page.context.cookies() == []
    weight = page.evaluate("performance.getEntries()"
                           ".reduce((s, e) => s + (e.transferSize || e.encodedBodySize || 0), 0)")
    assert weight < 300_000


def test_a_suggested_finding_is_added_in_one_click_and_changes_the_differential(page, findings, record_property):
    page.goto(page.base_url + "/")
    latencies = []
    for hpo_id, name in findings[:2]:
        before = updates(page)
        add_by_typing(page, hpo_id, name)
        latencies.append(wait_update(page, before))
    suggestions = page.locator("#ask-next > li")
    expect(suggestions.first).to_be_visible()
    recorded = {h for h, _ in findings[:2]}
    suggested = [suggestions.nth(i).get_attribute("data-hpo") for i in range(suggestions.count())]
    assert 1 <= len(suggested) <= 5 and not recorded & set(suggested)
    differential = page.locator("#differential").inner_text()
    first = suggestions.first
    name = first.locator(".q").inner_text()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    before = updates(page)
    first.get_by_role("button", name=f"Add {name} as present").click()
    expect(page.locator(f'#findings li[data-hpo="{suggested[0]}"]')).to_be_visible()
    latencies.append(wait_update(page, before))
    assert page.locator("#differential").inner_text() != differential
    # reported, not asserted (target: under 150 ms from a change to the refreshed differential)
    record_property("refresh_ms", latencies)
    print(f"differential refreshed {latencies} ms after each change")
    assert suggested[0] not in [suggestions.nth(i).get_attribute("data-hpo") for i in range(suggestions.count())]


def test_exclude_then_remove_a_finding(page, findings):
    page.goto(page.base_url + "/")
    bodies = []
    page.on("request", lambda r: bodies.append(json.loads(r.post_data)) if "/v1/predict" in r.url else None)
    for hpo_id, name in findings[:2]:
        before = updates(page)
        add_by_typing(page, hpo_id, name)
    wait_update(page, before)
    (kept, _), (other, other_name) = findings[:2]
    before = updates(page)
    page.get_by_role("combobox", name=f"Status of {other_name}").select_option("excluded")
    expect(page.locator(f'#findings li[data-hpo="{other}"]')).to_have_class("excluded")
    wait_update(page, before)
    last_request(page, bodies, lambda b: b["findings"] == [kept] and b["excluded"] == [other])
    before = updates(page)
    page.get_by_role("button", name=f"Remove {other_name}").click()
    expect(page.locator(f'#findings li[data-hpo="{other}"]')).to_have_count(0)
    wait_update(page, before)
    last_request(page, bodies, lambda b: b["findings"] == [kept] and b["excluded"] == [])


def test_keyboard_only(page, findings):
    page.goto(page.base_url + "/")
    for _ in range(15):  # from the top of the page to the finding box with Tab alone
        if page.evaluate("document.activeElement.id") == "finding-input":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "finding-input"
    hpo_id, name = findings[0]
    page.keyboard.type(name[: max(4, len(name) // 2)])
    box = combobox(page)
    expect(box).to_have_attribute("aria-expanded", "true")
    options = page.locator("#suggestions [role=option]")
    if options.count() > 1:  # arrows move the active option (aria-activedescendant follows)
        page.keyboard.press("ArrowDown")
        expect(options.nth(1)).to_have_attribute("aria-selected", "true")
        expect(box).to_have_attribute("aria-activedescendant", options.nth(1).get_attribute("id"))
        page.keyboard.press("ArrowUp")
    expect(options.first).to_have_attribute("aria-selected", "true")
    chosen = options.first.get_attribute("data-hpo")
    before = updates(page)
    page.keyboard.press("Enter")
    expect(page.locator(f'#findings li[data-hpo="{chosen}"]')).to_be_visible()
    expect(box).to_be_focused()
    wait_update(page, before)
    # Tab to the first suggested finding's "Present" button and add it with Enter
    for _ in range(80):
        if page.evaluate("document.activeElement.closest('#ask-next') !== null"):
            break
        page.keyboard.press("Tab")
    focused = page.evaluate("document.activeElement.getAttribute('aria-label')")
    assert focused and focused.startswith("Add ") and focused.endswith(" as present")
    suggested = page.evaluate("document.activeElement.closest('li').dataset.hpo")
    before = updates(page)
    page.keyboard.press("Enter")
    expect(page.locator(f'#findings li[data-hpo="{suggested}"]')).to_be_visible()
    wait_update(page, before)


def test_a_note_is_read_and_its_findings_highlighted(page):
    page.goto(page.base_url + "/")
    page.get_by_text("Read a clinical note").click()
    page.get_by_label("Paste a note").fill(NOTE)
    before = updates(page)
    page.get_by_role("button", name="Read the note").click()
    expect(page.locator(f'#findings li[data-hpo="{HYPOTONIA}"]')).to_have_class("present")
    expect(page.locator(f'#findings li[data-hpo="{HEARING_IMPAIRMENT}"]')).to_have_class("excluded")
    view = page.locator("#note-view")
    expect(view.locator("button.mention.present").first).to_be_visible()
    expect(view.locator("button.mention.negated").first).to_be_visible()
    expect(view.locator("mark.family")).to_have_count(1)
    assert view.inner_text() == NOTE  # the note shown as typed, findings highlighted in place
    wait_update(page, before)
    hypotonia = view.locator("button.mention", has_text="hypotonic")
    hypotonia.click()  # a correction with one click: present -> excluded
    expect(page.locator(f'#findings li[data-hpo="{HYPOTONIA}"]')).to_have_class("excluded")


def test_no_serious_accessibility_violation(page, findings):
    """axe-core over the page with a differential, suggestions and a note read: no serious or critical finding."""
    if not AXE.exists():
        message = f"axe-core not found at {AXE} (make test installs it: npm install --prefix .venv/axe axe-core)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    page.goto(page.base_url + "/")
    for hpo_id, name in findings[:2]:
        before = updates(page)
        add_by_typing(page, hpo_id, name)
    wait_update(page, before)
    page.get_by_text("Read a clinical note").click()
    page.get_by_label("Paste a note").fill(NOTE)
    page.get_by_role("button", name="Read the note").click()
    expect(page.locator("#note-view mark.family")).to_have_count(1)
    combobox(page).fill(findings[2][1])  # the autocomplete open too
    expect(page.locator("#suggestions [role=option]").first).to_be_visible()
    page.evaluate(AXE.read_text())  # through the browser's debugging protocol: the page's own CSP still holds
    result = page.evaluate("() => axe.run(document, {resultTypes: ['violations']})")
    serious = [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in result["violations"]
               if v["impact"] in ("serious", "critical")]
    assert not serious, serious
