"""Stage `validate`: schema and value checks; bad rows to data/quarantine/ with file, row, field and reason."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from dxlab.data.schema import read_parquet, to_parquet
from dxlab.data.validation import TooManyBadRows, validate_table
from dxlab.knowledge.base import Knowledge
from dxlab.stages._runner import main_for, write_json

log = logging.getLogger(__name__)


def run(cfg: DictConfig) -> dict:
    interim = Path(cfg.paths.interim)
    table = read_parquet(interim / "ingested.parquet")
    parse_issues = pd.read_csv(interim / "ingest_issues.csv", dtype={"source_file": str, "patient_id": str},
                               keep_default_na=False)
    term_known = disease_known = None
    if cfg.data.vocabulary == "hpo":
        knowledge = Knowledge.load(cfg.paths.knowledge)
        term_known = lambda t: knowledge.normalise_term(t) is not None  # noqa: E731
        diseases = set(knowledge.diseases["disease_id"])
        if cfg.data.get("require_known_diagnosis", True):
            disease_known = diseases.__contains__
    v = cfg.validate
    result = validate_table(table, parse_issues, term_known, disease_known, labelled=cfg.data.labelled,
                            age_range=tuple(v.age_range), require_findings=v.require_findings,
                            measurement_ranges={k: tuple(r) for k, r in v.measurement_ranges.items()})
    quarantine = Path(cfg.paths.quarantine)
    quarantine.mkdir(parents=True, exist_ok=True)
    result.quarantined.sort_values(["source_file", "source_row"]).to_csv(quarantine / "quarantine.csv", index=False)
    to_parquet(result.valid, interim / "patients.parquet")
    summary = result.summary()
    write_json(summary, Path(cfg.paths.reports) / "stages" / "validate.json")
    for rec in result.quarantined.head(v.show_issues).itertuples():
        log.warning("quarantined %s row %d, field %s: %s", rec.source_file, rec.source_row, rec.field, rec.reason)
    log.info("%d of %d rows valid, %d quarantined (see %s)", summary["n_valid"], summary["n_rows"],
             summary["n_quarantined"], quarantine / "quarantine.csv")
    if summary["bad_fraction"] > v.max_bad_fraction:
        raise TooManyBadRows(
            f"{summary['n_quarantined']} of {summary['n_rows']} rows ({summary['bad_fraction']:.1%}) failed "
            f"validation, above validate.max_bad_fraction={v.max_bad_fraction}: see {quarantine / 'quarantine.csv'}")
    return summary


def main() -> None:
    main_for("validate", run)


if __name__ == "__main__":
    main()
