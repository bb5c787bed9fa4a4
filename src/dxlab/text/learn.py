"""Parts of the annotator learned from annotated documents (the shared corpora), never from the documents scored.

1. Learned names. Each annotated mention's words, keyed like a dictionary name, with the term it was annotated
   as (alt ids mapped to the pinned release). A name is kept when it was annotated in at least
   `min_learned_count` documents and, of the documents whose text contains it, in at least
   `min_learned_precision` of them. Where the dictionary reads the same words as another term, the learned term
   replaces it only when annotators chose it in three documents and never the dictionary's term ("severe
   mental retardation": Profound in GSC+).
2. The filter. A gradient-boosted classifier over document-level candidates (one row per term a document
   mentions), features from how the term was matched (exact, root, modifiers dropped, list, abbreviation; label,
   synonym, variant or learned name; nested), how often, where it sits in the ontology (depth, IC, branch, an
   ancestor or descendant of another candidate), and how often annotators marked its words and the term itself
   in other documents. It predicts whether an annotator would list the term for the document; candidates below
   the threshold are dropped. It is trained on out-of-fold candidates (inner folds by document), so the learned
   names it sees were never learned from the document a row comes from; the threshold maximises F1 on
   out-of-fold probabilities.
"""

from __future__ import annotations

import copy
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from dxlab.text.annotate import _segments
from dxlab.text.context import PRESENT
from dxlab.text.lexicon import LEARNED, STOPWORDS, Lexicon, name_keys
from dxlab.text.normalise import Token

LEVELS = 6  # exact, root, modifiers dropped, coordination, abbreviation, normal statement
N_SOURCES = 4
BRANCH_ROOTS = ("HP:0000118", "HP:0000005", "HP:0031797", "HP:0003812")
N_FEATURES = 2 + LEVELS + N_SOURCES + 2 + 2 + 2 + len(BRANCH_ROOTS) + 2 + 4 + 2 + 2 + 1
_DISEASE_WORDS = frozenset({"syndrome", "disease", "complex", "sequence", "association", "gene", "locus"})


@dataclass
class Prepared:
    text: str
    tokens: list[Token]
    gold: set[str]  # observed and negated ids (the filter asks whether a term is annotated, not its assertion)
    observed: set[str]
    names: list[tuple[tuple[str, ...], str]]  # (exact key, id) of each mention


def prepare(annotator, documents: Sequence[dict]) -> list[Prepared]:
    out = []
    for doc in documents:
        names, gold, observed = [], set(), set()
        for m in doc.get("mentions", []):
            hpo_id = annotator.normalise_id(m["hpo_id"])
            gold.add(hpo_id)
            if not m.get("negated"):
                observed.add(hpo_id)
            key = name_keys(m.get("text") or doc["text"][m["start"]:m["end"]])[0]
            if key and hpo_id in annotator.terms_:
                names.append((key, hpo_id))
        out.append(Prepared(doc["text"], annotator.tokens(doc["text"]), gold, observed, names))
    return out


# -- learned names --------------------------------------------------------------------------------------------------
@dataclass
class NameStats:
    annotated: dict  # key -> Counter(id -> documents annotating it so)
    seen: Counter  # key -> documents whose text contains the words
    id_candidate: Counter  # id -> documents where the annotator proposed it
    id_gold: Counter  # id -> of those, documents where annotators marked it


def _windows(text: str, tokens: list[Token], keys: set, max_words: int) -> set:
    """The keys among `keys` that occur as a run of content words within a clause of the text."""
    found = set()
    for segment in _segments(text, tokens):
        content = [t.exact for t in segment if t.exact not in STOPWORDS]
        for i in range(len(content)):
            for j in range(i, min(len(content), i + max_words)):
                key = tuple(sorted(content[i:j + 1]))
                if key in keys:
                    found.add(key)
    return found


def name_stats(annotator, docs: list[Prepared]) -> NameStats:
    annotated: dict = defaultdict(Counter)
    for doc in docs:
        for key, hpo_id in set(doc.names):
            annotated[key][hpo_id] += 1
    keys = set(annotated)
    max_words = max((len(k) for k in keys), default=1)
    seen: Counter = Counter()
    for doc in docs:
        found = _windows(doc.text, doc.tokens, keys, max_words)
        # an annotated name counts as present in its own text even when its span was discontinuous
        seen.update(found | {k for k, _ in doc.names})
    return NameStats(dict(annotated), seen, Counter(), Counter())


