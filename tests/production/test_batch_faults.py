"""`dxlab predict` against what a real inbox holds: bad files quarantined whole while the run goes on, a patient
twice in one batch, names in upper case, no raw value outside the owner-only raw folder, one key found from any
working directory, and a run killed with SIGKILL that resumes without rescoring what it finished."""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from omegaconf import OmegaConf

from dxlab.data.pseudonym import KEY_ENV, MissingKeyError, pseudonymise
from dxlab.data.schema import read_parquet
from dxlab.serving.batch import predict_from_config, read_predictions

MRN, NAME, SSN = "MRN-12345678", "Jane Doe DOB 1990-01-01", "555-12-3456"
SENSITIVE = (MRN, NAME, SSN, "Jane Doe", "1990-01-01")


def _feed_rows(cfg) -> pd.DataFrame:
    folder = Path(cfg.data.sources[cfg.data.feed].source.path)
    return pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in sorted(folder.glob("patients_*.csv"))],
                     ignore_index=True)


def _good_rows(cfg, n: int, prefix: str) -> pd.DataFrame:
    """`n` rows of the feed that passed the pipeline's validation, under new patient ids."""
    folder = Path(cfg.data.sources[cfg.data.feed].source.path)
    valid = read_parquet(Path(cfg.paths.interim) / "patients.parquet")
    valid = set(zip(valid["source_file"], valid["source_row"]))
    parts = []
    for path in sorted(folder.glob("patients_*.csv")):
        rows = pd.read_csv(path, dtype=str, keep_default_na=False)
        parts.append(rows[[(path.name, i) in valid for i in range(1, len(rows) + 1)]])
    rows = pd.concat(parts, ignore_index=True).head(n).copy()
    assert len(rows) == n
    rows["patient_id"] = [f"{prefix}{i:04d}" for i in range(len(rows))]
    return rows.reset_index(drop=True)


def _leaks(text: str) -> list[str]:
    return [s for s in SENSITIVE if s in text]


@pytest.fixture()
def inbox(tmp_path):
    folder = tmp_path / "inbox"
    folder.mkdir()
    return folder


