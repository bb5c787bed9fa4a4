"""Quality gates: pass, fail on a minimum, a maximum, and a regression against the champion."""

from dxlab.tracking.registry import check_gates

METRICS = {"overall": {"macro_f1": 0.8, "top3": 0.95, "ece": 0.05}, "rare": {"top3": 0.85}}


def test_passes_when_every_gate_holds():
    decision = check_gates(METRICS, {"overall.macro_f1": 0.6, "rare.top3": 0.8}, {"overall.ece": 0.1})
    assert decision.passed and not decision.reasons and len(decision.checks) == 3


def test_fails_below_a_minimum_and_above_a_maximum():
    decision = check_gates(METRICS, {"rare.top3": 0.9}, {"overall.ece": 0.01})
    assert not decision.passed
    assert any("rare.top3" in r and "below" in r for r in decision.reasons)
    assert any("overall.ece" in r and "above" in r for r in decision.reasons)


def test_missing_metric_fails_rather_than_passing():
    assert not check_gates(METRICS, {"mid.top3": 0.1}).passed


def test_regression_against_champion_beyond_tolerance_fails():
    champion = {"overall.top3": 0.97, "rare.top3": 0.85}
    assert check_gates(METRICS, champion=champion, no_regression=["overall.top3"], tolerance=0.05).passed
    decision = check_gates(METRICS, champion=champion, no_regression=["overall.top3"], tolerance=0.01)
    assert not decision.passed and "regresses" in decision.reasons[0]
