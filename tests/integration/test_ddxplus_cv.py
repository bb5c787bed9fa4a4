"""The DDXPlus cross-validation stage on a 400-row slice of the shared DDXPlus sample."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from dxlab.config import load_params

DDX = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "ddxplus"
CSV = DDX / "test_patients_subset.csv"

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(not CSV.exists(), reason=f"shared DDXPlus sample not found at {CSV}")]


def test_ddxplus_cv_reports_gtpa_per_stratum_and_per_pathology(tmp_path, monkeypatch):
    from dxlab.stages import ddxplus_cv

    monkeypatch.setenv("DXLAB_PSEUDONYM_KEY", "test-key")
    rows = pd.read_csv(CSV, nrows=400)
    sample = tmp_path / "ddx.csv"
    rows.to_csv(sample, index=False)
    cfg = load_params([f"ddxplus.work={tmp_path / 'work'}", f"ddxplus.out={tmp_path / 'out'}", "ddxplus.n_splits=3",
                       f"paths.reports={tmp_path / 'reports'}", "tracking.enabled=false"])
    cfg.ddxplus.data_overrides = ["data=ddxplus", f"data.sources.ddxplus.source.path={sample}",
                                  f"data.sources.ddxplus.source.evidences_json={DDX / 'release_evidences.json'}",
                                  f"data.sources.ddxplus.source.conditions_json={DDX / 'release_conditions.json'}"]
    ddxplus_cv.run(cfg)
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["n_patients"] == 400  # the slice is clean: nothing quarantined
    overall = metrics["models"]["logreg"]["overall"]
    chance = 1 / metrics["n_pathologies"]
    assert 5 * chance < overall["top1_mean"] <= overall["top3_mean"] <= 1
    per = pd.read_csv(tmp_path / "out" / "per_pathology.csv")
    assert per["patients"].sum() == 400 and "recall_logreg" in per
    never = set(metrics["models"]["logreg"]["cv"]["diseases_never_validated"])
    assert per.loc[per["recall_logreg"].isna(), "pathology"].isin(never).all()
    assert "GTPA@1" in (tmp_path / "out" / "summary.md").read_text()
    assert (tmp_path / "out" / "figures" / "recall_vs_frequency.png").stat().st_size > 0