# -- C: bad files, duplicates, names ------------------------------------------------------------------------
def test_bad_files_are_quarantined_whole_and_the_run_goes_on(prod_project, inbox, tmp_path, pseudonym_key, caplog,
                                                             capsys):
    _, cfg = prod_project
    good = _good_rows(cfg, 12, "G")
    good.iloc[:6].to_csv(inbox / "patients_2030-01-01.csv", index=False)
    good.iloc[6:].to_csv(inbox / "Patients_2030-01-02.CSV", index=False)  # upper case: read all the same
    (inbox / "patients_2030-01-03.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (inbox / "patients_2030-01-04.csv").write_bytes(b"")
    (inbox / "patients_2030-01-05.csv").write_text(",".join(good.columns) + "\n")
    latin = good.iloc[:2].copy()
    latin["patient_id"] = [MRN, "L2"]
    latin["note"] = [f"{NAME}, née Müller, SSN {SSN}", "café"]
    (inbox / "patients_2030-01-06.csv").write_bytes(latin.to_csv(index=False).encode("latin-1"))
    bad = good.iloc[:3].copy()
    bad["patient_id"] = ["B1", "B2", MRN]
    bad["age"] = [SSN, "abc", "-3"]
    bad["findings"] = [NAME, NAME, f"{MRN};HP:0001250"]
    bad.to_csv(inbox / "patients_2030-01-07.csv", index=False)
    (inbox / "README.txt").write_text("exports of the ward\n")
    out = tmp_path / "out"

    with caplog.at_level(logging.DEBUG):
        summary = predict_from_config(cfg, inbox, out)
    printed = capsys.readouterr()

    reasons = {f["file"]: f["reason"] for f in summary["files_quarantined"]}
    assert set(reasons) == {f"patients_2030-01-0{i}.csv" for i in (3, 4, 5, 6, 7)}
    assert all(reason.startswith(name + ": ") for name, reason in reasons.items())  # the reason names the file
    assert "binary" in reasons["patients_2030-01-03.csv"] and "empty" in reasons["patients_2030-01-04.csv"]
    assert "header only" in reasons["patients_2030-01-05.csv"] and "UTF-8" in reasons["patients_2030-01-06.csv"]
    assert "every row failed" in reasons["patients_2030-01-07.csv"]
    assert summary["n_files"] == 7 and summary["n_files_read"] == 2 and summary["n_files_quarantined"] == 5
    assert summary["files_ignored"] == ["README.txt"] and summary["n_files_ignored"] == 1
    assert summary["n_scored"] == 12 and summary["n_rows"] == 12 + 3 and summary["n_quarantined"] == 3
    preds = read_predictions(out)
    assert sorted(set(preds["source_file"])) == ["Patients_2030-01-02.CSV", "patients_2030-01-01.csv"]
    for name in reasons:
        issues = pd.read_csv(out / "quarantine" / f"{Path(name).stem}.csv", keep_default_na=False)
        assert (issues.loc[issues["source_row"] == 0, "field"] == "file").all() and (issues["source_row"] == 0).any()
        assert not (out / "predictions" / f"{Path(name).stem}.parquet").exists()
    manifest = json.loads((out / "manifest.json").read_text())["files"]
    assert set(manifest) == {p.name for p in inbox.iterdir()} - {"README.txt"}

    # A: nothing the run wrote, printed or logged quotes a cell -- but the owner-only raw folder keeps them
    raw = out / "quarantine" / "raw"
    for path in (p for p in out.rglob("*") if p.is_file() and raw not in p.parents):
        assert not _leaks(path.read_bytes().decode("utf-8", "replace")), path
    logged = "\n".join(r.getMessage() for r in caplog.records) + printed.out + printed.err
    assert "quarantined" in logged and not _leaks(logged)
    assert stat.S_IMODE(raw.stat().st_mode) == 0o700
    kept = sorted(p.name for p in raw.iterdir())
    assert kept == ["patients_2030-01-03.csv", "patients_2030-01-04.csv", "patients_2030-01-06.csv",
                    "patients_2030-01-07.rows.raw.csv"]
    assert all(stat.S_IMODE((raw / k).stat().st_mode) == 0o600 for k in kept)
    assert MRN in (raw / "patients_2030-01-07.rows.raw.csv").read_text()
    assert NAME.encode("latin-1") in (raw / "patients_2030-01-06.csv").read_bytes()


@pytest.mark.parametrize("n_jobs", [1, 2])
def test_a_patient_in_two_files_of_a_batch_is_a_duplicate_in_the_later_one(prod_project, inbox, tmp_path,
                                                                           pseudonym_key, n_jobs):
    _, cfg = prod_project
    good = _good_rows(cfg, 8, "D")
    first, second = good.iloc[:4].copy(), good.iloc[4:].copy()
    second.iloc[1, second.columns.get_loc("patient_id")] = first.iloc[2]["patient_id"]
    first.to_csv(inbox / "patients_2030-01-01.csv", index=False)
    second.to_csv(inbox / "patients_2030-01-02.csv", index=False)
    summary = predict_from_config(cfg, inbox, tmp_path / "out", n_jobs=n_jobs)
    assert summary["n_scored"] == 7 and summary["n_quarantined"] == 1
    issues = pd.read_csv(tmp_path / "out" / "quarantine" / "patients_2030-01-02.csv", keep_default_na=False)
    assert list(zip(issues["source_row"], issues["field"])) == [(2, "patient_id")]
    assert issues["reason"].str.startswith("duplicate patient id").all()
    preds = read_predictions(tmp_path / "out")
    assert preds["patient_id"].is_unique


def test_a_duplicate_is_caught_when_the_earlier_file_was_scored_by_an_earlier_run(prod_project, inbox, tmp_path,
                                                                                  pseudonym_key):
    _, cfg = prod_project
    good = _good_rows(cfg, 6, "R")
    good.iloc[:3].to_csv(inbox / "patients_2030-01-01.csv", index=False)
    out = tmp_path / "out"
    assert predict_from_config(cfg, inbox, out)["n_scored"] == 3
    later = good.iloc[3:].copy()
    later.iloc[0, later.columns.get_loc("patient_id")] = good.iloc[0]["patient_id"]
    later.to_csv(inbox / "patients_2030-01-02.csv", index=False)
    summary = predict_from_config(cfg, inbox, out)
    assert summary["files_skipped"] == ["patients_2030-01-01.csv"]
    assert summary["n_scored"] == 2 and summary["quarantined_by_field"] == {"patient_id": 1}
    assert read_predictions(out)["patient_id"].is_unique


# -- C: killed with SIGKILL, restarted -----------------------------------------------------------------------
RUNNER = """
import json, sys, time
from omegaconf import OmegaConf
import dxlab.serving.batch as batch

cfg = OmegaConf.load(sys.argv[1])
pause = float(sys.argv[4])
if pause:  # a slow day: time to kill the run between two files
    scored = batch._process_file

    def slowly(*args, **kwargs):
        result = scored(*args, **kwargs)
        time.sleep(pause)
        return result

    batch._process_file = slowly
summary = batch.predict_from_config(cfg, sys.argv[2], sys.argv[3], progress=False)
print(json.dumps({k: v for k, v in summary.items() if k != "files"}))
"""


def _finished(out: Path) -> dict:
    try:
        return json.loads((out / "manifest.json").read_text())["files"]
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def test_a_run_killed_between_files_resumes_without_rescoring_what_it_finished(prod_project, inbox, tmp_path,
                                                                               pseudonym_key):
    _, cfg = prod_project
    rows = _feed_rows(cfg)  # the feed's rows, bad ones included, over six days
    rows["patient_id"] = [f"K{i:04d}" if pid else "" for i, pid in enumerate(rows["patient_id"])]
    n = (len(rows) + 5) // 6
    for day in range(6):
        rows.iloc[day * n:(day + 1) * n].to_csv(inbox / f"patients_2030-02-0{day + 1}.csv", index=False)
    config, script, out = tmp_path / "params.yaml", tmp_path / "run.py", tmp_path / "out"
    OmegaConf.save(cfg, config)
    script.write_text(RUNNER)
    command = [sys.executable, str(script), str(config), str(inbox), str(out)]

    run = subprocess.Popen([*command, "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    deadline = time.monotonic() + 300
    while len(_finished(out)) < 2 and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.communicate()
    finished = _finished(out)
    assert 2 <= len(finished) < 6, "the run was to be killed between two files"
    stamps = {name: Path(entry["output"]).stat().st_mtime_ns for name, entry in finished.items()}

    again = subprocess.run([*command, "0"], capture_output=True, text=True, env=os.environ.copy(), timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    summary = json.loads(again.stdout.strip().splitlines()[-1])
    assert sorted(summary["files_skipped"]) == sorted(finished)  # finished files are not rescored ...
    assert summary["n_files_scored"] == 6 - len(finished)
    manifest = _finished(out)
    assert set(manifest) == {f"patients_2030-02-0{d}.csv" for d in range(1, 7)}
    for name, entry in finished.items():  # ... and their record and outputs are the first run's
        assert manifest[name] == entry and Path(entry["output"]).stat().st_mtime_ns == stamps[name]
    assert not list(out.rglob(".*.tmp"))

    # every patient exactly once: scored or quarantined, never both, never twice
    preds = read_predictions(out)
    issues = pd.concat([pd.read_csv(p, keep_default_na=False) for p in (out / "quarantine").glob("*.csv")])
    bad = set(zip(issues["source_file"], issues["source_row"]))
    scored = list(zip(preds["source_file"], preds["source_row"]))
    assert len(scored) == len(set(scored)) and not set(scored) & bad
    assert len(scored) + len(bad) == len(rows) and preds["patient_id"].is_unique
    expected = {pseudonymise(pid, pseudonym_key, cfg.data.feed) for pid in rows["patient_id"] if pid}
    assert set(preds["patient_id"]) <= expected


# -- B: one key, one place ----------------------------------------------------------------------------------
def _project(tmp_path, cfg, name: str):
    """A project folder (params.yaml, dvc.yaml, conf/) whose config names the key relative to it, as a clone's
    does; everything else stays in the shared test project."""
    root = tmp_path / name
    (root / "conf").mkdir(parents=True)
    local = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    local.data.sources = {cfg.data.feed: cfg.data.sources[cfg.data.feed]}
    local.paths.interim = "data/interim"
    local.paths.reports = str(root / "reports")
    OmegaConf.save(local, root / "params.yaml")
    (root / "dvc.yaml").write_text("stages: {}\n")
    return root, local


def test_batch_from_another_folder_uses_the_key_ingest_made(prod_project, inbox, tmp_path, monkeypatch):
    from dxlab.stages import ingest

    _, cfg = prod_project
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("DXLAB_ROOT", raising=False)
    root, local = _project(tmp_path, cfg, "clinic")
    monkeypatch.chdir(root)
    ingest.run(local)  # the pipeline's first run makes the key
    key = root / "data" / ".pseudonym_key"
    assert key.exists() and stat.S_IMODE(key.stat().st_mode) == 0o600
    ingested = set(read_parquet(root / "data" / "interim" / "ingested.parquet")["patient_id"])
    feed = Path(cfg.data.sources[cfg.data.feed].source.path)
    for p in feed.glob("patients_*.csv"):
        (inbox / p.name).write_bytes(p.read_bytes())

    (root / "notebooks").mkdir()
    monkeypatch.chdir(root / "notebooks")  # inside the project, not at its root
    inside = read_predictions_of(predict_from_config(local, inbox, tmp_path / "inside"), tmp_path / "inside")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # outside it: the project named by DXLAB_ROOT
    monkeypatch.setenv("DXLAB_ROOT", str(root))
    outside = read_predictions_of(predict_from_config(local, inbox, tmp_path / "outside"), tmp_path / "outside")
    assert inside and inside <= ingested and outside == inside
    assert [p for p in tmp_path.rglob(".pseudonym_key")] == [key]  # no second key anywhere


def read_predictions_of(summary: dict, out: Path) -> set[str]:
    assert summary["n_scored"] > 0
    return set(read_predictions(out)["patient_id"])


def test_a_missing_key_stops_production_commands_and_says_how_to_make_it(prod_project, inbox, tmp_path,
                                                                           monkeypatch):
    from dxlab.serving.scorer import pseudonym_key

    _, cfg = prod_project
    monkeypatch.delenv(KEY_ENV, raising=False)
    monkeypatch.delenv("DXLAB_ROOT", raising=False)
    root, local = _project(tmp_path, cfg, "fresh_clone")
    feed = Path(cfg.data.sources[cfg.data.feed].source.path)
    first = sorted(feed.glob("patients_*.csv"))[0]
    (inbox / first.name).write_bytes(first.read_bytes())
    monkeypatch.chdir(root)
    with pytest.raises(MissingKeyError, match=f"{KEY_ENV}.*ingest") as err:
        predict_from_config(local, inbox, tmp_path / "out")
    assert str(root / "data" / ".pseudonym_key") in str(err.value)
    with pytest.raises(MissingKeyError, match=KEY_ENV):  # what `dxlab monitor` and `dxlab serve` read
        pseudonym_key(local)
    assert not list(tmp_path.rglob(".pseudonym_key")) and not (tmp_path / "out").exists()

    cli = subprocess.run([sys.executable, "-m", "dxlab.cli", "predict", "--input", str(inbox), "--output",
                          str(tmp_path / "out"), "--no-progress"], cwd=root, capture_output=True, text=True,
                         env={k: v for k, v in os.environ.items() if k not in (KEY_ENV, "DXLAB_ROOT")}, timeout=300)
    assert cli.returncode != 0 and KEY_ENV in cli.stderr and "ingest" in cli.stderr
    assert not list(tmp_path.rglob(".pseudonym_key"))
