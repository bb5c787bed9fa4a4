"""Autocomplete over HPO labels and synonyms (`GET /v1/terms?q=...`): an in-memory index built once at start.

A clinician types a few letters of any word of a finding ("aort roo" finds "Aortic root aneurysm", "spider"
finds Arachnodactyly through its synonym "Spider fingers"). Every word of the query must be the prefix of a word
of one label (the name or one synonym) of the term. Ranking: the name equal to the query, then names starting
with it, then names matched on a later word, then synonyms; within each tier the more informative term (higher
information content, the rarer finding across diseases) first -- it narrows the differential more. Typing the
whole common word still puts the common term first ("seizure" -> Seizure), through the first two tiers.

Why an index rather than a scan: about 17,000 phenotype terms carry about 60,000 labels; a Python scan of them
costs tens of milliseconds per keystroke. Here the words of every label are sorted once; a query word is a
contiguous range of that list (two bisections), whose labels are a contiguous slice of one postings array, so
each keystroke is a few numpy operations over the matching labels only (well under a millisecond for most
prefixes, a few for one letter).
"""

from __future__ import annotations

import re
from bisect import bisect_left, bisect_right
from pathlib import Path

import numpy as np
import pandas as pd

PHENOTYPIC_ABNORMALITY = "HP:0000118"
_WORD = re.compile(r"[0-9a-z]+")
_HPO_ID = re.compile(r"^(?:hp:?)?(\d{7})$")


def words(text: str) -> list[str]:
    """Lower-case alphanumeric words: what a query and a label are compared on (punctuation ignored)."""
    return _WORD.findall(str(text).lower())


