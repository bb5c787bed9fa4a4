"""Hand-computed checks of dxlab.evaluation.metrics (and a smoke test of the plots)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from dxlab.evaluation.metrics import (
    assign_strata,
    calibration_table,
    confused_pairs,
    evaluate_predictions,
    per_disease_table,
    top_k_accuracy,
)

# --------------------------------------------------------------------------- toy data
# 5 patients, 3 classes A, B, C; patient 5 has disease D, which is NOT in classes.
# Training counts with default thresholds (common >= 100, mid >= 10):
#   A = 100 -> common (exactly at the threshold), B = 10 -> mid (exactly), C = 9 -> rare,
#   D absent from train_counts -> 0 -> rare.
CLASSES = ["A", "B", "C"]
Y_TRUE = ["A", "A", "B", "C", "D"]
PROBA = np.array(
    [
        [0.7, 0.2, 0.1],  # p1 true A: pred A (hit), rank of A = 1
        [0.2, 0.5, 0.3],  # p2 true A: pred B,       rank of A = 3
        [0.1, 0.6, 0.3],  # p3 true B: pred B (hit), rank of B = 1
        [0.5, 0.1, 0.4],  # p4 true C: pred A,       rank of C = 2
        [0.3, 0.3, 0.4],  # p5 true D: pred C,       D not in classes -> always a miss
    ]
)
TRAIN = {"A": 100, "B": 10, "C": 9}
# y_pred = [A, B, B, A, C]
# One-vs-rest over all 5 patients:
#   A: TP=1 (p1) FP=1 (p4) FN=1 (p2) TN=2 -> sens 1/2, spec 2/3, prec 1/2, F1 1/2
#   B: TP=1 (p3) FP=1 (p2) FN=0      TN=3 -> sens 1,   spec 3/4, prec 1/2, F1 2/3
#   C: TP=0      FP=1 (p5) FN=1 (p4) TN=3 -> sens 0,   spec 3/4,           F1 0
#   D: TP=0      FP=0      FN=1 (p5) TN=4 -> sens 0,   spec 1,             F1 0
# ROC AUC (one-vs-rest, all patients):
#   A: scores [.7,.2,.1,.5,.3], pos {.7,.2} vs neg {.1,.5,.3}: .7 beats 3, .2 beats 1 -> 4/6
#   B: scores [.2,.5,.6,.1,.3], pos {.6} beats all 4 negatives                    -> 1
#   C: scores [.1,.3,.3,.4,.4], pos {.4} vs {.1,.3,.3,.4}: 3 wins + 1 tie (1/2)   -> 3.5/4
#   D: not in classes -> skipped
# Brier per patient (sum over classes of (p - onehot)^2):
#   p1 .09+.04+.01=.14  p2 .64+.25+.09=.98  p3 .01+.16+.09=.26  p4 .25+.01+.36=.62
#   p5 .09+.09+.16=.34 plus 1 for the missing true column D -> 1.34


def _eval(**kw):
    return evaluate_predictions(Y_TRUE, PROBA, CLASSES, TRAIN, **kw)


# --------------------------------------------------------------------------- strata


def test_assign_strata_exact_thresholds():
    counts = {"a": 100, "b": 99, "c": 10, "d": 9, "e": 0}
    assert assign_strata(counts, {"common_min": 100, "mid_min": 10}) == {
        "a": "common", "b": "mid", "c": "mid", "d": "rare", "e": "rare",
    }
    # custom thresholds: 5 <= mid < 50
    assert assign_strata({"x": 50, "y": 49, "z": 5, "w": 4}, {"common_min": 50, "mid_min": 5}) == {
        "x": "common", "y": "mid", "z": "mid", "w": "rare",
    }
    # defaults when thresholds are missing; an unseen disease counts 0 -> rare
    assert assign_strata({"a": 100, "c": 10}, {}, diseases=["zz"]) == {"a": "common", "c": "mid", "zz": "rare"}


def test_assign_strata_rejects_inverted_thresholds():
    with pytest.raises(ValueError):
        assign_strata({"a": 1}, {"common_min": 5, "mid_min": 50})


# --------------------------------------------------------------------------- top-k


def test_top_k_accuracy_with_label_absent_from_classes():
    # ranks of the true label: p1 1, p2 3, p3 1, p4 2, p5 never (D not in classes)
    assert top_k_accuracy(Y_TRUE, PROBA, CLASSES, 1) == pytest.approx(2 / 5)
    assert top_k_accuracy(Y_TRUE, PROBA, CLASSES, 2) == pytest.approx(3 / 5)
    assert top_k_accuracy(Y_TRUE, PROBA, CLASSES, 3) == pytest.approx(4 / 5)
    # k beyond the number of classes: D still a miss
    assert top_k_accuracy(Y_TRUE, PROBA, CLASSES, 10) == pytest.approx(4 / 5)


def test_top_k_ties_share_the_mean_rank():
    proba = np.array([[0.4, 0.4, 0.2]] * 2)
    # A and B tied first: both rank 1.5, so neither is a top-1 hit, whatever the column order; both are top-2
    assert top_k_accuracy(["A", "B"], proba, CLASSES, 1) == 0.0
    assert top_k_accuracy(["B", "B"], proba, CLASSES, 1) == 0.0
    assert top_k_accuracy(["A", "B"], proba, CLASSES, 2) == 1.0


def test_top_k_rejects_bad_shapes():
    with pytest.raises(ValueError):
        top_k_accuracy(Y_TRUE, PROBA[:, :2], CLASSES, 1)


# --------------------------------------------------------------------------- evaluate_predictions


def test_overall_metrics_by_hand():
    m = _eval()["overall"]
    assert m["n_patients"] == 5
    assert m["n_diseases"] == 4  # A, B, C, D
    assert m["top1"] == pytest.approx(2 / 5)
    assert m["top3"] == pytest.approx(4 / 5)
    assert m["top10"] == pytest.approx(4 / 5)
    assert m["macro_f1"] == pytest.approx((1 / 2 + 2 / 3 + 0 + 0) / 4)  # 0.291667
    assert m["macro_sensitivity"] == pytest.approx((1 / 2 + 1 + 0 + 0) / 4)  # 0.375
    assert m["macro_specificity"] == pytest.approx((2 / 3 + 3 / 4 + 3 / 4 + 1) / 4)  # 0.791667
    assert m["macro_auc_roc"] == pytest.approx((4 / 6 + 1 + 3.5 / 4) / 3)  # D skipped
    assert m["brier"] == pytest.approx((0.14 + 0.98 + 0.26 + 0.62 + 1.34) / 5)  # 0.668


def test_stratum_metrics_by_hand():
    r = _eval(n_bins=10)
    common, mid, rare = r["common"], r["mid"], r["rare"]
    # common = {A}: patients p1, p2
    assert (common["n_patients"], common["n_diseases"]) == (2, 1)
    assert common["top1"] == pytest.approx(1 / 2)
    assert common["top3"] == pytest.approx(1.0)
    assert common["macro_f1"] == pytest.approx(1 / 2)
    assert common["macro_sensitivity"] == pytest.approx(1 / 2)
    assert common["macro_specificity"] == pytest.approx(2 / 3)
    assert common["macro_auc_roc"] == pytest.approx(4 / 6)
    assert common["brier"] == pytest.approx((0.14 + 0.98) / 2)
    # ECE, 10 bins: p1 conf .7 correct (bin (.6,.7]), p2 conf .5 wrong (bin (.4,.5])
    #   -> 1/2*|1-.7| + 1/2*|0-.5| = 0.15 + 0.25 = 0.4
    assert common["ece"] == pytest.approx(0.4)
    # mid = {B}: patient p3; F1 is computed over all patients (p2 is a false positive)
    assert (mid["n_patients"], mid["n_diseases"]) == (1, 1)
    assert mid["top1"] == 1.0
    assert mid["macro_f1"] == pytest.approx(2 / 3)
    assert mid["macro_sensitivity"] == 1.0
    assert mid["macro_specificity"] == pytest.approx(3 / 4)
    assert mid["brier"] == pytest.approx(0.26)
    # rare = {C, D}: patients p4, p5
    assert (rare["n_patients"], rare["n_diseases"]) == (2, 2)
    assert rare["top1"] == 0.0
    assert rare["top3"] == pytest.approx(1 / 2)  # C at rank 2, D never
    assert rare["macro_f1"] == 0.0
    assert rare["macro_sensitivity"] == 0.0
    assert rare["macro_specificity"] == pytest.approx((3 / 4 + 1) / 2)
    assert rare["macro_auc_roc"] == pytest.approx(3.5 / 4)  # only C: D not in classes
    assert rare["brier"] == pytest.approx((0.62 + 1.34) / 2)


def test_metric_names_follow_ks():
    r = evaluate_predictions(Y_TRUE, PROBA, CLASSES, TRAIN, ks=(1, 2))
    assert r["overall"]["top2"] == pytest.approx(3 / 5)
    assert "top3" not in r["overall"] and "top10" not in r["overall"]


def test_auc_skips_class_without_positives():
    # class E is in the model's classes (rare: unseen in training) but no test patient has it
    classes = ["A", "B", "E"]
    y = ["A", "A", "B", "B"]
    proba = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.4, 0.5, 0.1],
            [0.3, 0.6, 0.1],
            [0.6, 0.3, 0.1],
        ]
    )
    r = evaluate_predictions(y, proba, classes, {"A": 5, "B": 5})
    # A: pos {.8,.4} vs neg {.3,.6}: .8 beats 2, .4 beats 1 -> 3/4
    # B: pos {.6,.3} vs neg {.1,.5}: .6 beats 2, .3 beats 1 -> 3/4
    assert r["overall"]["macro_auc_roc"] == pytest.approx(3 / 4)
    assert r["rare"]["n_diseases"] == 2  # E is not a test disease
    table = per_disease_table(y, proba, classes, {"A": 5, "B": 5})
    e = table.set_index("disease").loc["E"]
    assert e["n_test"] == 0 and np.isnan(e["auc_roc"]) and np.isnan(e["recall"])
    assert table.set_index("disease").loc["A", "auc_roc"] == pytest.approx(3 / 4)


def test_empty_stratum_gives_none_and_json_works():
    r = evaluate_predictions(Y_TRUE, PROBA, CLASSES, {"A": 500, "B": 500, "C": 500, "D": 500})
    assert r["rare"]["n_patients"] == 0 and r["mid"]["n_patients"] == 0
    assert r["rare"]["n_diseases"] == 0
    for key in ("top1", "top3", "top10", "macro_f1", "macro_auc_roc", "macro_sensitivity",
                "macro_specificity", "ece", "brier"):
        assert r["rare"][key] is None
        assert r["mid"][key] is None
    assert r["common"]["n_patients"] == 5
    text = json.dumps(r, allow_nan=False)
    assert json.loads(text) == r
    # all values are plain python types (json.dumps would refuse numpy int64)
    json.dumps(_eval(), allow_nan=False)
    for stratum in _eval().values():
        for v in stratum.values():
            assert v is None or type(v) in (int, float)


def test_single_disease_test_set_has_no_nan():
    # only one disease in y_true: no negatives -> specificity and AUC undefined -> None
    r = evaluate_predictions(["A", "A"], np.array([[0.9, 0.1], [0.6, 0.4]]), ["A", "B"], {"A": 1})
    assert r["overall"]["macro_specificity"] is None
    assert r["overall"]["macro_auc_roc"] is None
    assert r["overall"]["macro_sensitivity"] == 1.0
    json.dumps(r, allow_nan=False)


def test_ece_perfectly_calibrated_vs_overconfident():
    # 10 patients, every top-1 probability is 0.8 and exactly 8 of 10 are right -> ECE 0
    y = ["A"] * 8 + ["B"] * 2
    proba = np.tile([0.8, 0.2], (10, 1))
    r = evaluate_predictions(y, proba, ["A", "B"], {"A": 1000, "B": 1000})
    assert r["overall"]["ece"] == pytest.approx(0.0, abs=1e-12)
    assert r["overall"]["top1"] == pytest.approx(0.8)
    # overconfident: top-1 probability 0.99 but only half right -> ECE = |0.5 - 0.99| = 0.49
    y = ["A"] * 5 + ["B"] * 5
    proba = np.tile([0.99, 0.01], (10, 1))
    r = evaluate_predictions(y, proba, ["A", "B"], {"A": 1000, "B": 1000})
    assert r["overall"]["ece"] == pytest.approx(0.49)
    assert r["overall"]["ece"] > 0.4


# --------------------------------------------------------------------------- tables


def test_per_disease_table():
    t = per_disease_table(Y_TRUE, PROBA, CLASSES, TRAIN)
    assert list(t.columns) == ["disease", "train_count", "stratum", "n_test", "recall",
                               "top3_recall", "f1", "auc_roc"]
    assert list(t["disease"]) == ["A", "B", "C", "D"]  # train_count 100, 10, 9, 0
    assert list(t["stratum"]) == ["common", "mid", "rare", "rare"]
    assert list(t["n_test"]) == [1 * 2, 1, 1, 1]
    np.testing.assert_allclose(t["recall"], [0.5, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(t["top3_recall"], [1.0, 1.0, 1.0, 0.0])
    np.testing.assert_allclose(t["f1"], [0.5, 2 / 3, 0.0, 0.0])
    np.testing.assert_allclose(t["auc_roc"], [4 / 6, 1.0, 3.5 / 4, np.nan])


def test_confused_pairs():
    y = ["A", "A", "A", "B", "B", "C", "C"]
    p = ["B", "B", "A", "A", "C", "A", "B"]
    t = confused_pairs(y, p)
    # A->B twice; then B->A, B->C, C->A, C->B once each (alphabetical tie-break); A->A is diagonal
    assert list(t.columns) == ["actual", "predicted", "count"]
    assert list(zip(t["actual"], t["predicted"], t["count"])) == [
        ("A", "B", 2), ("B", "A", 1), ("B", "C", 1), ("C", "A", 1), ("C", "B", 1),
    ]
    assert len(confused_pairs(y, p, top=2)) == 2
    assert confused_pairs(["A"], ["A"]).empty


def test_calibration_table():
    t = calibration_table(Y_TRUE, PROBA, CLASSES, n_bins=10)
    # top-1 confidences: .7 (hit), .5 (miss), .6 (hit), .5 (miss), .4 (miss)
    # bins (right-closed): .4 -> 3, .5 -> 4, .6 -> 5, .7 -> 6
    assert list(t.columns) == ["bin", "mean_confidence", "accuracy", "count"]
    assert list(t["bin"]) == [3, 4, 5, 6]
    assert list(t["count"]) == [1, 2, 1, 1]
    np.testing.assert_allclose(t["mean_confidence"], [0.4, 0.5, 0.6, 0.7])
    np.testing.assert_allclose(t["accuracy"], [0.0, 0.0, 1.0, 1.0])


# --------------------------------------------------------------------------- plots


def test_plots_write_png(tmp_path):
    from dxlab.evaluation import plots

    per = per_disease_table(Y_TRUE, PROBA, CLASSES, TRAIN)
    r = _eval()
    y_pred = [CLASSES[i] for i in PROBA.argmax(axis=1)]
    long_name = "Autosomal recessive something syndrome with a very long name, type 2"
    paths = [
        plots.plot_recall_vs_train_count(per, tmp_path / "recall.png",
                                         thresholds={"common_min": 100, "mid_min": 10}),
        plots.plot_calibration({"logreg": calibration_table(Y_TRUE, PROBA, CLASSES),
                                "ranker": calibration_table(Y_TRUE, PROBA[:, ::-1], CLASSES)},
                               tmp_path / "calib.png"),
        plots.plot_confused_pairs(confused_pairs(Y_TRUE, y_pred), tmp_path / "sub" / "pairs.png",
                                  labels={"A": long_name}),
        plots.plot_metrics_by_stratum({"logreg": r, "empty-rare": evaluate_predictions(
            Y_TRUE, PROBA, CLASSES, {"A": 500, "B": 500, "C": 500, "D": 500})},
            tmp_path / "strata.png", metric="top3"),
    ]
    for p in paths:
        data = open(p, "rb").read()
        assert len(data) > 1000
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert plots._short(long_name).endswith("…") and len(plots._short(long_name)) == 45


def test_importing_package_does_not_load_pyplot():
    code = ("import sys, dxlab.evaluation, dxlab.evaluation.metrics, dxlab.evaluation.plots; "
            "assert 'matplotlib.pyplot' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)
