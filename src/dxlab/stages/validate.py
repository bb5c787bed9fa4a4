"""Stage `validate`: schema and value checks per source; bad rows to data/quarantine/ with source, file, row,
field and reason (never the raw value: `dxlab.data.quarantine`). The rows themselves, for the data owner to fix,
go to data/quarantine/raw/rows.raw.csv alone, readable by its owner only."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from dxlab.data.quarantine import RAW_FOLDER, RAW_ROWS, raw_rows, write_raw_rows
from dxlab.data.schema import ISSUE_COLUMNS, read_parquet, to_parquet
from dxlab.data.validation import TooManyBadRows, ValidationResult, validate_table
from dxlab.knowledge.base import Knowledge
from dxlab.stages._runner import main_for, write_json

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    interim = Path(cfg.paths.interim)
    table = read_parquet(interim / "ingested.parquet")
    parse_issues = pd.read_csv(interim / "ingest_issues.csv", dtype={"source": str, "source_file": str,
                                                                     "patient_id": str}, keep_default_na=False)
    term_known = diseases = None
    if cfg.data.vocabulary == "hpo":
        knowledge = Knowledge.load(cfg.paths.knowledge)
        term_known = lambda t: knowledge.normalise_term(t) is not None  # noqa: E731
        diseases = set(knowledge.diseases["disease_id"])
    v = cfg.validate
    valid, quarantined, by_source = [], [], {}
    for name, rows in table.groupby("source", sort=False):
        settings = cfg.data.sources[name]
        result = validate_table(rows.reset_index(drop=True), parse_issues[parse_issues["source"] == name],
                                term_known,
                                diseases.__contains__ if diseases and settings.get("require_known_diagnosis", True)
                                else None,
                                labelled=bool(settings.get("labelled", True)), age_range=tuple(v.age_range),
                                require_findings=v.require_findings,
                                measurement_ranges={k: tuple(r) for k, r in v.measurement_ranges.items()})
        valid.append(result.valid)
        quarantined.append(result.quarantined)
        by_source[name] = result.summary()
    result = ValidationResult(pd.concat(valid, ignore_index=True),
                              pd.concat(quarantined, ignore_index=True) if quarantined
                              else pd.DataFrame(columns=ISSUE_COLUMNS), len(table))
    quarantine = Path(cfg.paths.quarantine)
    quarantine.mkdir(parents=True, exist_ok=True)
    result.quarantined.sort_values(["source", "source_file", "source_row"]).to_csv(quarantine / "quarantine.csv",
                                                                                   index=False)
    write_raw_rows(raw_rows(result.quarantined, table, _source_files(cfg)), quarantine / RAW_FOLDER / RAW_ROWS)
    to_parquet(result.valid, interim / "patients.parquet")
    summary = {**result.summary(), "sources": by_source}
    write_json(summary, Path(cfg.paths.reports) / "stages" / "validate.json")
    for rec in result.quarantined.head(v.show_issues).itertuples():
        log.warning("quarantined %s %s row %d, field %s: %s", rec.source, rec.source_file, rec.source_row, rec.field,
                    rec.reason)
    log.info("%d of %d rows valid, %d quarantined (see %s)", summary["n_valid"], summary["n_rows"],
             summary["n_quarantined"], quarantine / "quarantine.csv")
    if summary["bad_fraction"] > v.max_bad_fraction:
        raise TooManyBadRows(
            f"{summary['n_quarantined']} of {summary['n_rows']} rows ({summary['bad_fraction']:.1%}) failed "
            f"validation, above validate.max_bad_fraction={v.max_bad_fraction}: see {quarantine / 'quarantine.csv'}")
    return {k: v for k, v in summary.items() if k != "sources"} | {
        f"{name}_n_valid": s["n_valid"] for name, s in by_source.items()}


def _source_files(cfg) -> dict[str, Path]:
    """source_file (as the adapters name it) -> path, to read the quarantined rows back as they were written."""
    from dxlab.data.sources import source_specs

    files: dict[str, Path] = {}
    for spec in source_specs(cfg):
        try:
            paths = spec.adapter.files()
        except (FileNotFoundError, OSError):
            continue
        root = Path(getattr(spec.adapter, "path", "."))
        for path in paths:
            path = Path(path)
            files.setdefault(path.name, path)
            if root.is_dir() and path.is_relative_to(root):
                files.setdefault(str(path.relative_to(root)), path)
    return files


def main() -> None:
    main_for("validate", run)


if __name__ == "__main__":
    main()