class TermIndex:
    """Labels (names and synonyms) of HPO terms and a prefix index over their words (module docstring)."""

    def __init__(self, terms: pd.DataFrame):
        labels = self._labels(terms)
        self.term_ids = terms["id"].to_numpy(dtype=object)
        self.names = terms["name"].fillna("").astype(str).to_numpy(dtype=object)
        self.ic = terms["ic"].fillna(0.0).to_numpy(dtype=float) if "ic" in terms else np.zeros(len(terms))
        self.phenotype = self._phenotype_mask(terms)
        self.position = {t: i for i, t in enumerate(self.term_ids)}
        self.label_term = labels["term"].to_numpy(dtype=np.int64)
        self.label_text = labels["text"].to_numpy(dtype=object)
        self.label_lower = np.asarray([t.lower() for t in self.label_text], dtype=object)
        self.is_name = labels["is_name"].to_numpy(dtype=bool)
        self._build_postings()

    @classmethod
    def from_dir(cls, knowledge_dir: str | Path) -> "TermIndex":
        """From the knowledge stage's terms table (data/knowledge/terms.parquet)."""
        columns = ["id", "name", "synonyms", "ic", "ancestors"]
        return cls(pd.read_parquet(Path(knowledge_dir) / "terms.parquet", columns=columns))

    # -- building ----------------------------------------------------------------------------------------------
    @staticmethod
    def _labels(terms: pd.DataFrame) -> pd.DataFrame:
        """One row per (term, label): the name first, then each distinct synonym."""
        rows = []
        for i, (name, synonyms) in enumerate(zip(terms["name"], terms.get("synonyms", [()] * len(terms)))):
            seen = {str(name).lower()}
            rows.append((i, str(name), True))
            for synonym in (synonyms if synonyms is not None else ()):
                if str(synonym).lower() not in seen:
                    seen.add(str(synonym).lower())
                    rows.append((i, str(synonym), False))
        return pd.DataFrame(rows, columns=["term", "text", "is_name"])

    @staticmethod
    def _phenotype_mask(terms: pd.DataFrame) -> np.ndarray:
        """Strict descendants of Phenotypic abnormality: the findings (not modes of inheritance, onsets...)."""
        if "ancestors" not in terms:
            return np.ones(len(terms), dtype=bool)
        return np.asarray([PHENOTYPIC_ABNORMALITY in set(a) and t != PHENOTYPIC_ABNORMALITY
                           for t, a in zip(terms["id"], terms["ancestors"])], dtype=bool)

    def _build_postings(self) -> None:
        """Sorted distinct words, and for word k the labels containing it: postings[starts[k]:starts[k + 1]]."""
        pairs = sorted({(w, j) for j, text in enumerate(self.label_text) for w in words(text)})
        vocabulary = sorted({w for w, _ in pairs})
        rank = {w: k for k, w in enumerate(vocabulary)}
        word_of = np.asarray([rank[w] for w, _ in pairs], dtype=np.int64)
        self.vocabulary = vocabulary
        self.postings = np.asarray([j for _, j in pairs], dtype=np.int64)
        self.starts = np.searchsorted(word_of, np.arange(len(vocabulary) + 1))
        names = np.flatnonzero(self.is_name)
        order = sorted(names, key=lambda j: self.label_lower[j])
        self.sorted_names = [self.label_lower[j] for j in order]
        self.sorted_name_labels = np.asarray(order, dtype=np.int64)

    # -- querying ----------------------------------------------------------------------------------------------
    def _labels_with_prefix(self, prefix: str) -> np.ndarray:
        """Labels with a word starting with `prefix` (sorted, distinct)."""
        lo = bisect_left(self.vocabulary, prefix)
        hi = bisect_left(self.vocabulary, prefix + "\uffff")
        return np.unique(self.postings[self.starts[lo]:self.starts[hi]])

    def _matching_labels(self, query_words: list[str]) -> np.ndarray:
        found = None
        for word in sorted(set(query_words), key=len, reverse=True):  # the longest word is the most selective
            hits = self._labels_with_prefix(word)
            found = hits if found is None else np.intersect1d(found, hits, assume_unique=True)
            if not len(found):
                break
        return found if found is not None else np.empty(0, dtype=np.int64)

    def _tier(self, labels: np.ndarray, query: str) -> np.ndarray:
        """0: the name is the query; 1: the name starts with it; 2: another word of the name; 3: a synonym. The
        names starting with the query are one range of the sorted names (two bisections, no loop over labels)."""
        lo = bisect_left(self.sorted_names, query)
        exact = bisect_right(self.sorted_names, query)
        hi = bisect_left(self.sorted_names, query + "\uffff")
        tier = np.where(self.is_name[labels], 2, 3)
        tier[np.isin(labels, self.sorted_name_labels[exact:hi])] = 1
        tier[np.isin(labels, self.sorted_name_labels[lo:exact])] = 0
        return tier

    def search(self, query: str, limit: int = 10, phenotype_only: bool = True) -> list[dict]:
        """The best `limit` terms for a query (module docstring), each once, with the synonym that matched."""
        query = " ".join(str(query).lower().split())
        by_id = _HPO_ID.match(query.replace(" ", ""))
        if by_id:
            return self._by_id(f"HP:{by_id.group(1)}", phenotype_only)
        labels = self._matching_labels(words(query))
        if phenotype_only and len(labels):
            labels = labels[self.phenotype[self.label_term[labels]]]
        if not len(labels):
            return []
        tier = self._tier(labels, query)
        order = np.lexsort((-self.ic[self.label_term[labels]], tier))
        _, first = np.unique(self.label_term[labels[order]], return_index=True)  # each term at its best label
        best = labels[order[np.sort(first)][:limit]]
        return [self._entry(int(self.label_term[j]), None if self.is_name[j] else str(self.label_text[j]))
                for j in best]

    def _by_id(self, term: str, phenotype_only: bool) -> list[dict]:
        i = self.position.get(term)
        if i is None or (phenotype_only and not self.phenotype[i]):
            return []
        return [self._entry(i, None)]

    def _entry(self, i: int, synonym: str | None) -> dict:
        return {"hpo_id": str(self.term_ids[i]), "name": str(self.names[i]), "synonym": synonym,
                "ic": round(float(self.ic[i]), 3)}

    def name(self, term: str) -> str:
        i = self.position.get(term)
        return "" if i is None else str(self.names[i])
