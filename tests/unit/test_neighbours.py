"""Nearest training rows: the fast scoring path (sorted reference rows, a dense right side, a per-disease maximum
by slices) gives exactly what the definition gives, computed the slow way on dense arrays."""

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from dxlab.features.terms import TermEncoder, rows_by_table, table_by_rows
from dxlab.models.neighbours import NeighbourScores


def test_table_by_rows_is_the_dense_product_even_for_duplicate_entries():
    rng = np.random.default_rng(0)
    table = sparse.random(40, 300, density=0.05, format="csr", dtype=np.float32, random_state=1)
    # 600 patients (more than one dense block); every entry stored twice (a non-canonical matrix sums them)
    rows_, cols = rng.integers(0, 600, 2000), rng.integers(0, 300, 2000)
    values = rng.random(2000).astype(np.float32)
    patients = sparse.coo_matrix((values, (rows_, cols)), shape=(600, 300)).toarray()
    order = np.argsort(np.r_[rows_, rows_], kind="stable")
    duplicated = sparse.csr_matrix((np.r_[values, values][order], np.r_[cols, cols][order],
                                    np.r_[0, np.cumsum(np.bincount(np.r_[rows_, rows_], minlength=600))]),
                                   shape=(600, 300))
    assert not duplicated.has_canonical_format
    expected = table.toarray() @ (2 * patients).T
    got = table_by_rows(table, duplicated)
    assert got.shape == (40, 600) and got.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rows_by_table(duplicated, table), expected.T, rtol=1e-5, atol=1e-6)


def brute_force(model: NeighbourScores, X: pd.DataFrame, groups, top_n: int) -> np.ndarray:
    """The definition on dense arrays: cosine to every training row, leave-group-out, mean of each disease's top_n."""
    query = model.embed(X).toarray()
    reference = model.reference_.toarray()
    sim = query @ reference.T
    if groups is not None:
        sim[np.asarray(groups, dtype=object)[:, None] == model.groups_[None, :]] = 0.0
    out = np.zeros((len(X), model.n_classes_), dtype=np.float32)
    for d in np.unique(model.label_):
        block = np.sort(sim[:, model.label_ == d], axis=1)[:, -top_n:]
        out[:, d] = block.mean(axis=1)
    return out


@pytest.mark.parametrize("top_n", [1, 2])
def test_scores_equal_the_definition(knowledge, top_n):
    rng = np.random.default_rng(top_n)
    encoder = TermEncoder(knowledge)
    terms = list(encoder.term_ids[rng.choice(encoder.n_terms, 400, replace=False)])

    def patients(n):
        return pd.DataFrame({"findings": [list(rng.choice(terms, rng.integers(1, 6), replace=False))
                                          for _ in range(n)],
                             "excluded": [list(rng.choice(terms, rng.integers(0, 3), replace=False))
                                          for _ in range(n)]})

    train = patients(120)
    # diseases with one training row and with many, unsorted labels, some rows not training rows (-1)
    label = rng.choice([3, 7, 7, 11, 11, 11, 20, -1], len(train))
    groups = np.asarray([f"g{i % 30}" for i in range(len(train))], dtype=object)
    # batches of 20 and 10 patients: both ways of taking the per-disease maximum
    model = NeighbourScores(top_n=top_n, excluded_weight=0.5, batch=20).fit(encoder, 25, train, label, groups)
    test = patients(30)
    for g in (None, np.asarray([f"g{i % 40}" for i in range(len(test))], dtype=object)):
        got = model.scores(test, g)
        np.testing.assert_allclose(got, brute_force(model, test, g, top_n), rtol=1e-5, atol=1e-6)
        assert (got[:, [0, 1, 2, 24]] == 0).all()  # diseases without training rows
        assert (got[:, [3, 7, 11]] > 0).any()