def set_learned(annotator, stats: NameStats) -> None:
    """Install the learned names of `stats` on the annotator (replacing any learned before)."""
    learned = Lexicon()
    overrides = set()
    for key, ids in stats.annotated.items():
        ranked = sorted(ids.items(), key=lambda kv: (-kv[1], kv[0]))
        hpo_id, count = ranked[0]
        for other, n in ranked:
            if n >= annotator.min_learned_count and n / max(stats.seen[key], n) >= annotator.min_learned_precision:
                learned.add(other, " ".join(key), LEARNED)
        precision = count / max(stats.seen[key], count)
        if count < annotator.min_learned_count or precision < annotator.min_learned_precision:
            continue
        dictionary = annotator.lexicon_.exact.get(key)
        if dictionary and all(e.hpo_id != hpo_id for e in dictionary):
            rival = max(ids.get(e.hpo_id, 0) for e in dictionary)
            if count >= 2 * max(rival, 1):
                overrides.add(key)
    annotator.learned_ = learned
    annotator.overrides_ = frozenset(overrides)
    annotator.name_stats_ = stats


# -- the filter -----------------------------------------------------------------------------------------------------
def candidate_rows(annotator, text: str, tokens: list[Token], candidates, mentions) -> tuple[list[str], np.ndarray]:
    """One feature row per term the candidates propose: (ids, matrix)."""
    stats: NameStats = annotator.name_stats_
    by_id: dict[str, list] = defaultdict(list)
    for c in candidates:
        by_id[c.hpo_id].append(c)
    present = Counter(m.hpo_id for m in mentions if m.assertion == PRESENT)
    ids = sorted(by_id)
    idset = set(ids)
    rows = []
    n_chars = max(len(text), 1)
    for hpo_id in ids:
        cands = by_id[hpo_id]
        anc = annotator.ancestors_.get(hpo_id, frozenset())
        level = np.zeros(LEVELS)
        for c in cands:
            level[c.level] = 1
        source = np.zeros(N_SOURCES)
        for c in cands:
            source[min(c.rank, N_SOURCES - 1)] = 1
        key_prec, key_seen, pair_prec = [], [], []
        for c in cands:
            key = tuple(sorted(t.exact for t in tokens[c.first:c.last] if t.exact not in STOPWORDS))
            seen = stats.seen.get(key, 0)
            ids_of_key = stats.annotated.get(key, {})
            key_seen.append(seen)
            key_prec.append((sum(ids_of_key.values()) + 0.5) / (seen + 1.0) if seen else -1.0)
            pair_prec.append((ids_of_key.get(hpo_id, 0) + 0.5) / (seen + 1.0) if seen else -1.0)
        has_descendant = any(hpo_id in annotator.ancestors_.get(o, ()) for o in idset if o != hpo_id)
        has_ancestor = any(o in anc for o in idset if o != hpo_id)
        id_cand, id_gold = stats.id_candidate.get(hpo_id, 0), stats.id_gold.get(hpo_id, 0)
        rows.append([
            np.log1p(len(cands)), present.get(hpo_id, 0) / len(cands), *level, *source,
            float(all(c.nested for c in cands)), float(any(c.nested for c in cands)),
            max(c.n_words for c in cands), min(c.first for c in cands) / max(len(tokens), 1),
            annotator.depth_.get(hpo_id, 0), annotator.ic_.get(hpo_id, 0.0),
            *[float(r in anc) for r in BRANCH_ROOTS], float(has_descendant), float(has_ancestor),
            max(key_prec), np.log1p(max(key_seen)), np.log1p(id_cand), (id_gold + 0.5) / (id_cand + 1.0),
            max(pair_prec), float(all(c.alternative for c in cands)),
            np.log(n_chars), np.log1p(len(ids)),
            # a disease's name ("Duane syndrome", "basal cell nevus syndrome") mentions a finding without asserting it
            float(np.mean([c.last < len(tokens) and tokens[c.last].exact in _DISEASE_WORDS for c in cands])),
        ])
    return ids, np.asarray(rows, dtype=float).reshape(len(ids), N_FEATURES)


def _id_stats(annotator, docs: list[Prepared], stats: NameStats) -> None:
    """How often each term the annotator proposes is annotated (on the documents the names were learned from)."""
    cand, gold = Counter(), Counter()
    for doc in docs:
        ids = {c.hpo_id for c in annotator._candidates(doc.text, doc.tokens)}
        cand.update(ids)
        gold.update(ids & doc.gold)
    stats.id_candidate, stats.id_gold = cand, gold


def _learn_all(annotator, docs: list[Prepared]) -> None:
    stats = name_stats(annotator, docs)
    set_learned(annotator, stats)
    _id_stats(annotator, docs, stats)


