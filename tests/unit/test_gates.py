"""Quality gates: pass, fail on a minimum, a maximum, a regression against the champion (either direction), and
a line the run did not measure."""

from dxlab.tracking.registry import check_gates, flat_metrics, metric_value

METRICS = {"case_reports": {"overall": {"top1": 0.62, "top10": 0.74, "ece": 0.04}, "by_stratum": {"rare": {"top1": 0.7}}},
           "hpo_cohort_test": {"overall": {"top3": 0.97}}}


def test_dotted_names_reach_nested_metrics():
    assert metric_value(METRICS, "case_reports.overall.top1") == 0.62
    assert metric_value(METRICS, "case_reports.by_stratum.rare.top1") == 0.7
    assert metric_value(METRICS, "case_reports.overall.mrr") is None
    assert flat_metrics(METRICS)["hpo_cohort_test.overall.top3"] == 0.97


def test_passes_when_every_gate_holds():
    decision = check_gates(METRICS, {"case_reports.overall.top1": 0.5, "hpo_cohort_test.overall.top3": 0.8},
                           {"case_reports.overall.ece": 0.1})
    assert decision.passed and not decision.reasons and len(decision.checks) == 3


def test_fails_below_a_minimum_and_above_a_maximum():
    decision = check_gates(METRICS, {"case_reports.overall.top10": 0.8}, {"case_reports.overall.ece": 0.01})
    assert not decision.passed
    assert any("top10" in r and "below" in r for r in decision.reasons)
    assert any("ece" in r and "above" in r for r in decision.reasons)


def test_missing_metric_of_a_measured_line_fails_and_an_absent_line_is_named():
    assert not check_gates(METRICS, {"case_reports.overall.mrr": 0.1}).passed
    decision = check_gates(METRICS, {"hospital.overall.top1": 0.5})
    assert decision.passed and decision.not_measured == ["hospital"]
    # ... unless the champion was validated on it: a model never measured there does not replace it
    decision = check_gates(METRICS, {"hospital.overall.top1": 0.5}, champion={"hospital.overall.top1": 0.4})
    assert not decision.passed and "not measured on hospital" in decision.reasons[0]


def test_regression_against_champion_beyond_tolerance_fails_in_either_direction():
    champion = {"case_reports.overall.top1": 0.64, "case_reports.overall.ece": 0.03}
    assert check_gates(METRICS, champion=champion, higher_is_better=["case_reports.overall.top1"],
                       lower_is_better=["case_reports.overall.ece"], tolerance=0.05).passed
    decision = check_gates(METRICS, champion=champion, higher_is_better=["case_reports.overall.top1"], tolerance=0.01)
    assert not decision.passed and "regresses" in decision.reasons[0]
    worse = check_gates(METRICS, champion=champion, lower_is_better=["case_reports.overall.ece"], tolerance=0.005)
    assert not worse.passed and "ece" in worse.reasons[0]
