"""External validation: rank every known disease for real case reports and measure where the truth lands.

Rankers, each scoring a case against every disease it knows:
- knowledge: one-way Resnik best-match average against the HPO annotations (the Phenomizer idea);
- bayes: likelihood ratios from annotated frequencies (LIRICAL-like), when dxlab.models.bayes is present;
- cases: case-based nearest neighbours over reference case reports from OTHER publications (a query never
  sees a case of its own publication, so figures on the shared cases are leave-publication-out);
- ensemble: per-case standardised scores of the above, summed with fixed weights.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse

from dxlab.data.preprocess import normalise_terms
from dxlab.data.sources.phenopackets import PhenopacketsSource
from dxlab.external.ranking import rank_of_truth, ranking_metrics
from dxlab.features.knowledge_scores import KnowledgeScorer
from dxlab.features.terms import TermEncoder
from dxlab.knowledge.base import Knowledge

log = logging.getLogger(__name__)
# Chosen on the shared development cases (leave-publication-out), a coarse grid over the case-based weight
# only; the held-back cases are the independent check.
DEFAULT_WEIGHTS = {"knowledge": 1.0, "bayes": 1.0, "cases": 0.1}


@dataclass
class Cases:
    table: pd.DataFrame  # canonical rows (raw case ids: published case labels, not patient identifiers)
    groups: np.ndarray  # publication of each case (pmid), for leave-publication-out
    issues: list

    @property
    def truth(self) -> np.ndarray:
        return self.table["diagnosis"].astype(str).to_numpy()


def read_cases(path: str | Path, knowledge: Knowledge) -> Cases:
    """Cases from a JSONL like the shared cases.jsonl or a folder of GA4GH phenopackets, terms normalised."""
    source = PhenopacketsSource(str(path))
    tables, issues = [], []
    for file in source.files():
        result = source.read_file(file)
        tables.append(result.table)
        issues.extend(result.issues)
    if not tables:
        raise FileNotFoundError(f"no case files (.jsonl or .json) under {path}")
    table = normalise_terms(pd.concat(tables, ignore_index=True), knowledge.normalise_term)
    pmids = _pmids(Path(path))
    groups = np.asarray([pmids.get(cid) or f"{f}" for cid, f in zip(table["patient_id"], table["source_file"])])
    return Cases(table.reset_index(drop=True), groups, issues)


def _pmids(path: Path) -> dict[str, str]:
    """case_id -> pmid from JSONL files (the phenopacket adapter keeps only canonical fields)."""
    files = [path] if path.is_file() else sorted(path.rglob("*.jsonl"))
    out = {}
    for file in files:
        if file.suffix != ".jsonl":
            continue
        for line in file.read_text().splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(rec, dict) and rec.get("case_id") and rec.get("pmid"):
                out[str(rec["case_id"])] = str(rec["pmid"])
    return out


class CaseBasedRanker:
    """Scores a disease by the most similar reference case with that diagnosis (IC-weighted cosine of the
    ontology-closed finding sets), never using a reference case from the query's own publication."""

    def __init__(self, knowledge: Knowledge, top_n: int = 2):
        self.encoder = TermEncoder(knowledge)
        self.top_n = top_n

    def fit(self, cases: Cases) -> "CaseBasedRanker":
        self.reference_ = self._embed(cases.table)
        self.groups_ = cases.groups
        self.classes_ = np.asarray(sorted(set(cases.truth)), dtype=object)
        index = {c: i for i, c in enumerate(self.classes_)}
        self.label_ = np.asarray([index[d] for d in cases.truth])
        return self

    def _embed(self, table: pd.DataFrame) -> sparse.csr_matrix:
        m = self.encoder.matrix(list(table["findings"]), propagate=True).multiply(self.encoder.ic).tocsr()
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        return sparse.diags(1.0 / np.maximum(norms, 1e-9)) @ m

    def decision_function(self, table: pd.DataFrame, groups: Sequence[str], batch: int = 512) -> np.ndarray:
        query = self._embed(table)
        groups = np.asarray(groups)
        out = np.zeros((len(table), len(self.classes_)), dtype=np.float32)
        for start in range(0, len(table), batch):
            sim = np.asarray((query[start:start + batch] @ self.reference_.T).todense(), dtype=np.float32)
            same = groups[start:start + batch, None] == self.groups_[None, :]
            sim[same] = 0.0  # leave-publication-out
            # disease score: mean of its top_n most similar cases (a single look-alike is weaker evidence)
            for j in range(len(self.classes_)):
                cols = np.flatnonzero(self.label_ == j)
                top = np.sort(sim[:, cols], axis=1)[:, -self.top_n:]
                out[start:start + batch, j] = top.mean(axis=1) if top.shape[1] else 0.0
        return out


def _standardise(scores: np.ndarray) -> np.ndarray:
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return (scores - mean) / np.maximum(std, 1e-9)


def align(scores: np.ndarray, classes: Sequence[str], universe: Sequence[str], fill: float) -> np.ndarray:
    """Scores over `classes` -> over `universe`; a disease the ranker does not know gets `fill`."""
    position = {c: i for i, c in enumerate(universe)}
    out = np.full((scores.shape[0], len(universe)), fill, dtype=np.float32)
    cols = [position[c] for c in classes]
    out[:, cols] = scores
    return out


