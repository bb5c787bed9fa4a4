"""`dxlab predict`: every raw row scored or quarantined, pseudonyms only, skip what was scored, the dask engine."""

import json
import shutil

import pandas as pd
import pytest
from dxlab.data.sources import feed_source

from dxlab.data.pseudonym import pseudonymise
from dxlab.serving.batch import ValidationSettings, newest_files, predict_folder, predict_from_config, read_predictions
from dxlab.serving.scorer import Scorer


@pytest.fixture()
def batch_setup(prod_project, tmp_path, pseudonym_key):
    root, cfg = prod_project
    inbox = tmp_path / "inbox"
    shutil.copytree(cfg.data.sources[cfg.data.feed].source.path, inbox)
    return cfg, inbox, tmp_path / "out"


def _raw_rows(folder):
    return pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in sorted(folder.glob("patients_*.csv"))])


def test_every_row_is_scored_or_quarantined_under_a_pseudonym(batch_setup, pseudonym_key):
    cfg, inbox, out = batch_setup
    summary = predict_from_config(cfg, inbox, out)
    raw = _raw_rows(inbox)
    preds = read_predictions(out)
    quarantine = pd.concat(pd.read_csv(p, keep_default_na=False) for p in (out / "quarantine").glob("*.csv"))
    n_bad = quarantine[["source_file", "source_row"]].drop_duplicates().shape[0]
    assert summary["n_rows"] == len(raw) == len(preds) + n_bad
    assert summary["n_scored"] == len(preds) and summary["n_quarantined"] == n_bad >= 1
    assert sum(summary["quarantined_by_field"].values()) == len(quarantine)
    assert (quarantine["reason"].str.len() > 0).all()
    # the debug cohort injects one bad row of each kind; all but the missing label (predict needs none) are caught
    assert {"age", "sex", "findings", "patient_id"} <= set(quarantine["field"])
    raw_ids = set(raw["patient_id"])
    assert preds["patient_id"].str.startswith("px-").all() and not set(preds["patient_id"]) & raw_ids
    assert not set(quarantine["patient_id"]) & raw_ids
    # the ingest key and source name: pseudonyms match the training pipeline's
    expected = {pseudonymise(pid, pseudonym_key, cfg.data.feed) for pid in raw_ids}
    assert set(preds["patient_id"]) <= expected
    assert {"disease_1", "probability_1", "anomaly_score", "anomaly_flag", "key_findings"} <= set(preds.columns)
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["files"]) == {p.name for p in inbox.glob("patients_*.csv")}


def test_scored_files_are_skipped_unless_changed_or_asked(batch_setup):
    cfg, inbox, out = batch_setup
    first = predict_from_config(cfg, inbox, out)
    again = predict_from_config(cfg, inbox, out)
    assert first["n_files_scored"] == len(list(inbox.glob("patients_*.csv"))) and first["n_files_skipped"] == 0
    assert again["n_files_scored"] == 0 and again["n_files_skipped"] == first["n_files_scored"]
    changed = sorted(inbox.glob("patients_*.csv"))[0]
    changed.write_text(changed.read_text().replace("\n", "\n", 1))  # same rows ...
    with changed.open("a") as f:
        f.write(changed.read_text().splitlines()[1].replace(",", "X,", 1) + "\n")  # ... plus a new patient
    third = predict_from_config(cfg, inbox, out)
    assert third["n_files_scored"] == 1 and third["files"][0]["file"] == changed.name
    forced = predict_from_config(cfg, inbox, out, overwrite=True)
    assert forced["n_files_scored"] == first["n_files_scored"]


def test_newest_days_picks_the_last_files(batch_setup):
    cfg, inbox, out = batch_setup
    files = sorted(inbox.glob("patients_*.csv"))
    assert newest_files(files, 1) == files[-1:]
    summary = predict_from_config(cfg, inbox, out, newest_days=1)
    assert [f["file"] for f in summary["files"]] == [files[-1].name]


@pytest.mark.integration
def test_dask_local_cluster_gives_the_same_predictions(batch_setup, pseudonym_key):
    cfg, inbox, out = batch_setup
    scorer = Scorer.from_config(cfg)
    source = feed_source(cfg)
    settings = ValidationSettings.from_config(cfg.serve.validate)
    local = predict_folder(inbox, out / "local", scorer, source, pseudonym_key, settings, progress=False)
    dask = predict_folder(inbox, out / "dask", scorer, source, pseudonym_key, settings, engine="dask",
                          n_workers=2, progress=False)
    assert dask["engine"] == "dask" and dask["n_scored"] == local["n_scored"] > 0
    a = read_predictions(out / "local").sort_values(["source_file", "source_row"]).reset_index(drop=True)
    b = read_predictions(out / "dask").sort_values(["source_file", "source_row"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(a.drop(columns=["key_findings", "key_finding_weights"]),
                                  b.drop(columns=["key_findings", "key_finding_weights"]))
