"""The one rank and top-k of dxlab: ties share the mean rank everywhere (the case evaluation and the metrics of
the zoo alike); an unknown disease is a miss."""

import numpy as np
import pytest

from dxlab.evaluation.metrics import evaluate_predictions, top_k_accuracy
from dxlab.evaluation.ranking import rank_of_truth, ranking_metrics

CLASSES = ["A", "B", "C", "D"]
SCORES = np.array([
    [0.9, 0.5, 0.1, 0.0],  # truth A: rank 1
    [0.9, 0.5, 0.5, 0.0],  # truth C tied with B for 2nd-3rd: rank 2.5
    [0.2, 0.2, 0.2, 0.2],  # truth D tied with all four: rank 2.5 (no lucky top-1)
    [0.1, 0.2, 0.3, 0.4],  # truth X unknown: a miss
])
TRUTH = ["A", "C", "D", "X"]


def test_rank_of_truth_with_ties_and_unknown_disease():
    ranks = rank_of_truth(SCORES, CLASSES, TRUTH)
    assert list(ranks[:3]) == [1.0, 2.5, 2.5] and np.isinf(ranks[3])


def test_ranking_metrics_by_hand():
    ranks = np.array([1.0, 2.5, 2.5, np.inf, 11.0])
    m = ranking_metrics(ranks)
    assert m["n_cases"] == 5 and m["n_covered"] == 4
    assert m["top1"] == pytest.approx(1 / 5)
    assert m["top3"] == pytest.approx(3 / 5)
    assert m["top10"] == pytest.approx(3 / 5)
    assert m["covered_top3"] == pytest.approx(3 / 4)
    # MRR: (1 + 1/2.5 + 1/2.5 + 0 + 1/11) / 5
    assert m["mrr"] == pytest.approx((1 + 0.4 + 0.4 + 0 + 1 / 11) / 5)


def test_the_zoos_metrics_use_the_same_tie_rule():
    proba = SCORES / SCORES.sum(axis=1, keepdims=True)
    # row 3's tie with all four: a miss at k=1 and k=2 (mean rank 2.5), a hit at k=3 -- never a lucky first place
    assert top_k_accuracy(TRUTH, proba, CLASSES, 1) == pytest.approx(1 / 4)
    assert top_k_accuracy(TRUTH, proba, CLASSES, 3) == pytest.approx(3 / 4)
    overall = evaluate_predictions(TRUTH, proba, CLASSES, {})["overall"]
    ranks = rank_of_truth(proba, CLASSES, TRUTH)
    assert overall["top1"] == ranking_metrics(ranks)["top1"] and overall["top3"] == ranking_metrics(ranks)["top3"]