def run_rankers(cases: Cases, knowledge: Knowledge, reference: Cases | None = None, databases=("OMIM",),
                weights: Mapping[str, float] | None = None, excluded_weight: float = 0.0) -> dict:
    """Scores of every ranker and of the ensemble over one disease universe, and their timings."""
    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    diseases = sorted(d for d in knowledge.diseases["disease_id"] if d.split(":")[0] in set(databases))
    timings, scored = {}, {}
    start = time.perf_counter()
    scorer = KnowledgeScorer(diseases=diseases, similarity="resnik", excluded_weight=excluded_weight)
    scorer.fit(cases.table.head(1), knowledge=knowledge)
    scored["knowledge"] = (scorer.transform(cases.table), scorer.diseases_)
    timings["knowledge"] = time.perf_counter() - start
    try:
        from dxlab.models.bayes import KnowledgeBayesClassifier
    except ImportError:
        KnowledgeBayesClassifier = None  # noqa: N806
    if KnowledgeBayesClassifier is not None and weights.get("bayes"):
        start = time.perf_counter()
        bayes = KnowledgeBayesClassifier(diseases=diseases)
        bayes.fit(cases.table.head(1), None, knowledge=knowledge) if _accepts_knowledge(bayes) else None
        if hasattr(bayes, "classes_"):
            scored["bayes"] = (bayes.decision_function(cases.table), bayes.classes_)
            timings["bayes"] = time.perf_counter() - start
    if reference is not None and weights.get("cases"):
        start = time.perf_counter()
        ranker = CaseBasedRanker(knowledge).fit(reference)
        scored["cases"] = (ranker.decision_function(cases.table, cases.groups), ranker.classes_)
        timings["cases"] = time.perf_counter() - start
    universe = sorted(set(diseases).union(*[set(c) for _, c in scored.values()]))
    out = {}
    total = np.zeros((len(cases.table), len(universe)), dtype=np.float32)
    for name, (scores, classes) in scored.items():
        z = _standardise(scores)
        aligned = align(z, [str(c) for c in classes], universe, fill=float(z.min()) - 1.0)
        out[name] = (aligned, universe)
        total += weights.get(name, 0.0) * aligned
    out["ensemble"] = (total, universe)
    # What each ranker can know: annotated diseases; diseases with a reference case from another publication.
    truth = cases.truth
    annotated = np.isin(truth, diseases)
    seen_elsewhere = np.zeros(len(truth), dtype=bool)
    if reference is not None:
        by_disease: dict[str, set] = {}
        for d, g in zip(reference.truth, reference.groups):
            by_disease.setdefault(d, set()).add(g)
        seen_elsewhere = np.array([bool(by_disease.get(d, set()) - {g}) for d, g in zip(truth, cases.groups)])
    known = {"knowledge": annotated, "bayes": annotated, "cases": seen_elsewhere,
             "ensemble": annotated | (seen_elsewhere if "cases" in scored else False)}
    return {"scores": out, "timings": timings, "universe": universe, "known": known}


def _accepts_knowledge(estimator) -> bool:
    import inspect

    return "knowledge" in inspect.signature(estimator.fit).parameters


def evaluate(cases: Cases, results: dict, top: int = 10) -> tuple[dict, pd.DataFrame]:
    """Metrics per ranker and the per-case table of the ensemble (rank of the truth, its top 10)."""
    truth = cases.truth
    metrics, ensemble_ranks = {}, None
    for name, (scores, universe) in results["scores"].items():
        covered = results["known"][name]
        ranks = np.where(covered, rank_of_truth(scores, universe, truth), np.inf)
        metrics[name] = ranking_metrics(ranks, covered)
        if name == "ensemble":
            ensemble_ranks = ranks
    scores, universe = results["scores"]["ensemble"]
    order = np.argsort(-scores, axis=1, kind="stable")[:, :top]
    universe = np.asarray(universe)
    table = pd.DataFrame({
        "case_id": cases.table["patient_id"].to_numpy(),
        "true_disease": truth,
        "rank": ensemble_ranks,
        "n_findings": cases.table["findings"].map(len).to_numpy(),
        "top10": [";".join(f"{universe[j]}:{scores[i, j]:.2f}" for j in order[i]) for i in range(len(truth))],
    })
    return metrics, table


def evaluate_external(cases_path: str | Path, out_dir: str | Path, knowledge_dir: str | Path,
                      reference_path: str | Path | None = None, databases=("OMIM",),
                      weights: Mapping[str, float] | None = None) -> dict:
    """Read cases, rank every known disease, write DIR/metrics.json and DIR/ranks.csv; return the metrics."""
    knowledge = Knowledge.load(knowledge_dir)
    cases = read_cases(cases_path, knowledge)
    reference = read_cases(reference_path, knowledge) if reference_path and Path(reference_path).exists() else None
    start = time.perf_counter()
    results = run_rankers(cases, knowledge, reference, databases, weights)
    metrics, table = evaluate(cases, results)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = {**metrics["ensemble"], "by_ranker": metrics, "seconds": time.perf_counter() - start,
               "timings": results["timings"], "n_parse_issues": len(cases.issues),
               "reference_cases": int(len(reference.table)) if reference is not None else 0,
               "universe_size": len(results["universe"])}
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    table.to_csv(out_dir / "ranks.csv", index=False)
    return summary
