"""Fixtures of the production path (the project they serve, `prod_project`, is in tests/conftest.py: the browser
tests share it)."""

from __future__ import annotations

import pytest

KEY = "production-test-key"


@pytest.fixture()
def pseudonym_key(monkeypatch):
    monkeypatch.setenv("DXLAB_PSEUDONYM_KEY", KEY)
    return KEY.encode()



@pytest.fixture(autouse=True)
def _tracking_env(request, monkeypatch):
    """MLFLOW_TRACKING_URI wins over the config (dxlab.tracking), and mlflow.set_tracking_uri sets it for the whole
    process: pin it to the test project's registry so no other test's store leaks in (restored afterwards)."""
    if "prod_project" in request.fixturenames:
        import mlflow

        _, cfg = request.getfixturevalue("prod_project")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", cfg.tracking.uri)
        mlflow.set_tracking_uri(cfg.tracking.uri)  # another folder's test may have set the process-wide one
        yield
        mlflow.set_tracking_uri(None)  # then monkeypatch puts the variable back as it was
    else:
        yield
