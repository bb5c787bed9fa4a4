"""The stage graph end to end on a tiny cohort (tests/conftest.py runs it once per session)."""

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from dxlab.data.schema import read_parquet

pytestmark = pytest.mark.integration


def test_every_stage_wrote_its_outputs(tiny_project):
    root, cfg, metrics = tiny_project
    assert len(list((root / "data" / "raw" / "hpo_cohort").glob("patients_*.csv"))) == cfg.data.simulator.n_days
    for path in ("data/interim/patients.parquet", "data/processed/train.parquet", "data/processed/test.parquet",
                 "data/processed/features/featurizer.joblib", f"models/{cfg.model.name}.joblib",
                 f"models/{cfg.baseline.name}.joblib", "reports/metrics.json", "reports/metrics.md",
                 "reports/evaluation/case_reports/report.md", "data/evaluation/case_reports/ranks.csv"):
        assert (root / path).exists(), path
    assert list((root / "reports" / "evaluation" / "case_reports" / "figures").glob("*.png"))


def test_both_sources_train_and_are_evaluated_on_their_own_lines(tiny_project):
    root, cfg, metrics = tiny_project
    train = read_parquet(root / "data" / "processed" / "train.parquet")
    test = read_parquet(root / "data" / "processed" / "test.parquet")
    assert set(train["source"]) == {"hpo_cohort", "case_reports"}
    assert set(test["source"]) == {"hpo_cohort"}  # real cases are evaluated by grouped folds, never held out
    assert train.loc[train["source"] == "case_reports", "group_id"].str.startswith("PMID:").all()
    assert metrics["train"][cfg.model.name]["training_rows_by_source"] == train["source"].value_counts().to_dict()


def test_metrics_cover_models_lines_and_slices(tiny_project):
    root, cfg, metrics = tiny_project
    name = cfg.model.name
    results = json.loads((root / "reports" / "metrics.json").read_text())
    assert set(results) == {name, cfg.baseline.name}
    for model in results.values():
        assert set(model) == {"case_reports", "hpo_cohort_test"}
        for line in model.values():
            o = line["overall"]
            assert 0.0 <= o["top1"] <= o["top3"] <= o["top10"] <= 1.0 and 0 <= o["ece"] <= 1 and o["brier"] >= 0
            assert {"by_stratum", "by_sex", "by_age_band", "by_knowledge"} <= set(line)
            assert sum(s["n"] for s in line["by_stratum"].values()) == o["n"]
    # a dozen simulated diseases with distinct annotation profiles: far better than chance
    assert results[name]["hpo_cohort_test"]["overall"]["top3"] > 0.5
    # the real cases: each part alone and switched off, from the same model
    side = results[name]["case_reports"]["side_by_side"]
    assert {"likelihood from the annotations alone", "without the reranker", "without nearest training cases"} <= set(side)
    table = (root / "reports" / "metrics.md").read_text()
    assert f"| {name} | case_reports | overall |" in table and f"| {name} | hpo_cohort_test | overall |" in table


def test_injected_bad_rows_are_quarantined_not_dropped(tiny_project):
    root, _, metrics = tiny_project
    quarantine = pd.read_csv(root / "data" / "quarantine" / "quarantine.csv")
    valid = read_parquet(root / "data" / "interim" / "patients.parquet")
    n_raw = sum(len(pd.read_csv(p)) for p in (root / "data" / "raw" / "hpo_cohort").glob("patients_*.csv"))
    n_raw += sum(1 for _ in (root / "cases.jsonl").open())
    n_bad = quarantine[["source", "source_file", "source_row"]].drop_duplicates().shape[0]
    assert n_bad >= 1 and len(valid) + n_bad == n_raw  # every row of every source: valid or quarantined
    assert {"source", "source_file", "source_row", "field", "reason"} <= set(quarantine.columns)


def test_no_raw_patient_id_leaves_ingest(tiny_project):
    root, _, _ = tiny_project
    raw_ids = set(pd.concat(pd.read_csv(p) for p in (root / "data" / "raw" / "hpo_cohort").glob("patients_*.csv"))["patient_id"])
    valid = read_parquet(root / "data" / "interim" / "patients.parquet")
    assert valid["patient_id"].str.startswith("px-").all()
    assert not set(valid["patient_id"]) & raw_ids
    quarantine = pd.read_csv(root / "data" / "quarantine" / "quarantine.csv", keep_default_na=False)
    assert not set(quarantine["patient_id"]) & raw_ids
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    for run in client.search_runs(client.search_experiments()[0].experiment_id
                                  if client.search_experiments() else "0"):
        blob = json.dumps(run.data.params) + json.dumps(run.data.tags)
        assert not any(pid in blob for pid in raw_ids)


def test_runs_are_tracked_in_mlflow(tiny_project):
    root, cfg, _ = tiny_project
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / 'mlflow.db'}")
    experiment = client.get_experiment_by_name(cfg.tracking.experiment)
    runs = client.search_runs([experiment.experiment_id])
    names = {r.info.run_name for r in runs}
    name = cfg.model.name
    assert {f"evaluate/{name}", f"evaluate/{cfg.baseline.name}", f"train/{name}"} <= names
    evaluated = next(r for r in runs if r.info.run_name == f"evaluate/{name}")
    assert "case_reports/overall/top1" in evaluated.data.metrics
    trained = next(r for r in runs if r.info.run_name == f"train/{name}")
    datasets = {i.dataset.name: i.dataset.digest for i in trained.inputs.dataset_inputs}
    assert set(datasets) == {"hpo_cohort", "case_reports"} and all(datasets.values())  # which data, by digest
    assert evaluated.data.tags.get("mlflow.source.git.commit")


def test_split_keeps_every_disease_in_training(tiny_project):
    root, _, _ = tiny_project
    train = read_parquet(root / "data" / "processed" / "train.parquet")
    test = read_parquet(root / "data" / "processed" / "test.parquet")
    assert set(test["diagnosis"]) <= set(train["diagnosis"])
    assert not set(train["patient_id"]) & set(test["patient_id"])
