"""Turn lists of finding codes into sparse patient x term matrices, propagating HPO terms up the ontology."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import sparse

from dxlab.knowledge.base import Knowledge


DENSE_ROWS = 256  # patients per sparse-dense product (the dense right side: terms x 256 float32, ~40 MB at most)


def table_by_rows(table: sparse.csr_matrix, rows: sparse.spmatrix) -> np.ndarray:
    """`table @ rows.T` as a dense float32 array (table rows x patients): a large CSR table (diseases or reference
    cases over terms) against patients' sparse rows over the same terms. The patients are made dense, DENSE_ROWS at
    a time, and the table is never converted to another format: for one patient a sparse-sparse product costs
    ~2 ms of bookkeeping against ~0.3 ms; for 256 reference-case similarities, 80 ms against 57 ms (measured on
    the champion's 8,982 reference cases)."""
    out = np.empty((table.shape[0], rows.shape[0]), dtype=np.float32)
    right_t = rows.tocsr()
    for start in range(0, rows.shape[0], DENSE_ROWS):
        right = right_t[start:start + DENSE_ROWS].T.toarray().astype(table.dtype, copy=False)
        out[:, start:start + DENSE_ROWS] = table @ right
    return out


def rows_by_table(rows: sparse.spmatrix, table: sparse.csr_matrix) -> np.ndarray:
    """`rows @ table.T` as a dense float32 array (patients x table rows): `table_by_rows`, transposed."""
    return np.ascontiguousarray(table_by_rows(table, rows).T)


class TermEncoder:
    """A picklable snapshot of what encoding needs: term index, alias map, ancestor matrix, IC.

    With an ontology (HPO), findings are normalised (alt/obsolete ids) and propagated to their ancestors.
    Without one (e.g. DDXPlus evidence codes), the vocabulary is the codes seen when fitting.
    """

    def __init__(self, knowledge: Knowledge | None = None, codes: Iterable[str] = ()):
        if knowledge is not None:
            self.ontology = True
            self.term_ids = np.asarray(knowledge.term_ids)
            self.index = dict(knowledge.term_index)
            self.aliases = {a: t for a, t in knowledge.alias_map.items() if t in self.index}
            self.ancestors = knowledge.ancestor_matrix.tocsr()
            self.ic = knowledge.ic_vector.astype(np.float32)
        else:
            self.ontology = False
            self.term_ids = np.asarray(sorted(set(codes)), dtype=object)
            self.index = {t: i for i, t in enumerate(self.term_ids)}
            self.aliases = {}
            self.ancestors = None
            self.ic = np.ones(len(self.term_ids), dtype=np.float32)

    @property
    def n_terms(self) -> int:
        return len(self.term_ids)

    def normalise(self, term: str) -> str | None:
        if term in self.index:
            return term
        return self.aliases.get(term)

    def matrix(self, patients: Sequence[Iterable[str]], propagate: bool = True) -> sparse.csr_matrix:
        index, aliases = self.index, self.aliases
        indptr, indices = [0], []
        for terms in patients:  # CSR built directly: sorted unique columns per row (no COO round trip)
            cols = set()
            for term in terms:
                j = index.get(term)
                if j is None and (alias := aliases.get(term)) is not None:
                    j = index[alias]
                if j is not None:
                    cols.add(j)
            indices.extend(sorted(cols))
            indptr.append(len(indices))
        out = sparse.csr_matrix((np.ones(len(indices), dtype=np.float32), np.asarray(indices, dtype=np.int32),
                                 np.asarray(indptr, dtype=np.int64 if len(indices) >= 2**31 else np.int32)),
                                shape=(len(patients), self.n_terms))
        if propagate and self.ancestors is not None:
            out = (out @ self.ancestors).tocsr()
            out.sum_duplicates()
            out.data[:] = 1.0
        return out
