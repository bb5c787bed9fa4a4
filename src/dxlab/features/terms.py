"""Turn lists of finding codes into sparse patient x term matrices, propagating HPO terms up the ontology."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from scipy import sparse

from dxlab.knowledge.base import Knowledge


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
        rows, cols = [], []
        for i, terms in enumerate(patients):
            for term in terms:
                j = self.index.get(term)
                if j is None and (alias := self.aliases.get(term)) is not None:
                    j = self.index[alias]
                if j is not None:
                    rows.append(i)
                    cols.append(j)
        out = sparse.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, cols)),
                                shape=(len(patients), self.n_terms))
        if propagate and self.ancestors is not None:
            out = (out @ self.ancestors).tocsr()
        out.sum_duplicates()
        out.data[:] = 1.0
        return out
