"""Drift: statistics on known shifts, no drift on held-out patients, clear drift on a shifted day, the reports."""

import json

import numpy as np
import pandas as pd
import pytest

from dxlab.data.schema import read_parquet
from dxlab.monitor.batch import feed_rows, monitor_from_config
from dxlab.monitor.drift import (
    Thresholds,
    build_reference,
    categorical_profile,
    compare,
    compare_categorical,
    compare_numeric,
    numeric_profile,
    psi,
)
from dxlab.monitor.shift import shift_day
from dxlab.serving.scorer import Scorer


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    ref = numeric_profile(rng.normal(0, 1, 5000))
    same = compare_numeric(ref, rng.normal(0, 1, 2000), Thresholds())
    moved = compare_numeric(ref, rng.normal(1, 1, 2000), Thresholds())
    assert same["psi"] < 0.05 and same["drift"] is False
    assert moved["psi"] > 0.5 and moved["drift"] is True and moved["p_value"] < 1e-6
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0
    assert compare_numeric(ref, rng.normal(3, 1, 10), Thresholds())["drift"] is None  # too few to judge


def test_categorical_drift_needs_size_and_significance():
    ref = categorical_profile(["F"] * 500 + ["M"] * 480 + ["missing"] * 20)
    assert compare_categorical(ref, ["F"] * 50 + ["M"] * 50, Thresholds())["drift"] is False
    shifted = compare_categorical(ref, ["M"] * 95 + ["F"] * 5, Thresholds())
    assert shifted["drift"] is True and shifted["js"] > 0.1
    assert compare_categorical(ref, ["F", "M", "X"] * 40, Thresholds())["unseen_categories"] == ["X"]


@pytest.fixture(scope="module")
def reference_setup(prod_project):
    root, cfg = prod_project
    scorer = Scorer.from_config(cfg, explain="none")
    train = feed_rows(cfg, read_parquet(root / "data" / "processed" / "train.parquet"))
    test = read_parquet(root / "data" / "processed" / "test.parquet")
    reference = build_reference(train, scorer.score(test), model=scorer.model_name,
                                model_version=scorer.model_version)
    return scorer, reference, test


def test_held_out_patients_do_not_drift(reference_setup):
    scorer, reference, test = reference_setup
    report = compare(reference, test, scorer.score(test), thresholds=Thresholds(min_samples=20))
    assert report["summary"]["judged"] and not report["summary"]["drift"], report["summary"]
    assert report["performance"]["degraded"] is False


@pytest.mark.parametrize("kind, feature", [("age", "age"), ("sex", "sex"), ("findings", "n_findings")])
def test_each_shift_is_caught_by_its_statistic(reference_setup, kind, feature):
    scorer, reference, test = reference_setup
    shifted = test.copy()
    if kind == "age":
        shifted["age"] = shifted["age"] + 40
    elif kind == "sex":
        shifted["sex"] = "M"
    else:
        shifted["findings"] = [f[:1] for f in shifted["findings"]]
    report = compare(reference, shifted, None, thresholds=Thresholds(min_samples=20))
    assert feature in report["summary"]["drifted_inputs"]


def test_wrong_diagnoses_show_as_degraded_performance(reference_setup):
    scorer, reference, test = reference_setup
    preds = scorer.score(test)
    preds["diagnosis"] = np.roll(preds["diagnosis"].to_numpy(), 7)  # labels of other patients
    report = compare(reference, test, preds, thresholds=Thresholds(min_samples=20))
    assert report["performance"]["degraded"] is True and report["summary"]["retrain_recommended"]


def test_monitor_command_on_a_held_out_day_and_a_shifted_day(prod_project, tmp_path, pseudonym_key):
    """The `dxlab monitor` flow on files: the held-out patients of the tiny cohort, then the same day shifted."""
    from prometheus_client.parser import text_string_to_metric_families

    root, cfg = prod_project
    test = read_parquet(root / "data" / "processed" / "test.parquet")
    raw = pd.concat(pd.read_csv(p, dtype=str, keep_default_na=False)
                    for p in sorted((root / "data" / "raw" / "hpo_cohort").glob("patients_*.csv")))
    # raw rows of the held-out (test) patients: same pseudonyms under the fixture's key
    from dxlab.data.pseudonym import pseudonymise

    held = {pseudonymise(pid, b"test-key", cfg.data.feed) for pid in raw["patient_id"]} & set(test["patient_id"])
    assert held, "the tiny project pseudonymised with the conftest key"
    mask = [pseudonymise(pid, b"test-key", cfg.data.feed) in held for pid in raw["patient_id"]]
    day = tmp_path / "held_out"
    day.mkdir()
    raw[mask].to_csv(day / "patients_2025-02-01.csv", index=False)
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    shift_day(raw[mask]).to_csv(shifted / "patients_2025-02-02.csv", index=False)
    cfg = cfg.copy()
    cfg.monitor.thresholds.min_samples = 20
    cfg.monitor.reference = str(tmp_path / "reference.json")
    (day / "patients_2025-02-03.csv").write_bytes(b"\x00\xff binary \x00" * 40)  # unreadable: reported, skipped
    calm = monitor_from_config(cfg, day, predictions=None, out=tmp_path / "calm")
    assert calm["files_unreadable"] and calm["files_unreadable"][0].startswith("patients_2025-02-03.csv: ")
    assert calm["n_quarantined"] == 0  # no row of a readable file was bad
    alarm = monitor_from_config(cfg, shifted, predictions=None, out=tmp_path / "alarm")
    assert calm["n_patients"] == len(held) and not calm["summary"]["drift"], calm["summary"]
    assert alarm["summary"]["drift"] and {"age", "sex"} <= set(alarm["summary"]["drifted_inputs"])
    assert "top1_disease" in alarm["summary"]["drifted_predictions"]
    for out, expected in ((tmp_path / "calm", 0), (tmp_path / "alarm", 1)):
        assert json.loads((out / "report.json").read_text())["summary"]["drift"] == bool(expected)
        assert "<table>" in (out / "report.html").read_text()
        families = {f.name: f for f in text_string_to_metric_families((out / "metrics.prom").read_text())}
        assert families["dxlab_monitor_drift_detected"].samples[0].value == expected
    assert json.loads((tmp_path / "reference.json").read_text())["model_version"] == "1"


def test_live_drift_gauges_follow_the_request_window(reference_setup):
    from prometheus_client import generate_latest

    from dxlab.serving.metrics import DriftWindow, ServiceMetrics

    _, reference, test = reference_setup
    metrics = ServiceMetrics()
    window = DriftWindow(reference, metrics, size=60, update_every=20)
    window.add(test.head(19))
    assert "dxlab_input_drift_psi{" not in generate_latest(metrics.registry).decode()  # not enough yet
    window.add(test.head(40))
    calm = metrics.drift_psi.labels("age")._value.get()
    older = test.head(60).assign(age=test.head(60)["age"] + 50)
    window.add(older)  # the window now holds only shifted patients
    assert metrics.drift_psi.labels("age")._value.get() > max(0.2, calm)
    assert metrics.drift_window._value.get() == 60
