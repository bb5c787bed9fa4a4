"""What several test folders share: where the shared data lives, a skip that fails under CI, the tiny config."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import pytest

from dxlab.config import compose

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


def free_port() -> int:
    """A free TCP port on loopback (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


TINY_OVERRIDES = ["debug=tiny"]


def tiny_config(root: Path, overrides=()):
    """The composed default with the debug overlay, all paths inside `root`, tracking to a local SQLite file; the
    real case reports are a sample of the shared ones (root/cases.jsonl, written by the tiny project)."""
    cfg = compose([*TINY_OVERRIDES, *overrides], config_dir=REPO / "conf")
    for key in list(cfg.paths):
        cfg.paths[key] = str(root / cfg.paths[key])
    cfg.data.sources.hpo_cohort.source.path = str(root / "data" / "raw" / "hpo_cohort")
    if "case_reports" in cfg.data.sources:
        cfg.data.sources.case_reports.source.path = str(root / "cases.jsonl")
    cfg.tracking.uri = f"sqlite:///{root / 'mlflow.db'}"
    return cfg
