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


@pytest.fixture(scope="session")
def prod_project(prod_project, tiny_project):
    """The production project, its service explicitly keyless: the tests call the API without a key, which
    `dxlab serve` refuses unless serve.api.require_key is false (tests of the key itself set one or copy the config
    with require_key true). The tiny project's stages leave MLFLOW_TRACKING_URI pointing at their own store, which
    has no registered model: unset it, so that a module's service built before `_tracking_env` runs loads the
    champion from this project's registry (no local file stands in for a registry model any more)."""
    import os

    _, cfg = prod_project
    cfg.serve.api.require_key = False
    if os.environ.get("MLFLOW_TRACKING_URI") == tiny_project[1].tracking.uri:
        import mlflow

        mlflow.set_tracking_uri(None)
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    return prod_project
