"""Scores of the annotator on annotated corpora, cross-validated by document (what `make text-eval` reports).

Every document is annotated by an annotator whose learned parts never saw it: the documents of all corpora are
pooled and cut into folds by document (stratified by corpus); the parts learned for a fold come from the other
folds. Dictionary-only configurations learn nothing and need no folds. The official scorer
(`../shared/tools/text_eval.py GOLD PRED --obo HP_OBO`, document-level micro P/R/F1 of observed ids) scores the
prediction files; an in-process copy of its rule gives the error analysis.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from dxlab.text.annotate import Annotator, Mention, patient_fields
from dxlab.text.context import FAMILY, NEGATED, PRESENT, UNCERTAIN


def read_corpus(path: str | Path) -> list[dict]:
    with open(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def document_folds(corpora: dict[str, list[dict]], n_folds: int, seed: int) -> dict[str, np.ndarray]:
    """A fold number per document, stratified by corpus (each corpus spread evenly over the folds)."""
    rng = np.random.default_rng(seed)
    out, offset = {}, 0
    for name, docs in corpora.items():
        order = rng.permutation(len(docs))
        folds = np.empty(len(docs), dtype=int)
        folds[order] = (np.arange(len(docs)) + offset) % n_folds
        offset += len(docs)
        out[name] = folds
    return out


def cross_validated_mentions(base: Annotator, corpora: dict[str, list[dict]], n_folds: int = 10,
                             seed: int = 0) -> dict[str, list[list[Mention]]]:
    """Mentions for every document of every corpus, each from an annotator that never learned from it.

    base: an Annotator already fitted on the knowledge tables (its dictionary is shared by every fold).
    """
    if not base.learn:
        return {name: [base.annotate(d["text"]) for d in docs] for name, docs in corpora.items()}
    folds = document_folds(corpora, n_folds, seed)
    out = {name: [None] * len(docs) for name, docs in corpora.items()}
    from dxlab.text.learn import fit_learned

    for k in range(n_folds):
        train = [d for name, docs in corpora.items() for d, f in zip(docs, folds[name]) if f != k]
        fold = copy.copy(base)
        fit_learned(fold, train)
        for name, docs in corpora.items():
            for i in np.flatnonzero(folds[name] == k):
                out[name][i] = fold.annotate(docs[i]["text"])
    return out


def prediction_lines(docs: Sequence[dict], mentions: Sequence[Sequence[Mention]]) -> list[dict]:
    """What `dxlab annotate` writes for each document."""
    lines = []
    for doc, ms in zip(docs, mentions):
        fields = patient_fields(ms)
        lines.append({"doc_id": doc["doc_id"], "findings": fields["findings"], "excluded": fields["excluded"],
                      "uncertain": fields["uncertain"], "family": fields["family"],
                      "mentions": [m.as_dict() for m in ms]})
    return lines


def official_score(scorer: str | Path, gold: str | Path, pred: str | Path, obo: str | Path) -> dict:
    """Run the shared scorer (a separate process, exactly as an independent check would)."""
    result = subprocess.run([sys.executable, str(scorer), str(gold), str(pred), "--obo", str(obo)],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


# -- error analysis -------------------------------------------------------------------------------------------------
def error_kinds(docs: Sequence[dict], mentions: Sequence[Sequence[Mention]], annotator: Annotator) -> dict:
    """Counts of false negatives and false positives by kind (document level, ids mapped to primary ids).

    Missed gold ids: `negation` (found, but asserted negated, uncertain or family), `too general` (an ancestor was
    reported instead), `too specific` (a descendant was), `wrong term` (another term on the same words), `missed`.
    False positives: `too general`, `too specific`, `wrong term`, `spurious` (words no annotator marked).
    """
    norm = annotator.normalise_id
    anc = annotator.ancestors_
    missed, false = Counter(), Counter()
    for doc, ms in zip(docs, mentions):
        gold = {norm(m["hpo_id"]) for m in doc["mentions"] if not m.get("negated")}
        negated_gold = {norm(m["hpo_id"]) for m in doc["mentions"] if m.get("negated")} - gold
        found = {norm(m.hpo_id) for m in ms if m.assertion == PRESENT}
        other = {norm(m.hpo_id) for m in ms if m.assertion != PRESENT}
        spans = [(m.start, m.end, m.hpo_id) for m in ms if m.assertion == PRESENT]
        gold_spans = [(g["start"], g["end"], norm(g["hpo_id"])) for g in doc["mentions"]]
        for g in gold - found:
            if g in other:
                missed["negation"] += 1
            elif any(f in anc.get(g, ()) for f in found):
                missed["too general"] += 1
            elif any(g in anc.get(f, ()) for f in found):
                missed["too specific"] += 1
            elif any(s < e2 and s2 < e for s, e, t in gold_spans if t == g for s2, e2, _ in spans):
                missed["wrong term"] += 1
            else:
                missed["missed"] += 1
        for f in found - gold - negated_gold:
            if any(f in anc.get(g, ()) for g in gold):
                false["too general"] += 1
            elif any(g in anc.get(f, ()) for g in gold):
                false["too specific"] += 1
            elif any(s < e2 and s2 < e for s, e, t in spans if t == f for s2, e2, _ in gold_spans):
                false["wrong term"] += 1
            else:
                false["spurious"] += 1
    return {"missed": dict(missed), "false": dict(false)}


def assertion_counts(mentions: Sequence[Sequence[Mention]]) -> dict:
    counts = Counter(m.assertion for ms in mentions for m in ms)
    return {k: counts.get(k, 0) for k in (PRESENT, NEGATED, UNCERTAIN, FAMILY)}
