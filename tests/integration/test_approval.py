"""The approve stage against a real MLflow registry (SQLite in a temp folder)."""

import json
import shutil

import mlflow
import pytest
from omegaconf import OmegaConf

from dxlab.stages import approve
from dxlab.tracking.mlflow_tracking import package_requirements
from dxlab.tracking.pyfunc import INPUT_EXAMPLE, log_pyfunc
from dxlab.tracking.registry import promote

pytestmark = pytest.mark.integration


@pytest.fixture()
def registry_project(tiny_project, tmp_path):
    root, cfg, _ = tiny_project
    cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    cfg.paths.models = str(tmp_path / "models")
    cfg.paths.reports = str(tmp_path / "reports")
    shutil.copytree(root / "models", cfg.paths.models)
    shutil.copytree(root / "reports", cfg.paths.reports)
    cfg.tracking.uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(cfg.tracking.uri)
    mlflow.set_experiment("approval-test")
    with mlflow.start_run():
        name = cfg.model.name
        info = log_pyfunc(f"{cfg.paths.models}/{name}.joblib", name, package_requirements())
    (tmp_path / "models" / f"{name}.mlflow.json").write_text(json.dumps({"model_uri": info.model_uri}))
    return cfg


def _client(cfg):
    return mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)


def test_passing_model_becomes_champion_and_loads(registry_project):
    cfg = registry_project
    cfg.approval.minimum = {"overall.top3": 0.1}
    cfg.approval.maximum = {}
    assert approve.run(cfg)["approved"] == 1
    version = _client(cfg).get_model_version_by_alias("dxlab", "champion")
    assert version.tags["gates.passed"] == "True" and "metric.overall.top3" in version.tags
    model = mlflow.pyfunc.load_model("models:/dxlab@champion")
    assert model.predict(INPUT_EXAMPLE).shape[0] == len(INPUT_EXAMPLE)


def test_failing_model_does_not_move_champion(registry_project):
    cfg = registry_project
    cfg.approval.minimum = {"overall.top3": 0.1}
    cfg.approval.maximum = {}
    approve.run(cfg)
    champion = _client(cfg).get_model_version_by_alias("dxlab", "champion").version
    cfg.approval.minimum = {"overall.top3": 1.01}  # impossible
    assert approve.run(cfg)["approved"] == 0
    client = _client(cfg)
    assert client.get_model_version_by_alias("dxlab", "champion").version == champion
    challenger = client.get_model_version_by_alias("dxlab", "challenger")
    assert challenger.version != champion and challenger.tags["gates.passed"] == "False"
    assert "below the minimum" in challenger.tags["gates.reasons"]
    result = json.loads(open(f"{cfg.paths.reports}/approval.json").read())
    assert result["alias"] == "challenger" and not result["passed"]
    # a person promotes the challenger by hand: `dxlab promote --version N`
    promote(client, "dxlab", challenger.version)
    assert client.get_model_version_by_alias("dxlab", "champion").version == challenger.version
