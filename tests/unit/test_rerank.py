"""The reranker of the diagnostic model: learns a signal the weighted parts miss, stays out-of-fold, keeps every
other disease below its candidates in the parts' order."""

import numpy as np
import pytest

from dxlab.evaluation.cv import grouped_folds
from dxlab.models.rerank import CaseReranker, TooFewCases, candidates, pair_features, rerank

N_DISEASES, N_CANDIDATES = 40, 10


def _world(seed: int, n_cases: int = 600, n_pubs: int = 60):
    """Cases whose truth the score puts among its first five, and a noisy part that points at it."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, N_DISEASES, n_cases)
    groups = np.asarray([f"PMID:{i % n_pubs}" for i in range(n_cases)], dtype=object)
    score = rng.normal(0, 1, (n_cases, N_DISEASES))
    best = score.max(axis=1)
    score[np.arange(n_cases), truth] = best - rng.uniform(0.01, 0.5, n_cases)  # truth just below the top
    signal = rng.normal(0, 1, (n_cases, N_DISEASES))
    signal[np.arange(n_cases), truth] += 2.5
    noise = rng.normal(0, 1, (n_cases, N_DISEASES))
    cand = candidates(score, N_CANDIDATES)
    at = {name: np.take_along_axis(values, cand, axis=1) for name, values in
          (("score", score), ("signal", signal), ("noise", noise))}
    shape = cand.shape
    features, names = pair_features(at, cand, rng.uniform(0, 1, shape), rng.integers(1, 30, shape),
                                    rng.integers(0, 5, shape), rng.integers(0, 3, shape),
                                    rng.integers(1, 20, n_cases), rng.integers(0, 10, n_cases))
    fold = grouped_folds(truth.astype(str), groups, 5, seed)
    return score, cand, features, names, truth, fold


def _top1(scores: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(scores.argmax(axis=1) == truth))


def test_reranker_learns_what_the_parts_miss_out_of_fold():
    score, cand, features, names, truth, fold = _world(0)
    reranker = CaseReranker(n_estimators=60, min_training_cases=50).fit(features, cand == truth[:, None], fold, names)
    reranked = rerank(score, cand, reranker.margins(features, fold))  # every case by the model without its fold
    assert _top1(score, truth) < 0.05  # the truth is first only where it was the best already
    assert _top1(reranked, truth) > 0.6
    assert max(reranker.importance(), key=reranker.importance().get) in {"signal", "signal_to_best"}
    # new patients (no training fold) are reranked by the model trained on every case
    new_score, new_cand, new_features, _, new_truth, _ = _world(1)
    assert _top1(rerank(new_score, new_cand, reranker.margins(new_features)), new_truth) > 0.6


def test_a_folds_cases_never_teach_their_own_reranking():
    score, cand, features, names, truth, fold = _world(2)
    reranker = CaseReranker(n_estimators=40).fit(features, cand == truth[:, None], fold, names)
    before = reranker.margins(features, fold)
    own = fold == 0
    changed = truth.copy()
    changed[own] = (truth[own] + 1) % N_DISEASES  # other diagnoses for one fold's cases
    refit = CaseReranker(n_estimators=40).fit(features, cand == changed[:, None], fold, names)
    after = refit.margins(features, fold)
    np.testing.assert_array_equal(before[own], after[own])
    assert not np.array_equal(before[~own], after[~own])  # the others' models did learn from those cases


def test_candidates_go_first_and_the_rest_keep_the_parts_order():
    score, cand, features, names, truth, fold = _world(3)
    reranker = CaseReranker(n_estimators=20).fit(features, cand == truth[:, None], fold, names)
    reranked = rerank(score, cand, reranker.margins(features, fold))
    for i in range(len(truth)):
        rest = np.setdiff1d(np.arange(N_DISEASES), cand[i])
        assert reranked[i, cand[i]].min() > reranked[i, rest].max()
        np.testing.assert_array_equal(np.argsort(reranked[i, rest]), np.argsort(score[i, rest]))


def test_too_few_cases_to_learn_from_is_an_error():
    score, cand, features, names, truth, fold = _world(4, n_cases=30, n_pubs=5)
    with pytest.raises(TooFewCases, match="needs at least 50"):
        CaseReranker(n_estimators=5).fit(features, cand == truth[:, None], fold, names)
