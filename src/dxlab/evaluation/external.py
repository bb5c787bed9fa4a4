"""`dxlab evaluate-external`: a model (the champion by default) on any case file, with the side-by-side report.

    dxlab evaluate-external --cases FILE --out DIR [--model models:/dxlab@champion | PATH.joblib | NAME]

Reads a JSONL like the shared `cases.jsonl` or a folder of GA4GH phenopackets (`PhenopacketsSource`: a case's group
is its publication), reports every input problem by file, row and field (DIR/issues.csv, a warning naming the
first), quarantines rows that cannot be evaluated (malformed, no diagnosis: DIR/quarantine.csv), and scores the
rest with `dxlab.evaluation.cases`. A case whose publication is among the model's training cases is scored by what
never saw that publication (the diagnostic model leaves its group out), so the shared file keeps giving honest
figures with a model trained on it. Writes DIR/metrics.json, DIR/ranks.csv, DIR/external_validation.md,
DIR/model_card.md and DIR/figures/.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd

from dxlab.data.preprocess import normalise_terms
from dxlab.data.schema import ISSUE_COLUMNS
from dxlab.data.sources.phenopackets import PhenopacketsSource
from dxlab.evaluation.case_report import write_case_outputs, write_report
from dxlab.evaluation.cases import case_metrics, case_table
from dxlab.evaluation.ranking import ranking_metrics

log = logging.getLogger(__name__)
FATAL_FIELDS = ("row", "diagnosis")


def read_cases(path: str | Path, normalise=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(canonical rows, issues) of a case file or folder; term ids normalised with `normalise` when given."""
    source = PhenopacketsSource(str(path), name="cases")
    tables, issues = [], []
    for file in source.files():
        result = source.read_file(file)
        for issue in result.issues:
            issue.source = source.name
        tables.append(result.table)
        issues.extend(result.issues)
    if not tables:
        raise FileNotFoundError(f"no case files (.jsonl or .json) under {path}")
    table = pd.concat(tables, ignore_index=True)
    if normalise is not None:
        table = normalise_terms(table, normalise)
    return table.reset_index(drop=True), pd.DataFrame([i.as_dict() for i in issues], columns=ISSUE_COLUMNS)


def quarantine(table: pd.DataFrame, issues: pd.DataFrame, out_dir: Path | None, what: str = "cases"
               ) -> tuple[pd.DataFrame, int]:
    """Keep the rows that can be evaluated; report every input problem by file, row and field (never a value).

    A row that could not be parsed or has no diagnosis is quarantined (out_dir/quarantine.csv); smaller problems (an
    unknown term id, a bad age) keep the row as the reader left it (the bad value dropped). All problems go to
    out_dir/issues.csv and a warning names the first few. Raises ValueError when no row is left."""
    fatal = issues[issues["field"].isin(FATAL_FIELDS)]
    reasons = fatal.groupby(["source_file", "source_row"])["reason"].agg("; ".join)
    keys = pd.MultiIndex.from_arrays([table["source_file"].astype(str), table["source_row"].astype(int)],
                                     names=["source_file", "source_row"])
    drop = keys.isin(reasons.index) | table["diagnosis"].isna().to_numpy()
    if out_dir is not None:
        issues.to_csv(out_dir / "issues.csv", index=False)
        reasons.reindex(keys[drop]).fillna("no diagnosis").reset_index().to_csv(out_dir / "quarantine.csv",
                                                                                 index=False)
    if len(issues):
        first = "; ".join(f"{r.source_file} row {r.source_row} {r.field}: {r.reason}"
                          for r in issues.head(5).itertuples())
        log.warning("%s: %d input problems (first: %s)%s; %d rows quarantined (not evaluated: malformed or without "
                    "a diagnosis)", what, len(issues), first,
                    f"; all in {out_dir / 'issues.csv'}" if out_dir is not None else "", int(drop.sum()))
    if drop.all():
        raise ValueError(f"no {what} left to evaluate: all {len(drop)} rows are malformed or have no diagnosis"
                         + (f" (see {out_dir / 'quarantine.csv'})" if out_dir is not None else ""))
    return table[~drop].reset_index(drop=True), int(drop.sum())


def evaluate_case_file(model, cases: str | Path, out_dir: str | Path, model_name: str = "model",
                       model_version: str = "", thresholds: dict | None = None, n_bins: int = 15,
                       knowledge_dir: str | Path | None = None) -> dict:
    """Score every case of the file with the model; write the outputs and the report; return the metrics."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    encoder = getattr(getattr(model, "core_", None), "encoder_", None)
    normalise = encoder.normalise if encoder is not None else None
    if normalise is None and knowledge_dir is not None:
        from dxlab.knowledge.base import Knowledge

        normalise = Knowledge.load(knowledge_dir).normalise_term
    table, issues = read_cases(cases, normalise)
    table, quarantined = quarantine(table, issues, out_dir)
    annotated = None
    if not hasattr(model, "n_annotated_") and knowledge_dir is not None:
        from dxlab.knowledge.base import Knowledge

        annotated = set(Knowledge.load(knowledge_dir).diseases["disease_id"])
    frame = case_table(model, table, table["group_id"].astype(str).to_numpy(), side_by_side=True,
                       thresholds=thresholds, annotated=annotated)
    metrics = case_metrics(frame, n_bins)
    headline = ranking_metrics(frame["rank"].to_numpy(dtype=float), frame["known"].to_numpy(dtype=bool))
    summary = {**headline, "ece": metrics["overall"].get("ece"), "brier": metrics["overall"].get("brier"), **metrics,
               "model": model_name, "model_version": model_version, "universe_size": int(len(model.classes_)),
               "n_parse_issues": int(len(issues)), "n_quarantined": quarantined,
               "n_training_groups_seen": int(np.isin(frame["group"], list(getattr(model, "fold_of_group_", {}))).sum()),
               "seconds": time.perf_counter() - start}
    context = {"model": f"{model_name} {model_version}".strip(), "universe_size": int(len(model.classes_)),
               "targets": False, "description": (
                   f"Cases of `{cases}` scored by {model_name} {model_version}; "
                   f"{summary['n_training_groups_seen']:,} of them come from publications the model trained on and "
                   "were scored by what never saw their publication.")}
    if hasattr(model, "knowledge_version_"):
        context["knowledge_version"] = model.knowledge_version_
    if hasattr(model, "training_sources_"):
        context["training"] = ", ".join(f"{k} ({v:,} rows)" for k, v in model.training_sources_.items())
    write_case_outputs(frame, {**summary, "context": context}, out_dir)
    write_report(out_dir, out_dir / "external_validation.md", out_dir / "figures",
                 getattr(model, "disease_names_", {}), title="External validation on case reports")
    return summary
