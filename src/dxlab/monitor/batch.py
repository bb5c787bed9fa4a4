"""`dxlab monitor`: build (or reuse) the training reference, read a batch of patient files, compare, report."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from dxlab.data.sources import feed_settings, feed_source
from dxlab.monitor.drift import OrganSystems, Thresholds, build_reference, compare, to_json, write_report

log = logging.getLogger(__name__)


def organ_systems(cfg):
    from dxlab.knowledge.base import Knowledge

    directory = Path(cfg.paths.knowledge)
    if cfg.data.get("vocabulary") != "hpo" or not (directory / "terms.parquet").exists():
        return None
    return OrganSystems(Knowledge.load(directory))


def feed_rows(cfg, table):
    """The rows of the production feed (`data.feed`): the population a day of production is compared with (case
    reports that trained the model are another population)."""
    feed = cfg.data.get("feed")
    if feed is None or "source" not in table or not (table["source"] == feed).any():
        return table
    return table[table["source"] == feed].reset_index(drop=True)


def ensure_reference(cfg, scorer, systems=None, rebuild: bool = False) -> dict:
    """The reference at monitor.reference, rebuilt when missing, asked for, or made with another model version."""
    from dxlab.data.schema import read_parquet

    path = Path(cfg.monitor.reference)
    if path.exists() and not rebuild:
        ref = json.loads(path.read_text())
        if ref.get("model_version") == scorer.model_version and ref.get("model") == scorer.model_name:
            return ref
        log.info("reference %s was built with %s version %s: rebuilding for %s version %s", path,
                 ref.get("model"), ref.get("model_version"), scorer.model_name, scorer.model_version)
    processed = Path(cfg.paths.processed)
    train = feed_rows(cfg, read_parquet(processed / "train.parquet"))
    test_path = processed / "test.parquet"
    test_predictions = scorer.score(read_parquet(test_path)) if test_path.exists() else None
    ref = build_reference(train, test_predictions, systems, bins=int(cfg.monitor.bins),
                          top_findings=int(cfg.monitor.top_findings), model=scorer.model_name,
                          model_version=scorer.model_version)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(to_json(ref))
    log.info("wrote the drift reference %s (%d training patients)", path, ref["n"])
    return ref


def read_batch(cfg, input_path, scorer, files=None) -> tuple[pd.DataFrame, pd.DataFrame, list[Path]]:
    """Valid patients (pseudonymised) and quarantine issues of the batch files, as `dxlab predict` reads them. A file
    that cannot be read (empty, binary, not UTF-8, malformed) is one issue of field `file` naming it, as in
    `dxlab predict`, and the others are monitored; only a batch without a readable patient is an error."""
    from dxlab.data.notes import feed_notes
    from dxlab.serving.batch import ValidationSettings, _source_for, file_issue, read_or_problem
    from dxlab.serving.scorer import pseudonym_key

    source = _source_for(feed_source(cfg), input_path)
    files = [Path(p) for p in (files if files is not None else source.files())]
    if not files:
        raise FileNotFoundError(f"no patient files under {input_path}")
    key, settings = pseudonym_key(cfg), ValidationSettings.from_config(cfg.serve.validate)
    # the notes read as ingest and `dxlab predict` read them: the batch is compared with rows read the same way
    notes, mode = feed_notes(cfg)
    valid, issues = [], []
    for path in files:
        _, v, q, problem = read_or_problem(source, path, key, scorer, settings, notes, mode)
        if problem is None:
            valid.append(v)
            issues.append(q)
            continue
        log.warning("monitor: %s: %s; the batch is compared without it", path.name, problem)
        issues.append(file_issue(path, problem))
    if not valid:
        reasons = "; ".join(str(r) for q in issues for r in q["reason"])
        raise ValueError(f"no readable patient file under {input_path}: {reasons}")
    return pd.concat(valid, ignore_index=True), pd.concat(issues, ignore_index=True), files


def batch_predictions(patients: pd.DataFrame, files: list[Path], predictions_dir, scorer) -> pd.DataFrame:
    """The predict command's output for these files when every file has one (same rows), else a fresh scoring."""
    if predictions_dir:
        parts = [Path(predictions_dir) / "predictions" / f"{p.stem}.parquet" for p in files]
        if all(p.exists() for p in parts):
            pred = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
            keys = ["source_file", "source_row"]
            merged = patients[keys].merge(pred, on=keys, how="left", validate="one_to_one")
            if merged["disease_1"].notna().all():
                log.info("reusing %d predictions from %s", len(merged), predictions_dir)
                if "diagnosis" in patients:  # diagnoses that arrived after the batch was scored
                    merged["diagnosis"] = patients["diagnosis"].to_numpy()
                return merged
    return scorer.score(patients)


def monitor_from_config(cfg, input_path=None, predictions=None, out=None, newest_days=None, model=None,
                        rebuild_reference: bool = False, batch_name: str | None = None, files=None) -> dict:
    """Compare the batch (the files under input_path, its newest days, or `files`) with the reference."""
    from dxlab.serving.batch import DAY_PATTERN, FILE_FIELD, _source_for, newest_files
    from dxlab.serving.scorer import Scorer

    m = cfg.monitor
    input_path = Path(input_path or m.input)
    out = Path(out or m.out)
    scorer = Scorer.from_config(cfg, model=model, explain="none")
    systems = organ_systems(cfg)
    reference = ensure_reference(cfg, scorer, systems, rebuild=rebuild_reference)
    if files is None and newest_days:
        source = _source_for(feed_source(cfg), input_path)
        files = newest_files(source.files(), int(newest_days),
                             feed_settings(cfg).source.get("day_pattern") or DAY_PATTERN)
    patients, issues, files = read_batch(cfg, input_path, scorer, files)
    preds = batch_predictions(patients, files, predictions if predictions is not None else m.get("predictions"),
                              scorer)
    thresholds = Thresholds.from_mapping(OmegaConf.to_container(m.thresholds, resolve=True))
    name = batch_name or (files[0].stem if len(files) == 1 else f"{files[0].stem}..{files[-1].stem}")
    report = compare(reference, patients, preds, systems, thresholds, batch=name)
    report["files"] = [p.name for p in files]
    report["files_unreadable"], report["n_quarantined"] = [], 0
    if len(issues):
        whole = issues["field"].eq(FILE_FIELD) & issues["source_row"].astype(int).eq(0)
        report["files_unreadable"] = sorted(issues.loc[whole, "reason"].astype(str))
        report["n_quarantined"] = int(len(issues.loc[~whole, ["source_file", "source_row"]].drop_duplicates()))
    report["model_version"] = scorer.model_version
    paths = write_report(report, out)
    s = report["summary"]
    log.info("monitor %s: %d patients, %s; report %s", name, report["n_patients"],
             "drift in " + ", ".join(s["drifted_inputs"] + s["drifted_predictions"]) if s["drift"] else "no drift",
             paths["html"])
    return report
