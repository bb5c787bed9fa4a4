"""The reranker of the external ensemble: learns a signal the ensemble misses, stays leave-publication-out, keeps
every other disease below its candidates in the ensemble's order."""

import numpy as np
import pytest
from scipy import sparse

from dxlab.external.rerank import CaseReranker, PairContext, TooFewCases, candidates, reference_counts

N_DISEASES, N_TERMS = 40, 60


def _world(seed: int, n_cases: int = 600, n_pubs: int = 60):
    """Cases whose truth the ensemble puts among its first five, and a noisy part that points at it."""
    rng = np.random.default_rng(seed)
    universe = [f"OMIM:{100 + j}" for j in range(N_DISEASES)]
    truth = rng.integers(0, N_DISEASES, n_cases)
    groups = np.asarray([f"PMID:{i % n_pubs}" for i in range(n_cases)], dtype=object)
    ensemble = rng.normal(0, 1, (n_cases, N_DISEASES))
    best = ensemble.max(axis=1)
    ensemble[np.arange(n_cases), truth] = best - rng.uniform(0.01, 0.5, n_cases)  # truth just below the top
    signal = rng.normal(0, 1, (n_cases, N_DISEASES))
    signal[np.arange(n_cases), truth] += 2.5
    parts = {"ensemble": ensemble, "signal": signal, "noise": rng.normal(0, 1, (n_cases, N_DISEASES))}
    counts, own = reference_counts([universe[t] for t in truth], groups, universe)
    context = PairContext(groups=groups, n_findings=rng.integers(1, 20, n_cases).astype(float),
                          n_excluded=rng.integers(0, 10, n_cases).astype(float),
                          mentioned=sparse.random(n_cases, N_TERMS, density=0.1, random_state=seed, format="csr"),
                          annotation=sparse.random(N_DISEASES, N_TERMS, density=0.2, random_state=seed + 1,
                                                   format="csr"),
                          reference_counts=counts, own_counts=own)
    return parts, truth, context


def _top1(scores: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean(scores.argmax(axis=1) == truth))


def test_reranker_learns_what_the_ensemble_misses_on_held_out_publications():
    parts, truth, context = _world(0)
    reranker = CaseReranker(n_candidates=10, n_estimators=60, min_training_cases=50).fit(
        parts, parts["ensemble"], truth, context)
    reranked = reranker.rerank(parts, parts["ensemble"], context)  # every case by the model without its fold
    assert _top1(parts["ensemble"], truth) < 0.05  # the truth is first only where it was the best already
    assert _top1(reranked, truth) > 0.6
    assert max(reranker.importance(), key=reranker.importance().get) in {"signal", "signal_to_best"}
    # a file of new publications is reranked by the model trained on every reference case
    new_parts, new_truth, new_context = _world(1)
    new_context.groups = np.asarray([f"PMID:new{i}" for i in range(len(new_truth))], dtype=object)
    assert _top1(reranker.rerank(new_parts, new_parts["ensemble"], new_context), new_truth) > 0.6


def test_a_publications_cases_never_teach_its_own_reranking():
    parts, truth, context = _world(2)
    reranker = CaseReranker(n_candidates=10, n_estimators=40).fit(parts, parts["ensemble"], truth, context)
    before = reranker.rerank(parts, parts["ensemble"], context)
    own = context.groups == "PMID:7"
    changed = truth.copy()
    changed[own] = (truth[own] + 1) % N_DISEASES  # other diagnoses for one publication's cases
    refit = CaseReranker(n_candidates=10, n_estimators=40).fit(parts, parts["ensemble"], changed, context)
    after = refit.rerank(parts, parts["ensemble"], context)
    np.testing.assert_array_equal(before[own], after[own])
    assert not np.array_equal(before[~own], after[~own])  # the others' models did learn from those cases


def test_candidates_go_first_and_the_rest_keep_the_ensembles_order():
    parts, truth, context = _world(3)
    reranker = CaseReranker(n_candidates=8, n_estimators=20).fit(parts, parts["ensemble"], truth, context)
    reranked = reranker.rerank(parts, parts["ensemble"], context)
    cand = candidates(parts["ensemble"], 8)
    for i in range(len(truth)):
        rest = np.setdiff1d(np.arange(N_DISEASES), cand[i])
        assert reranked[i, cand[i]].min() > reranked[i, rest].max()
        np.testing.assert_array_equal(np.argsort(reranked[i, rest]), np.argsort(parts["ensemble"][i, rest]))
    assert set(np.unique(cand[:, 0])) <= set(range(N_DISEASES))


def test_too_few_cases_to_learn_from_is_an_error():
    parts, truth, context = _world(4, n_cases=30, n_pubs=5)
    with pytest.raises(TooFewCases, match="needs at least 50"):
        CaseReranker(n_candidates=10).fit(parts, parts["ensemble"], truth, context)
