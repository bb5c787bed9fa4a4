"""Turn lists of finding codes into sparse patient x term matrices, propagating HPO terms up the ontology."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import sparse

from dxlab.knowledge.base import Knowledge


SMALL_BATCH = 32  # rows: below this a query block is multiplied dense (the API's one patient), above sparse


def rows_by_table(rows: sparse.spmatrix, table: sparse.csr_matrix) -> np.ndarray:
    """`rows @ table.T` as a dense float32 array: patients (sparse rows over terms) against a large CSR table
    (diseases or reference cases over the same terms). The product is taken as `table @ rows.T`, so the large
    table is never converted to another format, and with a dense right side for a few rows (a sparse-sparse
    product costs ~2 ms of bookkeeping for one patient; a sparse-dense one, ~0.3 ms)."""
    if rows.shape[0] <= SMALL_BATCH:
        right = rows.T.toarray().astype(table.dtype, copy=False)
        return np.ascontiguousarray((table @ right).T, dtype=np.float32)
    return np.asarray((table @ rows.T.tocsr()).T.todense(), dtype=np.float32)


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
