"""A champion that cannot be loaded fails loudly: the service keeps the last good version (none: 503), /readyz names
the failed version and its error, the broken version is not loaded again on every poll (only a move of the alias
retries), and no local model file ever stands in for the registry's."""

from __future__ import annotations

import logging
import time
import uuid

import mlflow
import pytest
from fastapi.testclient import TestClient
from omegaconf import OmegaConf

from dxlab.serving.api import ApiSettings, ModelHolder, app_from_config, create_app
from dxlab.serving.scorer import Scorer, model_version

ALIAS = "broken-champion-test"  # an alias of its own: the shared `champion` never moves in these tests
PATIENT = {"findings": ["HP:0001166", "HP:0001083", "HP:0002616"], "age": 20.0, "sex": "M"}


@pytest.fixture()
def registry(prod_project, tmp_path):
    """(point(version), broken() -> a new version whose artifacts cannot be loaded, the good version); the alias
    and the broken versions are removed afterwards."""
    _, cfg = prod_project
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)
    good = str(client.get_model_version_by_alias("dxlab", "champion").version)
    created = []

    def broken() -> str:
        empty = tmp_path / f"no-model-{uuid.uuid4().hex[:8]}"  # registered, but no MLmodel, no artifact
        empty.mkdir()
        version = str(client.create_model_version("dxlab", source=str(empty)).version)
        created.append(version)
        return version

    def point(version: str) -> None:
        client.set_registered_model_alias("dxlab", ALIAS, version)

    yield point, broken, good
    try:
        client.delete_registered_model_alias("dxlab", ALIAS)
    finally:
        for version in created:
            client.delete_model_version("dxlab", version)


def _config(cfg, **changes):
    copy = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    copy.serve.model = f"models:/{cfg.tracking.registered_model}@{ALIAS}"
    copy.serve.api.explain_method = "none"
    for key, value in changes.items():
        OmegaConf.update(copy, key, value, force_add=True)
    return copy


def _wait(condition, seconds: float = 60.0, every: float = 0.1):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (value := condition()):
            return value
        time.sleep(every)
    raise AssertionError(f"not within {seconds} s")


def test_a_broken_champion_at_start_is_503_and_never_the_local_file(prod_project, registry):
    root, cfg = prod_project
    point, broken, _ = registry
    bad = broken()
    point(bad)
    served = _config(cfg, **{"serve.api.reload_interval_s": 0})
    local = root / "models" / f"{cfg.model.name}.joblib"
    assert local.exists()  # an unapproved file is right there: it must not be served
    with pytest.raises(RuntimeError, match="MLmodel"):
        Scorer.from_config(served)  # the batch path (`dxlab predict`) refuses as well
    with TestClient(app_from_config(served)) as c:
        assert c.get("/healthz").status_code == 200
        ready = c.get("/readyz")
        assert ready.status_code == 503, ready.text
        assert ready.json()["load_failure"]["version"] == bad and "MLmodel" in ready.json()["load_failure"]["error"]
        r = c.post("/v1/predict", json=PATIENT)
        assert r.status_code == 503 and "file:" not in r.text


def test_an_alias_the_registry_does_not_have_is_503_not_the_local_file(prod_project):
    _, cfg = prod_project
    served = _config(cfg, **{"serve.model": "models:/dxlab@no-such-alias", "serve.api.reload_interval_s": 0})
    assert model_version(served.serve.model, served.paths.models, served.tracking.uri) == ""  # no file version
    with TestClient(app_from_config(served)) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 503 and "no-such-alias" in ready.json()["reason"]
        assert c.post("/v1/predict", json=PATIENT).status_code == 503


def test_the_last_good_version_keeps_serving_and_a_broken_one_is_not_retried(prod_project, registry, caplog):
    _, cfg = prod_project
    point, broken, good = registry
    point(good)
    app = app_from_config(_config(cfg, **{"serve.api.reload_interval_s": 0.1}))
    holder = app.state.holder
    loads = []
    factory = holder.factory
    holder.factory = lambda: loads.append(holder.version_now()) or factory()
    with caplog.at_level(logging.INFO, logger="dxlab.api"), TestClient(app) as c:
        assert c.get("/readyz").json()["model_version"] == good and loads == [good]
        first = broken()
        point(first)
        failed = _wait(lambda: (c.get("/readyz").json().get("load_failure") or {}).get("version") == first)
        assert failed
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["model_version"] == good
        assert "MLmodel" in ready.json()["load_failure"]["error"]
        answer = c.post("/v1/predict", json=PATIENT)
        assert answer.status_code == 200 and answer.json()["model_version"] == good  # still served
        tries = len(loads)
        time.sleep(1.5)  # about 15 polls
        assert len(loads) == tries and loads.count(first) == 1, loads  # not loaded again and again
        errors = [r for r in caplog.records if r.levelno == logging.ERROR and f"version {first} not loaded" in
                  r.getMessage()]
        assert len(errors) == 1 and f"still serving version {good}" in errors[0].getMessage()
        second = broken()  # the alias moves again: one more try
        point(second)
        _wait(lambda: (c.get("/readyz").json().get("load_failure") or {}).get("version") == second)
        assert loads.count(second) == 1 and c.post("/v1/predict", json=PATIENT).json()["model_version"] == good
        point(good)  # back to the version served: nothing to load, and the failure is history
        _wait(lambda: "load_failure" not in c.get("/readyz").json())
        assert loads.count(good) == 1 and c.get("/readyz").json()["model_version"] == good
        assert all(not v.startswith("file:") for v in loads)


class _Scorer:
    def __init__(self, version: str):
        self.model_name, self.model_version, self.detector = "fake", version, None


def test_the_holder_remembers_a_failed_version_until_the_alias_moves():
    alias = {"version": "1"}
    tried = []

    def factory():
        tried.append(alias["version"])
        if alias["version"].startswith("broken"):
            raise OSError(f"cannot read version {alias['version']}")
        return _Scorer(alias["version"])

    holder = ModelHolder(factory, lambda: alias["version"])
    assert holder.maybe_reload() and holder.scorer.model_version == "1"
    alias["version"] = "broken-2"
    for _ in range(5):
        assert not holder.maybe_reload()
    assert tried == ["1", "broken-2"] and holder.scorer.model_version == "1"
    assert holder.failed_version == "broken-2" and "cannot read version broken-2" in holder.error
    alias["version"] = "broken-3"
    assert not holder.maybe_reload() and tried[-1] == "broken-3" and holder.failed_version == "broken-3"
    alias["version"] = "4"
    assert holder.maybe_reload() and holder.scorer.model_version == "4" and not holder.error
    assert not holder.failed_version


def test_without_any_model_an_unknown_version_is_retried():
    """A registry that cannot say which version (''): nothing is remembered, the next poll tries again."""
    calls = []

    def factory():
        calls.append(1)
        raise ConnectionError("registry unreachable")

    holder = ModelHolder(factory, lambda: "")
    for _ in range(3):
        holder.maybe_reload()
    assert len(calls) == 3 and holder.scorer is None and holder.failed_version == ""


def test_readyz_of_a_holder_that_never_loaded(monkeypatch):
    monkeypatch.setenv("DXLAB_API_KEY", "k")

    def factory():
        raise ValueError("version 9 is corrupt")

    app = create_app(ModelHolder(factory, lambda: "9"), ApiSettings(reload_interval_s=0))
    with TestClient(app) as c:
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["load_failure"] == {"version": "9", "error": "ValueError: version 9 is corrupt"}
