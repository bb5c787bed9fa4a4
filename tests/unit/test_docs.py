"""The documentation site builds in strict mode (no broken link or anchor), and its nav and docs/ agree."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from helpers import REPO

DOCS = REPO / "docs"
MKDOCS = Path(sys.executable).parent / "mkdocs"


def _nav_pages(items) -> list[str]:
    """Every page path of an mkdocs nav (external links left out), in order."""
    pages = []
    for item in items:
        entries = item.items() if isinstance(item, dict) else [(None, item)]
        for _title, value in entries:
            if isinstance(value, list):
                pages += _nav_pages(value)
            elif not urlsplit(value).scheme:
                pages.append(value)
    return pages


def test_site_builds_strict(tmp_path):
    assert MKDOCS.exists(), f"{MKDOCS} missing: `make setup` installs mkdocs (the dev extra)"
    site = tmp_path / "site"
    run = subprocess.run([str(MKDOCS), "build", "--strict", "--site-dir", str(site)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (site / "index.html").exists()
    assert (site / "literature" / "index.html").exists()


def test_nav_and_docs_agree():
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    nav = _nav_pages(config["nav"])
    missing = [page for page in nav if not (DOCS / page).is_file()]
    assert not missing, f"in the nav of mkdocs.yml but not in docs/: {missing}"
    orphans = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if str(p.relative_to(DOCS)) not in nav)
    assert not orphans, f"in docs/ but not in the nav of mkdocs.yml: {orphans}"
