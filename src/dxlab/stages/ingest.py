"""Stage `ingest`: every file of every configured source into the one canonical table, ids pseudonymised.

A source marked `required: false` whose files are missing (the shared case reports on a machine without them) is
left out, and the run says so: the stage's metrics list what was read from each source. Clinical notes are read
into findings, excluded findings and family history as each source's `notes.mode` says (`dxlab.data.notes`); a
note that cannot be read is a parse issue of its row (field `note`), which validate quarantines.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from dxlab.data.notes import NoteReader, note_reader
from dxlab.data.pseudonym import group_labels, key_file, load_key, pseudonymise
from dxlab.data.schema import ISSUE_COLUMNS, IngestResult, empty_table, to_parquet
from dxlab.data.sources import source_specs
from dxlab.stages._runner import main_for, write_json

log = logging.getLogger(__name__)


def ingest(source, key: bytes, notes: NoteReader | None = None, notes_mode: str = "merge",
           note_counts: dict | None = None) -> IngestResult:
    """One source's files -> canonical rows, notes read (when a reader is given); patient ids (and patient-level
    groups) become keyed pseudonyms; a row's group becomes a key-independent label (`group_labels`).
    `note_counts` (if given) adds up what was read."""
    tables, issues = [], []
    first_seen: dict = {}  # group -> label, over every file of the source
    files = source.files()
    if not files:
        raise FileNotFoundError(f"source {source.name!r}: no input files found under {source.path}")
    for path in files:
        result = source.read_file(path)
        if notes is not None:
            result, counts = notes.read_result(result, notes_mode)
            for k, v in counts.items():
                if note_counts is not None:
                    note_counts[k] = note_counts.get(k, 0) + v
        raw_ids = result.table["patient_id"].fillna("").astype(str)
        pseudo = [pseudonymise(pid, key, source.name) for pid in raw_ids]
        by_row = dict(zip(result.table["source_row"], pseudo))
        result.table["group_id"] = group_labels(result.table["group_id"].fillna("").astype(str), raw_ids,
                                                result.table["source_file"].astype(str), result.table["source_row"],
                                                source.name, first_seen)
        result.table["patient_id"] = pseudo
        result.table["source"] = source.name
        for issue in result.issues:  # the raw id never leaves the adapter
            issue.patient_id = by_row.get(issue.source_row, "")
            issue.source = source.name
        tables.append(result.table)
        issues.extend(result.issues)
    table = pd.concat(tables, ignore_index=True) if tables else empty_table()
    return IngestResult(table, issues)


def run(cfg: DictConfig) -> dict:
    key = load_key(key_file(cfg), create=True)  # the pipeline's first run makes the key; nothing else may
    # notes become HPO findings: a source of other codes (DDXPlus evidences) has its notes left as they are
    notes = note_reader(cfg) if cfg.data.get("vocabulary", "hpo") == "hpo" else None
    tables, issues, by_source = [], [], {}
    for spec in source_specs(cfg):
        found, why = spec.available()
        if not found:
            if spec.required:
                raise FileNotFoundError(f"data.sources.{spec.name}: {why}")
            log.warning("source %s left out: %s (the run trains without it)", spec.name, why)
            print(f"ingest: source {spec.name!r} not found ({why}): training without it")
            by_source[spec.name] = {"n_rows": 0, "n_files": 0, "status": f"missing: {why}"}
            continue
        note_counts: dict = {}
        result = ingest(spec.adapter, key, notes, spec.notes if notes is not None else "ignore", note_counts)
        tables.append(result.table)
        issues.extend(result.issues)
        by_source[spec.name] = {"n_rows": int(len(result.table)), "n_files": int(result.table["source_file"].nunique()),
                                "n_parse_issues": len(result.issues), "status": "read",
                                "notes": {"mode": spec.notes if notes is not None else "ignore", **note_counts}}
        log.info("ingested %s: %d rows from %d files (%d parse issues)", spec.name, len(result.table),
                 by_source[spec.name]["n_files"], len(result.issues))
    if not tables:
        raise FileNotFoundError("no source had input files: see data.sources")
    table = pd.concat(tables, ignore_index=True)
    out = Path(cfg.paths.interim)
    out.mkdir(parents=True, exist_ok=True)
    to_parquet(table, out / "ingested.parquet")
    pd.DataFrame([i.as_dict() for i in issues], columns=ISSUE_COLUMNS).to_csv(out / "ingest_issues.csv", index=False)
    metrics = {"n_rows": int(len(table)), "n_parse_issues": len(issues), "sources": by_source}
    print("ingest: " + "; ".join(f"{name}: {m['n_rows']:,} rows{_notes_line(m['notes'])}" if m["status"] == "read"
                                 else f"{name}: not read" for name, m in by_source.items()))
    write_json(metrics, Path(cfg.paths.reports) / "stages" / "ingest.json")
    return metrics


def _notes_line(counts: dict) -> str:
    if not counts.get("notes"):
        return ""
    bad = f", {counts['notes_unreadable']:,} unreadable (quarantined)" if counts.get("notes_unreadable") else ""
    return (f" ({counts['notes_read']:,} notes read ({counts['mode']}): {counts['findings_added']:,} findings and "
            f"{counts['excluded_added']:,} excluded findings added{bad})")


def main() -> None:
    main_for("ingest", run)


if __name__ == "__main__":
    main()
