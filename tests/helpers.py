"""What several test folders share: where the shared data lives, and a skip that fails under CI."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
SHARED_CASES = SHARED_DATA / "phenopackets" / "cases.jsonl"


def require(path: Path, what: str) -> Path:
    """The path, or a skip where it is missing -- a failure under CI (CI=true), where a skip would prove nothing."""
    if not path.exists():
        message = f"{what} not found at {path}"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI runs with ../shared beside the project)")
        pytest.skip(message)
    return path


def require_tool(name: str, package: str) -> str:
    """The executable's path, or a skip where it is missing -- a failure under CI (CI=true): `make test` installs
    the Debian package as root."""
    found = shutil.which(name)
    if found is None:
        message = f"{name} not installed (Debian package `{package}`)"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI must run this test: `make test` installs it as root)")
        pytest.skip(message)
    return found
