"""Fixtures of the production path: a copy of the tiny project with an anomaly detector and an MLflow registry
whose `champion` alias points at the tiny project's diagnostic model, as the approve stage leaves it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import joblib
import pytest
from omegaconf import OmegaConf

KEY = "production-test-key"


def _copy_cfg(cfg, root: Path, old_root: Path):
    data = OmegaConf.to_container(cfg, resolve=False)
    text = json.dumps(data).replace(str(old_root), str(root))
    return OmegaConf.create(json.loads(text))


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def prod_project(tiny_project, tmp_path_factory):
    """(root, cfg): the tiny project copied, a fitted anomaly detector, a registry with champion = diagnostic v1."""
    import mlflow
    from hydra.utils import instantiate
    from sklearn.pipeline import Pipeline

    from dxlab.data.schema import read_parquet
    from dxlab.tracking.mlflow_tracking import package_requirements
    from dxlab.tracking.pyfunc import log_pyfunc
    from dxlab.tracking.registry import GateDecision, register

    old_root, old_cfg, _ = tiny_project
    root = tmp_path_factory.mktemp("prod_project")
    for name in ("data", "models", "reports"):
        shutil.copytree(old_root / name, root / name)
    shutil.copy(old_root / "cases.jsonl", root / "cases.jsonl")
    cfg = _copy_cfg(old_cfg, root, old_root)
    cfg.tracking.uri = f"sqlite:///{root / 'mlflow.db'}"
    cfg.tracking.experiment = "production-tests"
    cfg.serve.api.reload_interval_s = 0
    cfg.serve.batch.output = str(root / "data" / "predictions")
    cfg.serve.batch.progress = False
    # the anomaly stage's artifact, fitted the same way (features + the recommended detector) but faster
    train = read_parquet(root / "data" / "processed" / "train.parquet")
    features = instantiate(cfg.anomaly.features).fit(train)
    detector = instantiate(cfg.anomaly.auto).fit(features.transform(train))
    Path(cfg.serve.anomaly_detector).parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(Pipeline([("features", features), ("detector", detector)]), cfg.serve.anomaly_detector)
    # the registry: champion = the tiny project's diagnostic model, as the approve stage leaves it
    mlflow.set_tracking_uri(cfg.tracking.uri)
    # artifacts inside the temp project (the default, ./mlruns, would land in the checkout)
    mlflow.create_experiment(cfg.tracking.experiment, artifact_location=(root / "mlruns").as_uri())
    mlflow.set_experiment(cfg.tracking.experiment)
    name = cfg.model.name
    with mlflow.start_run(run_name="prod-fixture"):
        info = log_pyfunc(root / "models" / f"{name}.joblib", name, package_requirements())
    metrics = json.loads((root / "reports" / "metrics.json").read_text())[name]
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)
    register(client, info.model_uri, "dxlab", {line: {"overall": m["overall"]} for line, m in metrics.items()},
             GateDecision(True), "champion", {"dxlab.model": name})
    (root / "models" / f"{name}.mlflow.json").write_text(json.dumps({"model_uri": info.model_uri}))
    return root, cfg


@pytest.fixture()
def pseudonym_key(monkeypatch):
    monkeypatch.setenv("DXLAB_PSEUDONYM_KEY", KEY)
    return KEY.encode()



@pytest.fixture(autouse=True)
def _tracking_env(request, monkeypatch):
    """MLFLOW_TRACKING_URI wins over the config (dxlab.tracking), and mlflow.set_tracking_uri sets it for the whole
    process: pin it to the test project's registry so no other test's store leaks in (restored afterwards)."""
    if "prod_project" in request.fixturenames:
        _, cfg = request.getfixturevalue("prod_project")
        monkeypatch.setenv("MLFLOW_TRACKING_URI", cfg.tracking.uri)
