"""The sweep summary ranks members by rare-stratum metrics on the real case reports (the simulated test split
when a member has none) and says whether augmentation helps."""

import json

import yaml

from dxlab.evaluation.sweep_summary import write_summary


def _member(root, n, model, augment, rare_top3, overall_top3):
    member = root / str(n)
    (member / "reports").mkdir(parents=True)
    (member / ".hydra").mkdir()
    (member / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump([f"model={model}", f"augment={augment}"]))
    (member / "config.yaml").write_text(yaml.safe_dump({"model": {"name": model}}))
    real = {"overall": {"top3": overall_top3, "top1": 0.5},
            "by_stratum": {"common": {"top3": 0.9}, "mid": {"top3": 0.8}, "rare": {"top3": rare_top3, "top1": 0.3}}}
    simulated = {"overall": {"top3": 0.99, "top1": 0.99}, "by_stratum": {"rare": {"top3": 0.99, "top1": 0.99}}}
    baseline = {"case_reports": {"overall": {"top3": 0.1}, "by_stratum": {"rare": {"top3": 0.1}}}}
    (member / "reports" / "metrics.json").write_text(json.dumps({
        model: {"case_reports": real, "hpo_cohort_test": simulated}, "knowledge_ranker": baseline}))


def test_summary_ranks_by_rare_and_reports_augmentation(tmp_path):
    _member(tmp_path, 0, "logreg", "none", 0.70, 0.95)
    _member(tmp_path, 1, "logreg", "smote", 0.75, 0.94)
    _member(tmp_path, 2, "mlp", "none", 0.80, 0.90)
    _member(tmp_path, 3, "mlp", "gan", 0.78, 0.91)
    text = write_summary(tmp_path).read_text()
    assert "**rare** (top3): mlp [model=mlp augment=none] = 0.800" in text
    assert "**overall** (top3): logreg [model=logreg augment=none] = 0.950" in text
    assert "logreg: augment=smote beats none on rare top3 (0.750 vs 0.700)" in text
    assert "mlp: no augmentation beats none on rare top3 (best gan 0.780 vs none 0.800)" in text
    assert "knowledge_ranker" not in text  # the baseline riding along is not a sweep member
    assert "0.990" not in text and "on case_reports" in text  # the real cases decide, not the simulated split
    assert (tmp_path / "summary.csv").exists()


def test_augmentation_that_cannot_apply_is_called_so(tmp_path):
    _member(tmp_path, 0, "bayes", "none", 0.90, 0.95)
    _member(tmp_path, 1, "bayes", "smote", 0.90, 0.95)
    _member(tmp_path, 2, "logreg", "none", 0.70, 0.95)
    _member(tmp_path, 3, "logreg", "smote", 0.70, 0.96)
    text = write_summary(tmp_path).read_text()
    assert "bayes: every augmentation gives the same numbers as none (0.900)" in text
    assert "logreg: no augmentation beats none on rare top3 (best smote 0.700 vs none 0.700)" in text


def test_a_tie_on_the_primary_metric_is_broken_by_top1_and_said(tmp_path):
    _member(tmp_path, 0, "logreg", "none", 0.90, 0.95)
    _member(tmp_path, 1, "mlp", "none", 0.90, 0.95)
    member = tmp_path / "1" / "reports" / "metrics.json"
    metrics = json.loads(member.read_text())
    metrics["mlp"]["case_reports"]["by_stratum"]["rare"]["top1"] = 0.6
    member.write_text(json.dumps(metrics))
    text = write_summary(tmp_path).read_text()
    assert ("**rare** (top3): mlp [model=mlp augment=none] = 0.900; tied on top3 with 1 other model(s) (logreg), "
            "top1 0.600 breaks the tie") in text