def fit_learned(annotator, documents: Sequence[dict], inner_folds: int = 5) -> None:
    """Learned names and filter from annotated documents (see the module docstring)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    docs = prepare(annotator, documents)
    rng = np.random.default_rng(annotator.seed)
    folds = rng.permutation(len(docs)) % inner_folds
    X, y, doc_of, present_of = [], [], [], []
    n_observed = 0
    annotator.alternatives_ = True
    work = copy.copy(annotator)
    work.filter_ = None
    if len(docs) >= 2 * inner_folds:
        for k in range(inner_folds):
            _learn_all(work, [d for d, f in zip(docs, folds) if f != k])
            for i in np.flatnonzero(folds == k):
                doc = docs[i]
                cands = work._candidates(doc.text, doc.tokens)
                mentions = work._assert(doc.text, doc.tokens, cands)
                ids, rows = candidate_rows(work, doc.text, doc.tokens, cands, mentions)
                present = {m.hpo_id for m in mentions if m.assertion == PRESENT}
                X.append(rows)
                y.extend(t in doc.gold for t in ids)
                present_of.extend((t in present) and (t in doc.observed) for t in ids)
                doc_of.extend([i] * len(ids))
                n_observed += len(doc.observed)
    _learn_all(annotator, docs)
    if not X:
        return
    X = np.vstack(X)
    y = np.asarray(y, dtype=int)
    model = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, max_leaf_nodes=15,
                                           min_samples_leaf=20, l2_regularization=1.0, random_state=annotator.seed)
    # out-of-fold probabilities (folds by document) choose the threshold
    proba = np.zeros(len(y))
    doc_of = np.asarray(doc_of)
    for k in range(inner_folds):
        test = folds[doc_of] == k
        if test.all() or not test.any() or len(set(y[~test])) < 2:
            continue
        proba[test] = clone_fit(model, X[~test], y[~test]).predict_proba(X[test])[:, 1]
    annotator.threshold_ = best_threshold(proba, np.asarray(present_of), y, X[:, 1] > 0, n_observed,
                                          annotator.threshold)
    annotator.filter_ = Trees(model.fit(X, y))


class Trees:
    """A fitted HistGradientBoostingClassifier as plain numpy arrays: annotation needs neither scikit-learn nor its
    memory (about 90 MB) once the filter is trained. All trees are walked together, one level per step;
    predict_proba matches the original to float precision."""

    def __init__(self, model):
        self.baseline = float(np.ravel(model._baseline_prediction)[0])
        nodes = [predictor.nodes for (predictor,) in model._predictors]
        offsets = np.cumsum([0] + [len(n) for n in nodes[:-1]])
        self.roots = offsets.astype(np.int64)
        flat = np.concatenate(nodes)
        shift = np.repeat(offsets, [len(n) for n in nodes])
        self.feature = flat["feature_idx"].astype(np.int64)
        self.threshold = flat["num_threshold"].astype(np.float64)
        self.left = flat["left"].astype(np.int64) + shift
        self.right = flat["right"].astype(np.int64) + shift
        self.leaf = flat["is_leaf"].astype(bool)
        self.value = flat["value"].astype(np.float64)
        self.missing_left = flat["missing_go_to_left"].astype(bool)
        # a leaf points at itself, so walking on past it changes nothing
        self.left[self.leaf] = np.flatnonzero(self.leaf)
        self.right[self.leaf] = np.flatnonzero(self.leaf)
        self.depth = int(max(n["depth"].max() for n in nodes)) if nodes else 0

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        node = np.broadcast_to(self.roots, (len(X), len(self.roots))).copy()
        rows = np.arange(len(X))[:, None]
        for _ in range(self.depth):
            x = X[rows, self.feature[node]]
            go_left = np.where(np.isnan(x), self.missing_left[node], x <= self.threshold[node])
            node = np.where(go_left, self.left[node], self.right[node])
        p = 1.0 / (1.0 + np.exp(-(self.baseline + self.value[node].sum(axis=1))))
        return np.column_stack([1 - p, p])


def clone_fit(model, X, y):
    from sklearn.base import clone

    return clone(model).fit(X, y)


def best_threshold(proba, correct_present, y, is_present, n_observed, default: float) -> float:
    """The probability cut maximising micro F1 of the present findings over the out-of-fold rows."""
    best, best_f1 = default, -1.0
    for cut in np.linspace(0.1, 0.9, 33):
        keep = (proba >= cut) & is_present
        tp = float(np.sum(keep & correct_present))
        fp = float(np.sum(keep)) - tp
        f1 = 2 * tp / (2 * tp + fp + (n_observed - tp)) if n_observed else 0.0
        if f1 > best_f1 + 1e-9:
            best, best_f1 = float(cut), f1
    return best


def apply_filter(annotator, text, tokens, candidates, mentions):
    ids, rows = candidate_rows(annotator, text, tokens, candidates, mentions)
    if not ids:
        return mentions
    proba = dict(zip(ids, annotator.filter_.predict_proba(rows)[:, 1]))
    cut = getattr(annotator, "threshold_", annotator.threshold)
    out = []
    for m in mentions:
        p = float(proba.get(m.hpo_id, 1.0))
        if p >= cut:
            out.append(_with_score(m, p))
    return out


def _with_score(mention, score: float):
    from dataclasses import replace

    return replace(mention, score=round(score, 4))


__all__ = ["fit_learned", "apply_filter", "prepare", "name_stats", "set_learned", "Trees"]
