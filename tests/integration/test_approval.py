"""The approve stage against a real MLflow registry (SQLite in a temp folder): gates on the real cases, the champion
carries what it knows, and a model that regresses on real cases is refused while the champion stays."""

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
    """The tiny project's models (diagnostic and baseline) logged as pyfuncs into a fresh registry."""
    root, cfg, _ = tiny_project
    cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    cfg.paths.models = str(tmp_path / "models")
    cfg.paths.reports = str(tmp_path / "reports")
    shutil.copytree(root / "models", cfg.paths.models)
    shutil.copytree(root / "reports", cfg.paths.reports)
    cfg.tracking.uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(cfg.tracking.uri)
    mlflow.set_experiment("approval-test")
    for name in (cfg.model.name, cfg.baseline.name):
        with mlflow.start_run():
            info = log_pyfunc(f"{cfg.paths.models}/{name}.joblib", name, package_requirements())
        (tmp_path / "models" / f"{name}.mlflow.json").write_text(json.dumps({"model_uri": info.model_uri}))
    cfg.approval.minimum = {"case_reports.overall.top1": 0.1, "hpo_cohort_test.overall.top3": 0.1}
    cfg.approval.maximum = {"case_reports.overall.ece": 0.5}
    return cfg


def _client(cfg):
    return mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)


def test_passing_model_becomes_champion_with_what_it_knows_and_loads(registry_project):
    cfg = registry_project
    assert approve.run(cfg)["approved"] == 1
    version = _client(cfg).get_model_version_by_alias("dxlab", "champion")
    tags = version.tags
    assert tags["gates.passed"] == "True" and "metric.case_reports.overall.top1" in tags
    assert int(tags["dxlab.universe_size"]) > 12000 and tags["dxlab.knowledge_version"]
    assert json.loads(tags["dxlab.training_sources"]).keys() == {"hpo_cohort", "case_reports"}
    assert tags["dxlab.validated_on"] == "case_reports, hpo_cohort_test"
    top = mlflow.pyfunc.load_model("models:/dxlab@champion").predict(INPUT_EXAMPLE)
    assert list(top.columns) == ["patient", "rank", "disease_id", "name", "probability"]
    assert len(top) == 10 * len(INPUT_EXAMPLE) and top["name"].ne("").all()


def test_a_model_that_regresses_on_real_cases_is_refused_and_the_champion_stays(registry_project):
    cfg = registry_project
    approve.run(cfg)  # the diagnostic model: champion
    client = _client(cfg)
    champion = client.get_model_version_by_alias("dxlab", "champion").version
    metrics = json.loads(open(f"{cfg.paths.reports}/metrics.json").read())
    # the baseline (the annotations alone) ranks the real cases worse than the champion by more than the tolerance
    worse = metrics[cfg.baseline.name]["case_reports"]["overall"]["top1"]
    best = metrics[cfg.model.name]["case_reports"]["overall"]["top1"]
    assert worse < best - cfg.approval.no_regression.tolerance
    cfg.model = cfg.baseline  # approve the baseline as if it were the new model
    assert approve.run(cfg)["approved"] == 0
    assert client.get_model_version_by_alias("dxlab", "champion").version == champion
    challenger = client.get_model_version_by_alias("dxlab", "challenger")
    assert challenger.version != champion and challenger.tags["gates.passed"] == "False"
    assert "case_reports.overall.top1" in challenger.tags["gates.reasons"]
    assert "regresses" in challenger.tags["gates.reasons"]
    result = json.loads(open(f"{cfg.paths.reports}/approval.json").read())
    assert result["alias"] == "challenger" and not result["passed"]
    # a person promotes the challenger by hand: `dxlab promote --version N`
    promote(client, "dxlab", challenger.version)
    assert client.get_model_version_by_alias("dxlab", "champion").version == challenger.version


def test_a_run_without_real_cases_says_what_it_was_validated_on(registry_project):
    cfg = registry_project
    metrics = json.loads(open(f"{cfg.paths.reports}/metrics.json").read())
    for model in metrics.values():
        model.pop("case_reports")
    open(f"{cfg.paths.reports}/metrics.json", "w").write(json.dumps(metrics))
    assert approve.run(cfg)["approved"] == 1
    result = json.loads(open(f"{cfg.paths.reports}/approval.json").read())
    assert result["not_measured"] == ["case_reports"] and result["validated_on"] == ["hpo_cohort_test"]
    version = _client(cfg).get_model_version_by_alias("dxlab", "champion")
    assert version.tags["dxlab.validated_on"] == "hpo_cohort_test"
