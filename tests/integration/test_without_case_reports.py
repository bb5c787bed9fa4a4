"""Without ../shared (the real case reports missing), the graph still runs end to end on the simulated cohort and
says what it trained on: ingest records the source as missing, evaluate writes its outputs (the per-case folder
DVC expects says why it holds no rows). What the approval gate does with a line not measured:
tests/unit/test_gates.py."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import tiny_config


@pytest.fixture(scope="module")
def project_without_cases(tmp_path_factory, knowledge_dir):
    root = tmp_path_factory.mktemp("without_case_reports")
    cfg = tiny_config(root)  # the case file root/cases.jsonl is never written: the source is missing
    shutil.copytree(knowledge_dir, cfg.paths.knowledge)
    return root, cfg


def test_the_pipeline_runs_and_says_it_trained_without_real_cases(project_without_cases, monkeypatch):
    from dxlab.stages import evaluate, features, ingest, preprocess, simulate, train, validate

    root, cfg = project_without_cases
    assert not (root / "cases.jsonl").exists()
    monkeypatch.setenv("DXLAB_PSEUDONYM_KEY", "test-key")
    metrics = {}
    for stage in (simulate, ingest, validate, preprocess, features, train, evaluate):
        metrics[stage.__name__.rsplit(".", 1)[-1]] = stage.run(cfg)
    ingested = metrics["ingest"]["sources"]
    assert ingested["case_reports"]["status"].startswith("missing")
    assert ingested["hpo_cohort"]["status"] == "read" and ingested["hpo_cohort"]["n_rows"] > 0
    written = json.loads((root / "reports" / "metrics.json").read_text())
    assert "case_reports" not in written[cfg.model.name] and written[cfg.model.name]
    assert "no source evaluated by groups" in (Path(cfg.paths.evaluation) / "README.txt").read_text()
