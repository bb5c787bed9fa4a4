"""A sweep member judged on real cases by folds of publications: refitted per fold, scored on the fold's cases."""

import json

import pytest
from omegaconf import OmegaConf

from dxlab.config import compose
from dxlab.evaluation.sweep_summary import write_summary

pytestmark = pytest.mark.integration


def test_a_grouped_member_is_judged_on_the_real_cases(tiny_project, tmp_path):
    from dxlab.stages.sweep import run_member

    root, project_cfg, _ = tiny_project
    cfg = OmegaConf.create(OmegaConf.to_container(project_cfg, resolve=False))
    # the zoo's logistic regression, learning from the real cases too: what the grouped sweep is for
    cfg.model = compose(["model=logreg", "model.train_sources=null"]).model
    cfg.cv = compose(["cv=grouped", "cv.n_splits=3"]).cv
    cfg.tracking.enabled = False
    member = tmp_path / "0"
    (member / ".hydra").mkdir(parents=True)
    (member / ".hydra" / "overrides.yaml").write_text("- cv=grouped\n- model=logreg\n")
    before = {p: p.stat().st_mtime_ns for p in (root / "data").rglob("*") if p.is_file()}
    result = run_member(cfg, member)
    # the member works in its own folder: the project it was started from is left as it was
    assert {p: p.stat().st_mtime_ns for p in (root / "data").rglob("*") if p.is_file()} == before
    line = result["logreg"]["case_reports"]
    assert line["cv"] == {"kind": "grouped", "n_splits": 3, "n_cases": line["overall"]["n"],
                          "n_groups": line["cv"]["n_groups"]}
    # every real case scored once, by a model that never saw its publication: a case whose disease only its own
    # publication reports is unknown to it (the unseen stratum is never a hit)
    assert line["overall"]["n"] > 100 and line["by_stratum"]["unseen"]["top1"] == 0.0
    assert json.loads((member / "reports" / "metrics.json").read_text()) == json.loads(json.dumps(result))
    text = write_summary(tmp_path).read_text()
    assert "on case_reports" in text and "model=logreg" in text


def test_a_member_judged_as_the_pipeline_judges_runs_in_its_own_folder(tiny_project, tmp_path):
    """cv=evaluate (the default): the member trains once and the evaluate stage's lines judge it, in its folder."""
    from dxlab.stages.sweep import run_member

    root, project_cfg, _ = tiny_project
    cfg = OmegaConf.create(OmegaConf.to_container(project_cfg, resolve=False))
    cfg.model = compose(["model=logreg"]).model  # the zoo: learns from the simulated feed
    cfg.tracking.enabled = False
    before = {p: p.stat().st_mtime_ns for p in (root / "data").rglob("*") if p.is_file()}
    result = run_member(cfg, tmp_path)
    assert {p: p.stat().st_mtime_ns for p in (root / "data").rglob("*") if p.is_file()} == before
    lines = result["logreg"]
    assert set(lines) == {"case_reports", "hpo_cohort_test"}
    assert 0.0 <= lines["case_reports"]["top1"] <= lines["case_reports"]["top10"] <= 1.0
    metrics = json.loads((tmp_path / "reports" / "metrics.json").read_text())
    assert metrics["logreg"]["case_reports"]["overall"]["top1"] == lines["case_reports"]["top1"]
    assert (tmp_path / "reports" / "evaluation" / "case_reports" / "metrics.json").exists()
