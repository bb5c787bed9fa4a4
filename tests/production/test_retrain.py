"""`dxlab retrain`: nothing to do without new files; a new day retrains and a passing model becomes champion;
a model that fails the gates is registered as challenger and the champion stays."""

import json
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from omegaconf import OmegaConf

from dxlab.retrain import SKIP_EXIT_CODE, find_new_files, retrain, run_step

pytestmark = pytest.mark.integration


@pytest.fixture()
def retrain_project(prod_project, tmp_path, monkeypatch):
    root, cfg = prod_project
    monkeypatch.setenv("DXLAB_PSEUDONYM_KEY", "test-key")  # the tiny project's ingest key
    new_root = tmp_path / "project"
    for name in ("data", "models", "reports", "artifacts"):
        shutil.copytree(root / name, new_root / name)
    shutil.copy(root / "mlflow.db", new_root / "mlflow.db")  # the registry with champion = the diagnostic model v1
    shutil.copy(root / "cases.jsonl", new_root / "cases.jsonl")  # the real case reports it was validated on
    text = json.dumps(OmegaConf.to_container(cfg, resolve=False)).replace(str(root), str(new_root))
    cfg = OmegaConf.create(json.loads(text))
    cfg.tracking.log_models = True
    cfg.baseline = None  # only the selected model is gated: training the baseline too would only cost time
    cfg.tracking.experiment = "retrain-tests"
    cfg.monitor.thresholds.min_samples = 20
    cfg.monitor.retrain.min_new_files = 1
    cfg.approval.minimum = {"hpo_cohort_test.overall.top3": 0.1}
    cfg.approval.maximum = {}
    cfg.approval.no_regression.tolerance = 1.0
    monkeypatch.setenv("MLFLOW_TRACKING_URI", cfg.tracking.uri)
    mlflow.set_tracking_uri(cfg.tracking.uri)
    mlflow.create_experiment(cfg.tracking.experiment, artifact_location=(new_root / "mlruns").as_uri())
    return new_root, cfg


def _champion(cfg) -> str:
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)
    return str(client.get_model_version_by_alias("dxlab", "champion").version)


def _new_day(cfg, day: str, prefix: str) -> None:
    folder = cfg.data.sources[cfg.data.feed].source.path
    raw = sorted(Path(folder).glob("patients_*.csv"))
    frame = pd.read_csv(raw[0], dtype=str, keep_default_na=False)
    frame["patient_id"] = prefix + frame["patient_id"]
    frame.to_csv(f"{folder}/patients_{day}.csv", index=False)


def test_retrain_promotes_only_a_model_that_passes(retrain_project):
    root, cfg = retrain_project
    before = _champion(cfg)
    idle = retrain(cfg)
    assert idle["retrain"] is False and idle["new_files"] == [] and idle["champion_after"] == before
    assert "stages" not in idle

    _new_day(cfg, "2025-02-01", "N")
    assert [Path(p).name for p in find_new_files(cfg)["new"]] == ["patients_2025-02-01.csv"]
    passed = retrain(cfg)
    assert passed["retrain"] and "1 new file(s) (threshold 1)" in passed["reasons"]
    assert passed["drift"]["judged"] and not passed["drift"]["drift"]  # a day like the others: no drift
    assert passed["approval"]["passed"] and passed["promoted"]
    assert passed["champion_after"] == _champion(cfg) != before
    assert find_new_files(cfg)["new"] == []  # the state now lists the new day
    assert json.loads((root / "reports" / "retrain" / "report.json").read_text())["promoted"] is True

    # the same flow step by step (the Airflow tasks): nothing new now, so `decide` exits with the skip code
    assert run_step(cfg, "find")[0]["n_new"] == 0 and run_step(cfg, "drift")[0]["drift"] is None
    decision, code = run_step(cfg, "decide")
    assert decision["retrain"] is False and code == SKIP_EXIT_CODE == 99  # dags/dxlab_retrain.py skips on 99

    _new_day(cfg, "2025-02-02", "M")
    cfg.approval.minimum = {"case_reports.overall.top1": 1.01}  # impossible: the next model must be refused
    cfg.monitor.retrain.stages = ["approve"]  # the gate on the model just trained is what this part checks
    refused = retrain(cfg)
    assert refused["retrain"] and not refused["approval"]["passed"] and not refused["promoted"]
    assert refused["champion_after"] == refused["champion_before"] == _champion(cfg)
    client = mlflow.MlflowClient(tracking_uri=cfg.tracking.uri)
    challenger = client.get_model_version_by_alias("dxlab", "challenger")
    assert challenger.tags["gates.passed"] == "False" and "below the minimum" in challenger.tags["gates.reasons"]
