"""Notes through the pipeline stages: ingest reads the simulated cohort's notes into findings with spans (and says
what it read), and the `text_eval` stage without the annotated corpora writes that it scored nothing and succeeds."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from dxlab.config import compose
from dxlab.data.schema import read_parquet
from helpers import REPO


def test_ingest_reads_the_simulated_notes_with_spans(tiny_project):
    root, cfg, metrics = tiny_project
    ingested = read_parquet(Path(cfg.paths.interim) / "ingested.parquet")
    cohort = ingested[ingested["source"] == "hpo_cohort"]
    with_note = cohort[cohort["note"].str.len() > 0]
    assert len(with_note) == len(cohort) > 0
    assert (with_note["note_mentions"].map(len) > 0).mean() > 0.95
    for note, mentions in zip(with_note["note"], with_note["note_mentions"]):
        assert all(note[m["start"]:m["end"]] == m["text"] for m in mentions)
    # merged: the coded findings are kept, and what is added was read as present for the patient
    raw = {(path.name, i): row for path in sorted(Path(cfg.data.sources.hpo_cohort.source.path).glob("*.csv"))
           for i, row in enumerate(pd.read_csv(path, dtype=str, keep_default_na=False).to_dict("records"), 1)}
    added = 0
    for file, row, findings, mentions in zip(with_note["source_file"], with_note["source_row"],
                                             with_note["findings"], with_note["note_mentions"]):
        coded = [t for t in raw[(file, row)]["findings"].split(";") if t.startswith("HP:")]
        present = {m["hpo_id"] for m in mentions if m["assertion"] == "present"}
        if not raw[(file, row)]["findings"].startswith("["):  # a malformed list is a parse issue, not coded
            assert list(findings[:len(coded)]) == coded
        assert set(findings) - set(coded) <= present
        added += len(set(findings) - set(coded))
    counts = metrics["ingest"]["sources"]["hpo_cohort"]["notes"]
    assert counts["mode"] == "merge" and counts["notes_read"] == len(with_note) and counts["findings_added"] == added > 0
    report = json.loads((Path(cfg.paths.reports) / "stages" / "ingest.json").read_text())
    assert report["sources"]["hpo_cohort"]["notes"] == counts
    assert not any(isinstance(v, str) and len(v) > 20 for v in counts.values())  # counts, never text


def test_text_eval_without_the_corpora_says_so_and_succeeds(tmp_path):
    from dxlab.stages import text_eval

    cfg = compose(["tracking.enabled=false"], config_dir=REPO / "conf")
    cfg.text.evaluate.corpora = {"gscplus": str(tmp_path / "missing" / "gscplus.jsonl")}
    cfg.text.evaluate.out = str(tmp_path / "reports" / "text")
    assert text_eval.run(cfg) == {}
    metrics = json.loads((tmp_path / "reports" / "text" / "metrics.json").read_text())
    assert metrics["status"].startswith("skipped: no annotated corpus found")
    assert metrics["corpora"]["gscplus"]["status"] == "missing"
    assert "Not scored" in (tmp_path / "reports" / "text" / "report.md").read_text()
    assert (tmp_path / "reports" / "text" / "speed_memory.json").exists()  # every output of the DVC stage
