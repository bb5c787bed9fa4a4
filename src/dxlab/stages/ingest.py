"""Stage `ingest`: read every file of the configured source into the canonical table, ids pseudonymised."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from hydra.utils import instantiate
from omegaconf import DictConfig

from dxlab.data.pseudonym import load_key, pseudonymise
from dxlab.data.schema import IngestResult, empty_table, to_parquet
from dxlab.stages._runner import main_for, write_json

log = logging.getLogger(__name__)


def ingest(source, key: bytes) -> IngestResult:
    tables, issues = [], []
    files = source.files()
    if not files:
        raise FileNotFoundError(f"source {source.name!r}: no input files found under {source.path}")
    for path in files:
        result = source.read_file(path)
        raw_ids = result.table["patient_id"].astype(str)
        pseudo = {row: pseudonymise(pid, key, source.name) for row, pid in zip(result.table["source_row"], raw_ids)}
        result.table["patient_id"] = [pseudonymise(pid, key, source.name) for pid in raw_ids]
        for issue in result.issues:  # the raw id never leaves the adapter
            issue.patient_id = pseudo.get(issue.source_row, "")
        tables.append(result.table)
        issues.extend(result.issues)
    table = pd.concat(tables, ignore_index=True) if tables else empty_table()
    return IngestResult(table, issues)


def run(cfg: DictConfig) -> dict:
    source = instantiate(cfg.data.source)
    result = ingest(source, load_key(Path(cfg.paths.interim).parent / ".pseudonym_key"))
    out = Path(cfg.paths.interim)
    out.mkdir(parents=True, exist_ok=True)
    to_parquet(result.table, out / "ingested.parquet")
    pd.DataFrame([i.as_dict() for i in result.issues],
                 columns=["source_file", "source_row", "field", "reason", "patient_id"]).to_csv(
        out / "ingest_issues.csv", index=False)
    metrics = {"n_files": int(result.table["source_file"].nunique()), "n_rows": int(len(result.table)),
               "n_parse_issues": len(result.issues)}
    log.info("ingested %d rows from %d files (%d parse issues)", metrics["n_rows"], metrics["n_files"],
             metrics["n_parse_issues"])
    write_json(metrics, Path(cfg.paths.reports) / "stages" / "ingest.json")
    return metrics


def main() -> None:
    main_for("ingest", run)


if __name__ == "__main__":
    main()
